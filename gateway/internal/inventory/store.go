// Package inventory is the hub's durable state: devices, certificates, issuance attempts,
// enrollment tokens, renewal campaigns, a hash-chained audit log and a few settings, kept in
// one SQLite file.
//
// It is the only package of the hub that imports gorm. Its exported types carry no gorm
// tags: private row structs hold the columns and are converted at the boundary.
//
// Invariants:
//   - A device has at most one active certificate (a partial unique index enforces it);
//     Activate moves the previous active one to superseded in the same transaction.
//   - Multi-row changes (RecordIssuance, Activate, RevokeDevice, RemoveDevice, CreateCampaign,
//     RecordCommand) are one transaction each: they happen entirely or not at all. A renew
//     command of the scheduler (RecordCommand) is stored with the device's renewal state,
//     its campaign entry and its audit event.
//   - Every certificate issuance, activation and revocation, every token creation and use,
//     every device removal or state change appends an audit event in the same transaction
//     as the change (see the Event* kind constants). The actor of those events is taken
//     from the context (WithActor), "hub" by default.
//   - Events are append-only (SQLite triggers refuse UPDATE and DELETE) and hash-chained:
//     each event's Hash covers the previous event's Hash, so VerifyAudit finds an edited,
//     reordered or removed row.
//   - Times are stored as Unix seconds (UTC, truncated to the second); the zero time.Time is
//     stored as 0 and read back as the zero time.Time (so is 1970-01-01T00:00:00Z, which
//     events refuse).
//   - The schema is versioned by numbered, append-only migrations (schema_migrations); a
//     database written by a newer version is refused with ErrSchemaTooNew.
//
// Concurrency: a Store is safe for concurrent use. All writes go through one writer
// connection, opened with BEGIN IMMEDIATE transactions, so read-then-write transactions
// inside this process never fail with "database is locked"; writes that arrive together
// share one transaction and one commit, each in its own savepoint (group commit: see
// committer), and each returns only once that commit is on disk; reads use a small pool of
// read-only connections that WAL lets run beside the writer. Another process (the CLI) may
// open the same file: it waits up to the busy timeout (5 s) for the write lock.
//
// Hub replicas share one PostgreSQL database instead (OpenPostgres, postgres.go): the same
// schema, migrations and invariants, every write transaction serialized across replicas by
// an advisory lock, the audit log append-only by trigger, and named leases whose terms fence
// the writes of a leader that lost its lease (lease.go).
package inventory

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// readConns is the size of the read-only connection pool.
const readConns = 4

// Store is the inventory database. Create it with Open and release it with Close.
type Store struct {
	w  *gorm.DB  // exactly one connection: every write transaction
	r  *gorm.DB  // read-only pool: reads outside write transactions
	st *stmts    // the issuance path's statements, prepared on w's connection
	rd *reads    // the renewal path's single-row reads, prepared on r
	gc committer // groups the write transactions that arrive together (write)
	pg bool      // on PostgreSQL (OpenPostgres), not SQLite
	// camps keeps the entries of the campaigns in progress (CampaignsInProgress).
	camps campaignCache
}

// Open opens (creating if needed) the SQLite database at path and brings its schema up to
// date. The parent directory is created with mode 0700 and the file with mode 0600 (an
// existing file is tightened to 0600). The database uses WAL journaling with
// synchronous=FULL: a transaction that returned survives a crash of the process and a power
// loss, so what the hub acknowledged (a commit above all) is never lost. (NORMAL would save
// about a fifth of a write's cost here and lose the last transactions on a power loss; a
// device acknowledged on a commit the hub then forgot would find its certificate abandoned.)
func Open(ctx context.Context, path string) (*Store, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	if err := prepareFile(path); err != nil {
		return nil, err
	}
	w, err := openPool(ctx, path+"?_journal_mode=WAL&_synchronous=FULL&_busy_timeout=5000&_foreign_keys=on&_txlock=immediate", 1, false)
	if err != nil {
		return nil, err
	}
	s := &Store{w: w}
	var mode string
	if err := w.WithContext(ctx).Raw("PRAGMA journal_mode").Scan(&mode).Error; err != nil {
		s.Close()
		return nil, fmt.Errorf("open inventory %s: read journal mode: %w", path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		s.Close()
		return nil, fmt.Errorf("open inventory %s: journal mode is %q, want wal (is the file on a network file system?)", path, mode)
	}
	if err := migrate(ctx, w, migrations); err != nil {
		s.Close()
		return nil, fmt.Errorf("open inventory %s: %w", path, err)
	}
	sqlDB, err := w.DB()
	if err == nil {
		s.st, err = prepareStmts(ctx, sqlDB, false)
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("open inventory %s: %w", path, err)
	}
	s.r, err = openPool(ctx, path+"?_busy_timeout=5000&_foreign_keys=on&_query_only=1", readConns, true)
	if err != nil {
		s.Close()
		return nil, err
	}
	if err := s.prepareReads(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("open inventory %s: %w", path, err)
	}
	return s, nil
}

// Close closes the database. The Store must not be used afterwards.
func (s *Store) Close() error {
	var errs []error
	if s.st != nil {
		s.st.close()
	}
	if s.rd != nil {
		s.rd.close()
	}
	for _, db := range []*gorm.DB{s.r, s.w} {
		if db == nil {
			continue
		}
		sqlDB, err := db.DB()
		if err == nil {
			err = sqlDB.Close()
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close inventory: %w", err)
	}
	return nil
}

// checkPath refuses names the SQLite driver would misread: its DSN is "path?params".
func checkPath(path string) error {
	switch {
	case path == "":
		return invalidf("database path is empty")
	case strings.ContainsAny(path, "?#"):
		return invalidf("database path %q contains '?' or '#'", path)
	case strings.HasPrefix(path, "file:") || strings.HasPrefix(path, ":"):
		return invalidf("database path %q must be a file name, not a URI or special name", path)
	}
	return nil
}

// prepareFile creates the parent directory (0700) and the database file (0600) so that
// SQLite, which creates its -wal and -shm files with the database's mode, never widens them.
func prepareFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create inventory directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("create inventory file: %w", err)
	}
	info, err := f.Stat()
	if err == nil && info.Mode().Perm()&0o077 != 0 {
		err = f.Chmod(0o600)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("inventory file %s: %w", path, err)
	}
	return nil
}

// openPool opens a gorm DB on dsn with conns connections. prepare turns on gorm's statement
// cache, which helps only outside transactions (see stmts).
func openPool(ctx context.Context, dsn string, conns int, prepare bool) (*gorm.DB, error) {
	db, err := gorm.Open(sqlite.Open(dsn), &gorm.Config{
		// Errors are returned to the caller; gorm's own logging would only duplicate them.
		Logger:                 logger.Discard,
		SkipDefaultTransaction: true, // writes choose their transactions explicitly
		TranslateError:         true,
		PrepareStmt:            prepare,
	})
	if err != nil {
		return nil, fmt.Errorf("open inventory: %w", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("open inventory: %w", err)
	}
	sqlDB.SetMaxOpenConns(conns)
	sqlDB.SetMaxIdleConns(conns)
	sqlDB.SetConnMaxLifetime(0)
	sqlDB.SetConnMaxIdleTime(0)
	if err := sqlDB.PingContext(ctx); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("open inventory: %w", err)
	}
	return db, nil
}

// prepareReads prepares the reads (reads) on the read pool.
func (s *Store) prepareReads(ctx context.Context) error {
	sqlDB, err := s.r.DB()
	if err == nil {
		s.rd, err = prepareReads(ctx, sqlDB, s.pg)
	}
	return err
}

// read returns the read pool bound to ctx.
func (s *Store) read(ctx context.Context) *gorm.DB {
	return s.r.WithContext(ctx)
}

// Setting returns the value stored under key, or ErrNotFound. Settings hold small hub
// state such as the CRL number or the hash of the policy in force.
func (s *Store) Setting(ctx context.Context, key string) (string, error) {
	var rows []settingRow
	if err := s.read(ctx).Where("key = ?", key).Limit(1).Find(&rows).Error; err != nil {
		return "", fmt.Errorf("setting %q: %w", key, err)
	}
	if len(rows) == 0 {
		return "", fmt.Errorf("setting %q: %w", key, ErrNotFound)
	}
	return rows[0].Value, nil
}

// SetSetting stores value under key, replacing any previous value.
func (s *Store) SetSetting(ctx context.Context, key, value string) error {
	if key == "" {
		return invalidf("setting key is empty")
	}
	if err := checkText(key, value); err != nil {
		return err
	}
	err := s.w.WithContext(ctx).Exec(
		"INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
		key, value).Error
	if err != nil {
		return fmt.Errorf("set setting %q: %w", key, err)
	}
	return nil
}

// one reads the first row q finds; found is false when there is none. It scans into one
// row: Find into a slice has gorm allocate room for twenty rows first, and single-row reads
// were a tenth of the hub's allocations in a renewal storm (issue 11).
func one[T any](q *gorm.DB) (row T, found bool, err error) {
	res := q.Limit(1).Find(&row)
	return row, res.RowsAffected > 0, res.Error
}

// unix converts t to stored Unix seconds; the zero time is 0.
func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// fromUnix converts stored Unix seconds back; 0 is the zero time.
func fromUnix(sec int64) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0).UTC()
}
