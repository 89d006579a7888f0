package inventory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"gorm.io/gorm"
)

// stmts are the statements of the issuance path (RecordIssuance, and the audit append every
// change makes) and of the writes the device state machine makes for every renewal
// (presence and its history, health, the command seen, the commit), and of the renewal
// scheduler's (its status changes and commands), prepared once on the writer connection.
// The renewal path's statements are plain SQL (positional ? parameters, no SQLite-only
// syntax).
//
// Why not gorm's PrepareStmt: a statement gorm first prepares inside a transaction belongs to
// that transaction, and database/sql re-prepares it on every later use (Tx.StmtContext on a
// transaction-bound or closed statement), so the option saves nothing for writes, which all
// run in transactions here. A statement prepared on the *sql.DB before any transaction is
// reused by every Tx.StmtContext on the same connection. Measured here: an INSERT through
// gorm inside a transaction cost 2-5x one through a statement prepared this way.
type stmts struct {
	upsertDevice *sql.Stmt
	insertCert   *sql.Stmt
	insertAtt    *sql.Stmt
	eventHead    *sql.Stmt
	insertEvent  *sql.Stmt

	setOnline     *sql.Stmt
	setHealth     *sql.Stmt
	setHealthSeen *sql.Stmt
	clearCommand  *sql.Stmt
	certState     *sql.Stmt
	activeCert    *sql.Stmt
	supersedeCert *sql.Stmt
	activateCert  *sql.Stmt
	activateDev   *sql.Stmt
	endAttempt    *sql.Stmt

	presenceEnd    *sql.Stmt
	presencePrune  *sql.Stmt
	presenceReopen *sql.Stmt
	presenceStart  *sql.Stmt

	savepoint  *sql.Stmt
	release    *sql.Stmt
	rollbackTo *sql.Stmt

	setRenewal        *sql.Stmt
	recordCommand     *sql.Stmt
	setStage          *sql.Stmt
	commandSavepoint  *sql.Stmt
	commandRelease    *sql.Stmt
	commandRollbackTo *sql.Stmt
}

const (
	// upsertDeviceSQL inserts a device with every column, or updates only its descriptive
	// columns whose new value is not empty (?29: replace tags; ?30, the class hash, goes with
	// the class).
	upsertDeviceSQL = `INSERT INTO devices (id, name, family, model, vendor, firmware, class, tags, path, via,
			mechanism, created_at, last_seen, state, online, health_serial, health_not_after, health_chain_ok,
			health_clock_skew_ns, health_agent_version, health_last_error, health_at, renewal_state,
			renewal_failures, renewal_next_attempt_at, renewal_last_cause, renewal_window_start, renewal_window_end,
			class_hash)
		VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21,
			?22, ?23, ?24, ?25, ?26, ?27, ?28, ?30)
		ON CONFLICT (id) DO UPDATE SET
			name = iif(excluded.name <> '', excluded.name, name),
			family = iif(excluded.family <> '', excluded.family, family),
			model = iif(excluded.model <> '', excluded.model, model),
			vendor = iif(excluded.vendor <> '', excluded.vendor, vendor),
			firmware = iif(excluded.firmware <> '', excluded.firmware, firmware),
			class = iif(excluded.class <> '', excluded.class, class),
			class_hash = iif(excluded.class <> '', excluded.class_hash, class_hash),
			path = iif(excluded.path <> '', excluded.path, path),
			via = iif(excluded.via <> '', excluded.via, via),
			mechanism = iif(excluded.mechanism <> '', excluded.mechanism, mechanism),
			tags = iif(?29, excluded.tags, tags)`
	insertCertSQL = `INSERT INTO certificates (serial, device_id, not_before, not_after, issuer, key_algorithm,
			fingerprint, status, pem, request_id, replaces, created_at, activated_at, revoked_at, revoke_reason)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	insertAttemptSQL = `INSERT INTO attempts (device_id, request_id, reason, serial, started_at, finished_at,
			outcome, error_code, latency_ns, cause, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	eventHeadSQL   = `SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1`
	insertEventSQL = `INSERT INTO events (seq, time, kind, device_id, actor, message, data, hash, prev_hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`

	setOnlineSQL = `UPDATE devices SET online = ?, last_seen = ? WHERE id = ?`
	// setHealthSQL's columns are healthColumns, in order, then the device id.
	setHealthSQL = `UPDATE devices SET health_serial = ?, health_not_after = ?, health_chain_ok = ?,
			health_clock_skew_ns = ?, health_agent_version = ?, health_last_error = ?, health_at = ?,
			health_manufacturer = ?, health_model = ?, health_arch = ? WHERE id = ?`
	setHealthSeenSQL = `UPDATE devices SET health_serial = ?, health_not_after = ?, health_chain_ok = ?,
			health_clock_skew_ns = ?, health_agent_version = ?, health_last_error = ?, health_at = ?,
			health_manufacturer = ?, health_model = ?, health_arch = ?, online = ?, last_seen = ? WHERE id = ?`
	clearCommandSQL = `UPDATE devices SET command_id = '', command_action = '', command_reason = '', command_deadline = 0
		WHERE id = ? AND command_id = ?`
	certStateSQL     = `SELECT device_id, status FROM certificates WHERE serial = ?`
	activeCertSQL    = `SELECT serial FROM certificates WHERE ` + activeOfDevice + ` LIMIT 1`
	supersedeCertSQL = `UPDATE certificates SET status = ?, superseded_at = ? WHERE serial = ?`
	activateCertSQL  = `UPDATE certificates SET status = ?, activated_at = ? WHERE serial = ?`
	activateDevSQL   = `UPDATE devices SET state = ? WHERE id = ? AND state IN (?, ?)`
	endAttemptSQL    = `UPDATE attempts SET outcome = ?, finished_at = ? WHERE device_id = ? AND request_id = ?`

	// The presence history's statements (recordPresence): a renewal with reconnect proof
	// changes the device's presence twice.
	presenceEndSQL = `UPDATE presence SET end_at = CASE WHEN start_at > ? THEN start_at ELSE ? END
		WHERE device_id = ? AND end_at = 0`
	presencePruneSQL = `DELETE FROM presence WHERE device_id = ? AND end_at <> 0 AND end_at < ?`
	// presenceNotOpen holds while the device has no open interval (a second session).
	presenceNotOpen = `NOT EXISTS (SELECT 1 FROM presence o WHERE o.device_id = ? AND o.end_at = 0)`
	// (A device's closed intervals never share an end: a new one starts only past
	// PresenceMerge after the last ended.)
	presenceReopenSQL = `UPDATE presence SET end_at = 0 WHERE device_id = ? AND end_at = (
			SELECT MAX(end_at) FROM presence WHERE device_id = ? AND end_at >= ? AND end_at <= ?)
			AND ` + presenceNotOpen
	presenceStartSQL = `INSERT INTO presence (device_id, start_at, end_at) SELECT ?, ?, 0 WHERE ` + presenceNotOpen

	// The group commit's savepoints (committer): three statements for each write of a group.
	savepointSQL  = `SAVEPOINT grouped`
	releaseSQL    = `RELEASE grouped`
	rollbackToSQL = `ROLLBACK TO grouped`

	// The renewal scheduler's writes: a pass's status changes (SetRenewals) and its commands
	// (RecordCommands, each in its own savepoint), one device at a time in one transaction.
	// setRenewalSQL's parameters are renewalArgs, then the device id.
	setRenewalSQL = `UPDATE devices SET renewal_state = ?, renewal_failures = ?, renewal_next_attempt_at = ?,
			renewal_last_cause = ?, renewal_window_start = ?, renewal_window_end = ?, renewal_again = ? WHERE id = ?`
	// recordCommandSQL's parameters are renewalArgs, the command's id, action, reason and
	// deadline, then the device id.
	recordCommandSQL = `UPDATE devices SET renewal_state = ?, renewal_failures = ?, renewal_next_attempt_at = ?,
			renewal_last_cause = ?, renewal_window_start = ?, renewal_window_end = ?, renewal_again = ?,
			command_id = ?, command_action = ?, command_reason = ?, command_deadline = ? WHERE id = ?`
	setStageSQL = `UPDATE campaign_devices SET stage = ?, commanded_at = ?, command_id = ?, failures = ?, cause = ?
		WHERE campaign_id = ? AND device_id = ?`
	commandSavepointSQL  = `SAVEPOINT command`
	commandReleaseSQL    = `RELEASE command`
	commandRollbackToSQL = `ROLLBACK TO command`
)

// prepareStmts prepares the statements on db's connection, in PostgreSQL's text if pg;
// call it before any transaction holds that single connection.
func prepareStmts(ctx context.Context, db *sql.DB, pg bool) (*stmts, error) {
	st := &stmts{}
	texts := []struct {
		dst **sql.Stmt
		sql string
	}{
		{&st.upsertDevice, upsertDeviceSQL},
		{&st.insertCert, insertCertSQL},
		{&st.insertAtt, insertAttemptSQL},
		{&st.eventHead, eventHeadSQL},
		{&st.insertEvent, insertEventSQL},
		{&st.setOnline, setOnlineSQL},
		{&st.setHealth, setHealthSQL},
		{&st.setHealthSeen, setHealthSeenSQL},
		{&st.clearCommand, clearCommandSQL},
		{&st.certState, certStateSQL},
		{&st.activeCert, activeCertSQL},
		{&st.supersedeCert, supersedeCertSQL},
		{&st.activateCert, activateCertSQL},
		{&st.activateDev, activateDevSQL},
		{&st.endAttempt, endAttemptSQL},
		{&st.presenceEnd, presenceEndSQL},
		{&st.presencePrune, presencePruneSQL},
		{&st.presenceReopen, presenceReopenSQL},
		{&st.presenceStart, presenceStartSQL},
		{&st.savepoint, savepointSQL},
		{&st.release, releaseSQL},
		{&st.rollbackTo, rollbackToSQL},
		{&st.setRenewal, setRenewalSQL},
		{&st.recordCommand, recordCommandSQL},
		{&st.setStage, setStageSQL},
		{&st.commandSavepoint, commandSavepointSQL},
		{&st.commandRelease, commandReleaseSQL},
		{&st.commandRollbackTo, commandRollbackToSQL},
	}
	if pg {
		texts[0].sql, texts[1].sql, texts[2].sql, texts[4].sql = pgUpsertDeviceSQL, pgInsertCertSQL, pgInsertAttemptSQL, pgInsertEventSQL
		for i := range texts {
			texts[i].sql = numberedParams(texts[i].sql)
		}
	}
	for _, p := range texts {
		var err error
		if *p.dst, err = db.PrepareContext(ctx, p.sql); err != nil {
			st.close()
			return nil, fmt.Errorf("prepare statement: %w", err)
		}
	}
	return st, nil
}

func (st *stmts) close() {
	for _, s := range []*sql.Stmt{st.upsertDevice, st.insertCert, st.insertAtt, st.eventHead, st.insertEvent,
		st.setOnline, st.setHealth, st.setHealthSeen, st.clearCommand, st.certState, st.activeCert,
		st.supersedeCert, st.activateCert, st.activateDev, st.endAttempt,
		st.presenceEnd, st.presencePrune, st.presenceReopen, st.presenceStart, st.savepoint, st.release, st.rollbackTo,
		st.setRenewal, st.recordCommand, st.setStage, st.commandSavepoint, st.commandRelease, st.commandRollbackTo} {
		if s != nil {
			s.Close()
		}
	}
}

// txStmt binds a prepared statement to the transaction tx runs in.
func txStmt(ctx context.Context, tx *gorm.DB, st *sql.Stmt) (*sql.Stmt, error) {
	sqlTx, ok := tx.Statement.ConnPool.(*sql.Tx)
	if !ok {
		return nil, errors.New("prepared statement used outside a transaction")
	}
	return sqlTx.StmtContext(ctx, st), nil
}

// exec runs a prepared statement inside tx; a primary key or unique violation is returned as
// ErrDuplicate.
func (s *Store) exec(ctx context.Context, tx *gorm.DB, st *sql.Stmt, args ...any) error {
	_, err := s.execN(ctx, tx, st, args...)
	return err
}

// execN is exec that also returns how many rows the statement changed.
func (s *Store) execN(ctx context.Context, tx *gorm.DB, st *sql.Stmt, args ...any) (int64, error) {
	stmt, err := txStmt(ctx, tx, st)
	if err != nil {
		return 0, err
	}
	res, err := stmt.ExecContext(ctx, args...)
	if err != nil {
		if t, ok := s.w.Dialector.(gorm.ErrorTranslator); ok && errors.Is(t.Translate(err), gorm.ErrDuplicatedKey) {
			return 0, fmt.Errorf("%w: %w", ErrDuplicate, err)
		}
		return 0, err
	}
	return res.RowsAffected()
}

// queryRow runs a prepared single-row query inside tx and scans it into dest; no row is
// sql.ErrNoRows.
func queryRow(ctx context.Context, tx *gorm.DB, st *sql.Stmt, args []any, dest ...any) error {
	stmt, err := txStmt(ctx, tx, st)
	if err != nil {
		return err
	}
	return stmt.QueryRowContext(ctx, args...).Scan(dest...)
}

// numberedParams rewrites the ? parameters of a statement as PostgreSQL's $1, $2, ... in
// order. The statements above hold no ? inside a string literal.
func numberedParams(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r != '?' {
			b.WriteRune(r)
			continue
		}
		n++
		b.WriteString("$" + strconv.Itoa(n))
	}
	return b.String()
}
