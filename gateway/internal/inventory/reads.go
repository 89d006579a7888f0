package inventory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"gorm.io/gorm"
)

// reads are the single-row reads every renewal makes — the state machine's Lifecycle when
// it first meets a device, the device (the issuer's
// authorisation, the commit hook), its policy inputs (Subject: the window of every reply),
// the attempt (a resubmission, the commit's latency), the certificate renewed, and the login
// of each connection (LoginOf) — prepared once on the read pool and scanned into the row
// structs field by field: gorm built the SQL, SQLite compiled it and gorm's reflection
// scanned it at every read (issue 11). database/sql prepares a statement again on each pool
// connection the first time it runs there, and keeps it.
//
// The column lists are the row structs' fields in order (deviceColumns and
// deviceRow.fields, and so on); TestRowFieldsMatchColumns fails when a column is added to
// a row struct but not here.
type reads struct {
	device  *sql.Stmt
	subject *sql.Stmt
	attempt *sql.Stmt
	cert    *sql.Stmt
	login   *sql.Stmt

	// Lifecycle's three reads.
	lifeCommand *sql.Stmt
	lifeActive  *sql.Stmt
	lifePending *sql.Stmt
}

var (
	deviceColumns = []string{"id", "name", "family", "model", "vendor", "firmware", "class", "class_hash", "tags", "path", "via",
		"mechanism", "created_at", "last_seen", "state", "online", "health_serial", "health_not_after",
		"health_chain_ok", "health_clock_skew_ns", "health_agent_version", "health_last_error", "health_at",
		"health_manufacturer", "health_model", "health_arch", "renewal_state", "renewal_failures",
		"renewal_next_attempt_at", "renewal_last_cause", "renewal_window_start", "renewal_window_end",
		"renewal_again", "command_id", "command_action", "command_reason", "command_deadline", "epoch"}
	certRowColumns = []string{"serial", "device_id", "not_before", "not_after", "issuer", "key_algorithm",
		"fingerprint", "status", "pem", "request_id", "replaces", "created_at", "activated_at", "revoked_at",
		"revoke_reason", "revoke_code", "superseded_at"}
	attemptColumns = []string{"device_id", "request_id", "reason", "serial", "started_at", "finished_at", "outcome",
		"error_code", "latency_ns", "cause", "detail"}
)

// fields are pointers to r's fields, in deviceColumns' order.
func (r *deviceRow) fields() []any {
	return []any{&r.ID, &r.Name, &r.Family, &r.Model, &r.Vendor, &r.Firmware, &r.Class, &r.ClassHash, &r.Tags, &r.Path, &r.Via,
		&r.Mechanism, &r.Created, &r.LastSeen, &r.State, &r.Online, &r.HealthSerial, &r.HealthNotAfter,
		&r.HealthChainOK, &r.HealthClockSkewNS, &r.HealthAgentVersion, &r.HealthLastError, &r.HealthAt,
		&r.HealthManufacturer, &r.HealthModel, &r.HealthArch, &r.RenewalState, &r.RenewalFailures,
		&r.RenewalNextAttempt, &r.RenewalLastCause, &r.RenewalWindowStart, &r.RenewalWindowEnd,
		&r.RenewalAgain, &r.CommandID, &r.CommandAction, &r.CommandReason, &r.CommandDeadline, &r.Epoch}
}

// fields are pointers to r's fields, in certRowColumns' order.
func (r *certRow) fields() []any {
	return []any{&r.Serial, &r.DeviceID, &r.NotBefore, &r.NotAfter, &r.Issuer, &r.KeyAlgorithm,
		&r.Fingerprint, &r.Status, &r.PEM, &r.RequestID, &r.Replaces, &r.Created, &r.Activated, &r.Revoked,
		&r.RevokeReason, &r.RevokeCode, &r.Superseded}
}

// fields are pointers to r's fields, in attemptColumns' order.
func (r *attemptRow) fields() []any {
	return []any{&r.DeviceID, &r.RequestID, &r.Reason, &r.Serial, &r.Started, &r.Finished, &r.Outcome,
		&r.ErrorCode, &r.LatencyNS, &r.Cause, &r.Detail}
}

// certPEMField is the index of the PEM among certRow's fields.
const certPEMField = 8

// listedCertRow is a certificate row read without its PEM, in certColumns' order (the fleet
// queries).
type listedCertRow struct{ certRow }

// fields are pointers to r's fields but the PEM, in certColumns' order.
func (r *listedCertRow) fields() []any {
	f := r.certRow.fields()
	return append(f[:certPEMField:certPEMField], f[certPEMField+1:]...)
}

// devicesByIDSQL reads the devices of a batch of ids, in id order, for deviceRow.fields.
var devicesByIDSQL = `SELECT ` + columnList("", deviceColumns) + ` FROM devices WHERE id IN ? ORDER BY id`

// scanRows runs q through gorm (its Row callback: Raw or a chained query with Rows) and
// scans each row field by field into a T (issue 11: the fleet view and the scheduler read
// every changed device again, and gorm's reflection on those rows was a sixth of the hub's
// allocations in a storm). q must select P's fields, in order.
func scanRows[T any, P interface {
	*T
	fields() []any
}](q *gorm.DB) ([]T, error) {
	rows, err := q.Rows()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var r T
		if err := rows.Scan(P(&r).fields()...); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// columnList is cols joined for a SELECT, each prefixed with prefix ("c." or "").
func columnList(prefix string, cols []string) string {
	return prefix + strings.Join(cols, ", "+prefix)
}

// loginSQL reads a certificate (without its PEM) and the state and identity epoch of its
// device; the scan's order is loginRow.fields.
const loginSQL = `SELECT c.serial, c.device_id, c.not_before, c.not_after, c.issuer, c.status, c.request_id,
		c.replaces, c.created_at, c.activated_at, c.revoked_at, c.revoke_reason, c.revoke_code, c.superseded_at,
		COALESCE(d.state, '') AS device_state, COALESCE(d.epoch, 0) AS device_epoch
	FROM certificates c LEFT JOIN devices d ON d.id = c.device_id WHERE c.serial = ? LIMIT 1`

// The reads of Lifecycle: the device's stored command, its active certificate, and its
// latest attempt still issued (the request in flight).
const (
	lifeCommandSQL = `SELECT command_id, command_action, command_reason, command_deadline FROM devices WHERE id = ?`
	lifeActiveSQL  = `SELECT serial, request_id, replaces FROM certificates WHERE ` + activeOfDevice + ` LIMIT 1`
	lifePendingSQL = `SELECT request_id, serial, started_at FROM attempts WHERE device_id = ? AND outcome = ?
		ORDER BY started_at DESC LIMIT 1`
)

// fields are pointers to r's fields, in loginSQL's order.
func (r *loginRow) fields() []any {
	c := &r.Cert
	return []any{&c.Serial, &c.DeviceID, &c.NotBefore, &c.NotAfter, &c.Issuer, &c.Status, &c.RequestID,
		&c.Replaces, &c.Created, &c.Activated, &c.Revoked, &c.RevokeReason, &c.RevokeCode, &c.Superseded,
		&r.DeviceState, &r.Epoch}
}

// prepareReads prepares the reads on db (the read pool), in PostgreSQL's text if pg.
func prepareReads(ctx context.Context, db *sql.DB, pg bool) (*reads, error) {
	rd := &reads{}
	texts := []struct {
		dst **sql.Stmt
		sql string
	}{
		{&rd.device, `SELECT ` + columnList("", deviceColumns) + ` FROM devices WHERE id = ?`},
		{&rd.subject, `SELECT family, tags FROM devices WHERE id = ?`},
		{&rd.attempt, `SELECT ` + columnList("", attemptColumns) + ` FROM attempts WHERE device_id = ? AND request_id = ?`},
		{&rd.cert, `SELECT ` + columnList("", certRowColumns) + ` FROM certificates WHERE serial = ?`},
		{&rd.login, loginSQL},
		{&rd.lifeCommand, lifeCommandSQL},
		{&rd.lifeActive, lifeActiveSQL},
		{&rd.lifePending, lifePendingSQL},
	}
	for _, p := range texts {
		q := p.sql
		if pg {
			q = numberedParams(q)
		}
		var err error
		if *p.dst, err = db.PrepareContext(ctx, q); err != nil {
			rd.close()
			return nil, fmt.Errorf("prepare read: %w", err)
		}
	}
	return rd, nil
}

func (rd *reads) close() {
	for _, s := range []*sql.Stmt{rd.device, rd.subject, rd.attempt, rd.cert, rd.login, rd.lifeCommand, rd.lifeActive, rd.lifePending} {
		if s != nil {
			s.Close()
		}
	}
}

// readOne runs the prepared single-row read st with args and scans it into dest; found is
// false when there is no row.
func readOne(ctx context.Context, st *sql.Stmt, args []any, dest []any) (found bool, err error) {
	switch err := st.QueryRowContext(ctx, args...).Scan(dest...); {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}
