package inventory

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// The inventory on PostgreSQL, for hub replicas sharing one database (issue 17).
//
// The schema and its migrations are SQLite's, step for step (postgres_schema.go). What the
// single SQLite writer guarantees within one file, PostgreSQL guarantees across replicas:
//
//   - Every write transaction first takes one transaction-scoped advisory lock
//     (pgWriteLock): the writes of all replicas are serialized in the database, as SQLite's
//     BEGIN IMMEDIATE serializes the processes sharing a file. So a device's state changes
//     are applied in one order whichever replica makes them (a read-then-write transaction
//     sees every change committed before it), and the audit chain stays one chain: the head
//     an append reads is the last committed one, and no other replica appends until this
//     transaction ends. The lock's cost is that writes do not run in parallel across
//     replicas; each replica still groups its writes into one transaction (committer).
//   - Every session runs with synchronous_commit on, checked at Open: a transaction that
//     returned is in the WAL on the server's disk (the server's fsync must be on, as it is
//     by default).
//   - Migrations take their own advisory lock (pgMigrateLock), so replicas starting
//     together apply each step once.
const (
	pgWriteLock   int64 = 0x6865617274680001 // "hearth" 1: every write transaction
	pgMigrateLock int64 = 0x6865617274680002 // "hearth" 2: schema migrations
)

// PostgresOptions locate the PostgreSQL database of OpenPostgres.
type PostgresOptions struct {
	// DSN is a libpq connection string ("host=db.example port=5432 user=hearth dbname=hearth
	// sslmode=verify-full") or URL. It must not contain the password: that comes from
	// PasswordFile, or from the environment (PGPASSWORD) or ~/.pgpass as libpq reads them.
	DSN string
	// PasswordFile, if set, is a file whose content (without a trailing newline) is the
	// password.
	PasswordFile string
	// ReadConns is the size of the read pool; 0 means 8.
	ReadConns int
}

// pgConfig parses o into a pgx configuration, with the password and the session settings.
// Errors never repeat the DSN (pgx's own redact the password).
func pgConfig(o PostgresOptions) (*pgx.ConnConfig, error) {
	if strings.TrimSpace(o.DSN) == "" {
		return nil, invalidf("postgres dsn is empty")
	}
	cfg, err := pgx.ParseConfig(o.DSN)
	if err != nil {
		return nil, fmt.Errorf("%w: postgres dsn: %w", ErrInvalid, err)
	}
	if dsnHasPassword(o.DSN) {
		return nil, invalidf("postgres dsn contains a password: put it in a password file or PGPASSWORD, never in the configuration")
	}
	if o.PasswordFile != "" {
		b, err := os.ReadFile(o.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("postgres password file: %w", err)
		}
		cfg.Password = strings.TrimRight(string(b), "\r\n")
	}
	cfg.RuntimeParams["synchronous_commit"] = "on"
	// A replica stopped (SIGSTOP, a VM paused) inside a write transaction would hold the
	// write lock, and every replica's writes with it: the server ends such a session.
	cfg.RuntimeParams["idle_in_transaction_session_timeout"] = "5s"
	cfg.RuntimeParams["application_name"] = "hearth-gateway"
	return cfg, nil
}

// dsnHasPassword reports whether the DSN itself carries a password (a URL's user
// information or password parameter, a key=value string's password keyword).
func dsnHasPassword(dsn string) bool {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return true // unparsable: refuse rather than risk logging it
		}
		_, set := u.User.Password()
		return set || u.Query().Has("password")
	}
	return dsnPasswordKeyword.MatchString(dsn)
}

var dsnPasswordKeyword = regexp.MustCompile(`(^|\s)password\s*=`)

// OpenPostgres opens the inventory in the PostgreSQL database o names and brings its
// schema up to date (creating it in an empty database). Writes go through one connection
// and are serialized with every other replica's (see pgWriteLock); reads use a pool of
// read-only sessions.
func OpenPostgres(ctx context.Context, o PostgresOptions) (*Store, error) {
	cfg, err := pgConfig(o)
	if err != nil {
		return nil, err
	}
	w, err := openPostgresPool(ctx, cfg, 1)
	if err != nil {
		return nil, err
	}
	s := &Store{w: w, pg: true}
	var sync string
	if err := w.WithContext(ctx).Raw("SHOW synchronous_commit").Scan(&sync).Error; err != nil {
		s.Close()
		return nil, fmt.Errorf("open inventory on postgres: %w", err)
	}
	if sync != "on" {
		s.Close()
		return nil, fmt.Errorf("open inventory on postgres: synchronous_commit is %q, want on", sync)
	}
	if err := migrate(ctx, w, migrations); err != nil {
		s.Close()
		return nil, fmt.Errorf("open inventory on postgres: %w", err)
	}
	if err := w.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec("SELECT pg_advisory_xact_lock(?)", pgMigrateLock).Error; err != nil {
			return err
		}
		return tx.Exec(leaseTable).Error
	}); err != nil {
		s.Close()
		return nil, fmt.Errorf("open inventory on postgres: create the lease table: %w", err)
	}
	sqlDB, err := w.DB()
	if err == nil {
		s.st, err = prepareStmts(ctx, sqlDB, true)
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("open inventory on postgres: %w", err)
	}
	rcfg := cfg.Copy()
	rcfg.RuntimeParams["default_transaction_read_only"] = "on"
	n := o.ReadConns
	if n <= 0 {
		n = 8
	}
	if s.r, err = openPostgresPool(ctx, rcfg, n); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.prepareReads(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("open inventory on postgres: %w", err)
	}
	return s, nil
}

// openPostgresPool opens a gorm DB of conns connections with cfg.
func openPostgresPool(ctx context.Context, cfg *pgx.ConnConfig, conns int) (*gorm.DB, error) {
	sqlDB := stdlib.OpenDB(*cfg)
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{
		Logger:                 logger.Discard,
		SkipDefaultTransaction: true,
		TranslateError:         true,
	})
	if err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("open inventory on postgres: %w", err)
	}
	sqlDB.SetMaxOpenConns(conns)
	sqlDB.SetMaxIdleConns(conns)
	if err := sqlDB.PingContext(ctx); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("open inventory on postgres: %w", err)
	}
	return db, nil
}

// Driver names the database the Store runs on: "sqlite" or "postgres".
func (s *Store) Driver() string {
	if s.pg {
		return "postgres"
	}
	return "sqlite"
}

// Ping checks that the database answers (the hub's readiness).
func (s *Store) Ping(ctx context.Context) error {
	sqlDB, err := s.r.DB()
	if err != nil {
		return fmt.Errorf("inventory ping: %w", err)
	}
	if err := sqlDB.PingContext(ctx); err != nil {
		return fmt.Errorf("inventory ping: %w", err)
	}
	return nil
}

// lockWrites takes the database-wide write lock for tx's transaction on PostgreSQL (see
// pgWriteLock); on SQLite the writer connection's IMMEDIATE transaction already holds it.
func (s *Store) lockWrites(tx *gorm.DB) error {
	if !s.pg {
		return nil
	}
	if err := tx.Exec("SELECT pg_advisory_xact_lock(?)", pgWriteLock).Error; err != nil {
		return fmt.Errorf("take the inventory's write lock: %w", err)
	}
	return nil
}

// lockedWrite wraps a write transaction's fn so that it holds the write lock first, then
// checks the fence ctx carries (WithFence). Taking the lock again inside the same
// transaction (every write of a group commit does) is free.
func (s *Store) lockedWrite(ctx context.Context, fn func(tx *gorm.DB) error) func(tx *gorm.DB) error {
	if !s.pg {
		return fn
	}
	return func(tx *gorm.DB) error {
		if err := s.lockWrites(tx); err != nil {
			return err
		}
		if err := checkFence(ctx, tx); err != nil {
			return err
		}
		return fn(tx)
	}
}

// PostgreSQL's statements of the issuance path (stmts): numbered $n parameters, CASE for
// SQLite's iif, the device table named where ON CONFLICT's update refers to the stored row.
const (
	pgUpsertDeviceSQL = `INSERT INTO devices (id, name, family, model, vendor, firmware, class, tags, path, via,
			mechanism, created_at, last_seen, state, online, health_serial, health_not_after, health_chain_ok,
			health_clock_skew_ns, health_agent_version, health_last_error, health_at, renewal_state,
			renewal_failures, renewal_next_attempt_at, renewal_last_cause, renewal_window_start, renewal_window_end,
			class_hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21,
			$22, $23, $24, $25, $26, $27, $28, $30)
		ON CONFLICT (id) DO UPDATE SET
			name = CASE WHEN excluded.name <> '' THEN excluded.name ELSE devices.name END,
			family = CASE WHEN excluded.family <> '' THEN excluded.family ELSE devices.family END,
			model = CASE WHEN excluded.model <> '' THEN excluded.model ELSE devices.model END,
			vendor = CASE WHEN excluded.vendor <> '' THEN excluded.vendor ELSE devices.vendor END,
			firmware = CASE WHEN excluded.firmware <> '' THEN excluded.firmware ELSE devices.firmware END,
			class = CASE WHEN excluded.class <> '' THEN excluded.class ELSE devices.class END,
			class_hash = CASE WHEN excluded.class <> '' THEN excluded.class_hash ELSE devices.class_hash END,
			path = CASE WHEN excluded.path <> '' THEN excluded.path ELSE devices.path END,
			via = CASE WHEN excluded.via <> '' THEN excluded.via ELSE devices.via END,
			mechanism = CASE WHEN excluded.mechanism <> '' THEN excluded.mechanism ELSE devices.mechanism END,
			tags = CASE WHEN $29::boolean THEN excluded.tags ELSE devices.tags END`
	pgInsertCertSQL = `INSERT INTO certificates (serial, device_id, not_before, not_after, issuer, key_algorithm,
			fingerprint, status, pem, request_id, replaces, created_at, activated_at, revoked_at, revoke_reason)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`
	pgInsertAttemptSQL = `INSERT INTO attempts (device_id, request_id, reason, serial, started_at, finished_at,
			outcome, error_code, latency_ns, cause, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`
	pgInsertEventSQL = `INSERT INTO events (seq, time, kind, device_id, actor, message, data, hash, prev_hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`
)

// errSnapshotPostgres is Snapshot's answer on PostgreSQL.
var errSnapshotPostgres = errors.New("snapshot: the inventory is on postgres; back it up with pg_dump or the server's own backups")
