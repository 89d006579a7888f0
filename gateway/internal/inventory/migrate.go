package inventory

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// migration is one step of the schema. Steps are numbered from 1, ordered and append-only:
// a released step is never edited, a change is a new step.
type migration struct {
	version int
	name    string
	sql     []string
	// apply, if set, runs after sql in the same transaction: data conversions SQL alone
	// cannot express.
	apply func(tx *gorm.DB) error
}

// migrations is the schema history. Times are INTEGER Unix seconds (0 = unset), durations
// INTEGER nanoseconds, lists and maps JSON text. Tables are STRICT so a wrong type is an
// error rather than a silent conversion.
var migrations = []migration{
	{version: 1, name: "initial schema", sql: []string{
		`CREATE TABLE devices (
			id TEXT PRIMARY KEY NOT NULL,
			name TEXT NOT NULL DEFAULT '',
			family TEXT NOT NULL DEFAULT '',
			model TEXT NOT NULL DEFAULT '',
			vendor TEXT NOT NULL DEFAULT '',
			firmware TEXT NOT NULL DEFAULT '',
			class TEXT NOT NULL DEFAULT '',
			tags TEXT NOT NULL DEFAULT '[]',
			path TEXT NOT NULL DEFAULT '',
			via TEXT NOT NULL DEFAULT '',
			mechanism TEXT NOT NULL DEFAULT '',
			created_at INTEGER NOT NULL DEFAULT 0,
			last_seen INTEGER NOT NULL DEFAULT 0,
			state TEXT NOT NULL,
			online INTEGER NOT NULL DEFAULT 0,
			health_serial TEXT NOT NULL DEFAULT '',
			health_not_after INTEGER NOT NULL DEFAULT 0,
			health_chain_ok INTEGER NOT NULL DEFAULT 0,
			health_clock_skew_ns INTEGER NOT NULL DEFAULT 0,
			health_agent_version TEXT NOT NULL DEFAULT '',
			health_last_error TEXT NOT NULL DEFAULT '',
			health_at INTEGER NOT NULL DEFAULT 0,
			renewal_state TEXT NOT NULL DEFAULT 'idle',
			renewal_failures INTEGER NOT NULL DEFAULT 0,
			renewal_next_attempt_at INTEGER NOT NULL DEFAULT 0,
			renewal_last_cause TEXT NOT NULL DEFAULT '',
			renewal_window_start INTEGER NOT NULL DEFAULT 0,
			renewal_window_end INTEGER NOT NULL DEFAULT 0
		) STRICT`,
		// No foreign key to devices: certificates outlive a removed device for the audit.
		`CREATE TABLE certificates (
			serial TEXT PRIMARY KEY NOT NULL,
			device_id TEXT NOT NULL,
			not_before INTEGER NOT NULL,
			not_after INTEGER NOT NULL,
			issuer TEXT NOT NULL DEFAULT '',
			key_algorithm TEXT NOT NULL DEFAULT '',
			fingerprint TEXT NOT NULL DEFAULT '',
			status TEXT NOT NULL CHECK (status IN ('pending', 'active', 'superseded', 'revoked')),
			pem TEXT NOT NULL DEFAULT '',
			request_id TEXT NOT NULL DEFAULT '',
			replaces TEXT NOT NULL DEFAULT '',
			created_at INTEGER NOT NULL DEFAULT 0,
			activated_at INTEGER NOT NULL DEFAULT 0,
			revoked_at INTEGER NOT NULL DEFAULT 0,
			revoke_reason TEXT NOT NULL DEFAULT ''
		) STRICT`,
		`CREATE INDEX certificates_device ON certificates (device_id, created_at)`,
		`CREATE UNIQUE INDEX certificates_one_active ON certificates (device_id) WHERE status = 'active'`,
		`CREATE INDEX certificates_status_not_after ON certificates (status, not_after)`,
		`CREATE TABLE attempts (
			device_id TEXT NOT NULL,
			request_id TEXT NOT NULL,
			reason TEXT NOT NULL DEFAULT '',
			serial TEXT NOT NULL DEFAULT '',
			started_at INTEGER NOT NULL DEFAULT 0,
			finished_at INTEGER NOT NULL DEFAULT 0,
			outcome TEXT NOT NULL CHECK (outcome IN ('issued', 'committed', 'rolled_back', 'failed')),
			error_code TEXT NOT NULL DEFAULT '',
			latency_ns INTEGER NOT NULL DEFAULT 0,
			PRIMARY KEY (device_id, request_id)
		) STRICT`,
		`CREATE INDEX attempts_device_started ON attempts (device_id, started_at)`,
		`CREATE INDEX attempts_started ON attempts (started_at)`,
		// No foreign key to devices: a token is created before its device exists.
		`CREATE TABLE tokens (
			hash TEXT PRIMARY KEY NOT NULL,
			device_id TEXT NOT NULL,
			name TEXT NOT NULL DEFAULT '',
			family TEXT NOT NULL DEFAULT '',
			created_at INTEGER NOT NULL DEFAULT 0,
			expires_at INTEGER NOT NULL,
			used_at INTEGER NOT NULL DEFAULT 0
		) STRICT`,
		`CREATE INDEX tokens_device ON tokens (device_id)`,
		`CREATE TABLE events (
			seq INTEGER PRIMARY KEY NOT NULL,
			time INTEGER NOT NULL,
			kind TEXT NOT NULL,
			device_id TEXT NOT NULL DEFAULT '',
			actor TEXT NOT NULL DEFAULT '',
			message TEXT NOT NULL DEFAULT '',
			data TEXT NOT NULL DEFAULT '{}',
			hash TEXT NOT NULL,
			prev_hash TEXT NOT NULL
		) STRICT`,
		`CREATE INDEX events_device ON events (device_id, seq)`,
		`CREATE INDEX events_kind ON events (kind, seq)`,
		`CREATE INDEX events_time ON events (time)`,
		// The audit log is append-only; the hash chain detects whoever drops these triggers.
		`CREATE TRIGGER events_no_update BEFORE UPDATE ON events
			BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END`,
		`CREATE TRIGGER events_no_delete BEFORE DELETE ON events
			BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END`,
		`CREATE TABLE settings (
			key TEXT PRIMARY KEY NOT NULL,
			value TEXT NOT NULL
		) STRICT`,
	}},
	// The device state machine (gateway/internal/lifecycle): a pending certificate whose
	// request ended uncommitted becomes abandoned (it can no longer log in); an attempt can
	// end expired (no commit before the in-flight timeout); a device keeps the renew command
	// it has not acted on, so it is sent again after a restart.
	{version: 2, name: "device state machine", sql: []string{
		`CREATE TABLE certificates_v2 (
			serial TEXT PRIMARY KEY NOT NULL,
			device_id TEXT NOT NULL,
			not_before INTEGER NOT NULL,
			not_after INTEGER NOT NULL,
			issuer TEXT NOT NULL DEFAULT '',
			key_algorithm TEXT NOT NULL DEFAULT '',
			fingerprint TEXT NOT NULL DEFAULT '',
			status TEXT NOT NULL CHECK (status IN ('pending', 'active', 'superseded', 'revoked', 'abandoned')),
			pem TEXT NOT NULL DEFAULT '',
			request_id TEXT NOT NULL DEFAULT '',
			replaces TEXT NOT NULL DEFAULT '',
			created_at INTEGER NOT NULL DEFAULT 0,
			activated_at INTEGER NOT NULL DEFAULT 0,
			revoked_at INTEGER NOT NULL DEFAULT 0,
			revoke_reason TEXT NOT NULL DEFAULT ''
		) STRICT`,
		`INSERT INTO certificates_v2 SELECT serial, device_id, not_before, not_after, issuer, key_algorithm,
			fingerprint, status, pem, request_id, replaces, created_at, activated_at, revoked_at, revoke_reason
			FROM certificates`,
		`DROP TABLE certificates`,
		`ALTER TABLE certificates_v2 RENAME TO certificates`,
		`CREATE INDEX certificates_device ON certificates (device_id, created_at)`,
		`CREATE UNIQUE INDEX certificates_one_active ON certificates (device_id) WHERE status = 'active'`,
		`CREATE INDEX certificates_status_not_after ON certificates (status, not_after)`,
		`CREATE INDEX certificates_status_created ON certificates (status, created_at)`,
		`CREATE TABLE attempts_v2 (
			device_id TEXT NOT NULL,
			request_id TEXT NOT NULL,
			reason TEXT NOT NULL DEFAULT '',
			serial TEXT NOT NULL DEFAULT '',
			started_at INTEGER NOT NULL DEFAULT 0,
			finished_at INTEGER NOT NULL DEFAULT 0,
			outcome TEXT NOT NULL CHECK (outcome IN ('issued', 'committed', 'rolled_back', 'failed', 'expired')),
			error_code TEXT NOT NULL DEFAULT '',
			latency_ns INTEGER NOT NULL DEFAULT 0,
			PRIMARY KEY (device_id, request_id)
		) STRICT`,
		`INSERT INTO attempts_v2 SELECT device_id, request_id, reason, serial, started_at, finished_at, outcome,
			error_code, latency_ns FROM attempts`,
		`DROP TABLE attempts`,
		`ALTER TABLE attempts_v2 RENAME TO attempts`,
		`CREATE INDEX attempts_device_started ON attempts (device_id, started_at)`,
		`CREATE INDEX attempts_started ON attempts (started_at)`,
		`ALTER TABLE devices ADD COLUMN command_id TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE devices ADD COLUMN command_action TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE devices ADD COLUMN command_reason TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE devices ADD COLUMN command_deadline INTEGER NOT NULL DEFAULT 0`,
		`ALTER TABLE devices ADD COLUMN renewal_again INTEGER NOT NULL DEFAULT 0`,
	}},
	// Key names written for people ("ECDSA P-256", "Ed25519", "RSA 2048", "unknown (T)")
	// become the protocol's (protocol.KeyAlgorithm: "p256", "ed25519", "rsa2048", "unknown").
	{version: 3, name: "protocol key algorithm names", sql: []string{
		`UPDATE certificates SET key_algorithm = CASE
			WHEN key_algorithm GLOB 'ECDSA P-[0-9]*' THEN 'p' || substr(key_algorithm, 9)
			WHEN key_algorithm = 'Ed25519' THEN 'ed25519'
			WHEN key_algorithm GLOB 'RSA [0-9]*' THEN 'rsa' || substr(key_algorithm, 5)
			WHEN key_algorithm GLOB 'unknown (*)' THEN 'unknown'
			ELSE key_algorithm END`,
	}},
	// Campaigns as rows (issue 10): a campaign's device entry changes in the same
	// transaction as the command it describes (RecordCommand), and a pass writes only the
	// entries that changed. The JSON records of earlier versions (settings "campaigns" and
	// "campaign/<id>") are converted and removed (migrateCampaignSettings).
	{version: 4, name: "campaign rows", sql: []string{
		`CREATE TABLE campaigns (
			seq INTEGER PRIMARY KEY NOT NULL,
			id TEXT NOT NULL UNIQUE,
			family TEXT NOT NULL DEFAULT '',
			class TEXT NOT NULL DEFAULT '',
			all_devices INTEGER NOT NULL DEFAULT 0,
			rate REAL NOT NULL DEFAULT 0,
			canary INTEGER NOT NULL DEFAULT 0,
			abort_after REAL NOT NULL DEFAULT 0,
			action TEXT NOT NULL DEFAULT '',
			state TEXT NOT NULL CHECK (state IN ('running', 'aborted', 'finished')),
			started_at INTEGER NOT NULL,
			ended_at INTEGER NOT NULL DEFAULT 0,
			cause TEXT NOT NULL DEFAULT ''
		) STRICT`,
		// No foreign key to devices: an entry outlives a removed device (it ends failed).
		`CREATE TABLE campaign_devices (
			campaign_id TEXT NOT NULL REFERENCES campaigns (id),
			device_id TEXT NOT NULL,
			position INTEGER NOT NULL,
			serial TEXT NOT NULL DEFAULT '',
			canary INTEGER NOT NULL DEFAULT 0,
			stage TEXT NOT NULL CHECK (stage IN ('pending', 'commanded', 'committed', 'failed')),
			commanded_at INTEGER NOT NULL DEFAULT 0,
			command_id TEXT NOT NULL DEFAULT '',
			failures INTEGER NOT NULL DEFAULT 0,
			cause TEXT NOT NULL DEFAULT '',
			PRIMARY KEY (campaign_id, device_id)
		) STRICT`,
		`CREATE INDEX campaign_devices_stage ON campaign_devices (campaign_id, stage)`,
	}, apply: migrateCampaignSettings},
	// Failure causes (issue 13): every attempt that did not succeed names one of the
	// protocol's causes (protocol.Causes) and keeps its detail for people. Attempts recorded
	// before get the cause their error code or outcome implies. Health reports bring the
	// device's manufacturer, model and the agent's architecture (Home Assistant's device info).
	{version: 5, name: "attempt causes, device info", sql: []string{
		`ALTER TABLE devices ADD COLUMN health_manufacturer TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE devices ADD COLUMN health_model TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE devices ADD COLUMN health_arch TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE attempts ADD COLUMN cause TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE attempts ADD COLUMN detail TEXT NOT NULL DEFAULT ''`,
		`UPDATE attempts SET cause = CASE
			WHEN outcome = 'expired' THEN 'commit_timeout'
			WHEN error_code = 'busy' THEN 'hub_busy'
			WHEN error_code = 'rate_limited' THEN 'rate_limited'
			WHEN error_code = 'internal' THEN 'hub_internal'
			WHEN error_code = 'policy_denied' THEN 'policy_refused'
			WHEN error_code IN ('bad_request', 'too_large', 'unsupported_version', 'bad_csr', 'identity_mismatch', 'weak_key') THEN 'bad_request'
			WHEN error_code IN ('unauthorized', 'revoked', 'expired') THEN error_code
			WHEN error_code IN ('unknown_request', 'not_presented') THEN 'commit_refused'
			WHEN outcome IN ('failed', 'rolled_back') THEN 'unknown'
			ELSE '' END`,
	}},
	// Revocation that bites (issue 12): the RFC 5280 reason code of each revocation, when a
	// certificate was superseded (it logs in only during the overlap after that), and each
	// device's identity epoch (no certificate created at or before it logs in).
	{version: 6, name: "revocation reasons, superseded time, identity epoch", sql: []string{
		`ALTER TABLE certificates ADD COLUMN revoke_code INTEGER NOT NULL DEFAULT 0`,
		`ALTER TABLE certificates ADD COLUMN superseded_at INTEGER NOT NULL DEFAULT 0`,
		`ALTER TABLE devices ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0`,
		`CREATE INDEX certificates_revoked ON certificates (revoked_at) WHERE revoked_at > 0`,
		// Devices quarantined before: their epoch is now, so only a new enrollment logs in.
		`UPDATE devices SET epoch = CAST(strftime('%s', 'now') AS INTEGER) WHERE state = 'quarantined'`,
	}},
	// People and change approval (issue 15): users with a role, dashboard sessions (only the
	// hash of the cookie is kept; no foreign key, since an admin of the configuration file
	// logs in too, and RemoveUser deletes a user's sessions), and proposed changes waiting
	// for a second admin.
	{version: 7, name: "users, sessions and proposals", sql: []string{
		`CREATE TABLE users (
			name TEXT PRIMARY KEY NOT NULL,
			role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
			password_hash TEXT NOT NULL,
			created_at INTEGER NOT NULL DEFAULT 0,
			updated_at INTEGER NOT NULL DEFAULT 0
		) STRICT`,
		`CREATE TABLE sessions (
			hash TEXT PRIMARY KEY NOT NULL,
			user TEXT NOT NULL,
			created_at INTEGER NOT NULL,
			expires_at INTEGER NOT NULL
		) STRICT`,
		`CREATE INDEX sessions_user ON sessions (user)`,
		`CREATE INDEX sessions_expires ON sessions (expires_at)`,
		`CREATE TABLE proposals (
			id TEXT PRIMARY KEY NOT NULL,
			kind TEXT NOT NULL,
			content TEXT NOT NULL,
			hash TEXT NOT NULL DEFAULT '',
			base_hash TEXT NOT NULL DEFAULT '',
			canary TEXT NOT NULL DEFAULT '',
			summary TEXT NOT NULL DEFAULT '',
			proposed_by TEXT NOT NULL,
			proposed_at INTEGER NOT NULL,
			state TEXT NOT NULL CHECK (state IN ('open', 'applied', 'rejected')),
			decided_by TEXT NOT NULL DEFAULT '',
			decided_at INTEGER NOT NULL DEFAULT 0
		) STRICT`,
		`CREATE INDEX proposals_state ON proposals (state, proposed_at)`,
	}},
	// Session history (issue 14, health against uptime): the intervals each device was
	// online, end_at 0 while it still is; written with the device's presence (presence.go),
	// pruned as it goes.
	{version: 8, name: "presence history", sql: []string{
		`CREATE TABLE presence (
			device_id TEXT NOT NULL,
			start_at INTEGER NOT NULL,
			end_at INTEGER NOT NULL DEFAULT 0
		) STRICT`,
		`CREATE INDEX presence_device ON presence (device_id, end_at)`,
		`CREATE INDEX presence_end ON presence (end_at)`,
	}},
	// The login lockout across restarts (issue 15): failed logins counted per source, device
	// id and user name, each row forgotten at expires_at (gateway/internal/access).
	{version: 9, name: "lockouts", sql: []string{
		`CREATE TABLE lockouts (
			kind TEXT NOT NULL,
			key TEXT NOT NULL,
			count INTEGER NOT NULL,
			last_at INTEGER NOT NULL,
			until_at INTEGER NOT NULL,
			expires_at INTEGER NOT NULL,
			PRIMARY KEY (kind, key)
		) STRICT`,
		`CREATE INDEX lockouts_expires ON lockouts (expires_at)`,
	}},
	// Each device's class as the policy in force chooses it (issue 14: the device list's
	// class filter in SQL): class_hash is the policy.ClassHash class was chosen under, ''
	// for the classes stored before (chosen at the last issuance, under whichever policy
	// was then in force). A class whose hash is not the policy's is stale: Reclassify
	// rewrites those when a policy is put in force, and readers choose it themselves
	// until then.
	{version: 10, name: "device class under the policy in force", sql: []string{
		`ALTER TABLE devices ADD COLUMN class_hash TEXT NOT NULL DEFAULT ''`,
		`CREATE INDEX devices_class ON devices (class_hash, class, id)`,
	}},
}

// migrate applies the steps of ms the database lacks, each in its own transaction together
// with its schema_migrations row, so a failed step leaves the previous version intact. The
// current version is re-read inside each transaction: two processes opening the same file at
// once apply each step once (on PostgreSQL under an advisory lock, pgMigrateLock). On
// PostgreSQL each step runs pgStatements, its statements in PostgreSQL's dialect.
func migrate(ctx context.Context, db *gorm.DB, ms []migration) error {
	for i, m := range ms {
		if m.version != i+1 {
			return fmt.Errorf("migration %d (%s): out of order, want version %d", m.version, m.name, i+1)
		}
	}
	db = db.WithContext(ctx)
	pg := db.Dialector.Name() == "postgres"
	create := `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY NOT NULL,
		name TEXT NOT NULL,
		applied_at INTEGER NOT NULL
	) STRICT`
	if pg {
		create = `CREATE TABLE IF NOT EXISTS schema_migrations (
			version BIGINT PRIMARY KEY NOT NULL,
			name TEXT NOT NULL,
			applied_at BIGINT NOT NULL
		)`
	}
	// Replicas starting together on PostgreSQL: one creates the table, the others wait.
	err := db.Transaction(func(tx *gorm.DB) error {
		if pg {
			if err := tx.Exec("SELECT pg_advisory_xact_lock(?)", pgMigrateLock).Error; err != nil {
				return err
			}
		}
		return tx.Exec(create).Error
	})
	if err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	for {
		done := false
		err := db.Transaction(func(tx *gorm.DB) error {
			if pg {
				if err := tx.Exec("SELECT pg_advisory_xact_lock(?)", pgMigrateLock).Error; err != nil {
					return fmt.Errorf("take the migration lock: %w", err)
				}
			}
			var current int
			if err := tx.Raw("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&current).Error; err != nil {
				return fmt.Errorf("read schema version: %w", err)
			}
			switch {
			case current > len(ms):
				return fmt.Errorf("%w: database is at version %d, this program knows up to %d", ErrSchemaTooNew, current, len(ms))
			case current == len(ms):
				done = true
				return nil
			}
			m := ms[current]
			stmts := m.sql
			if pg {
				stmts = pgStatements(m)
			}
			for _, stmt := range stmts {
				if err := tx.Exec(stmt).Error; err != nil {
					return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
				}
			}
			if m.apply != nil {
				if err := m.apply(tx); err != nil {
					return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
				}
			}
			return tx.Exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
				m.version, m.name, time.Now().Unix()).Error
		})
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// SchemaVersion returns the highest migration applied to the database.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	if err := s.read(ctx).Raw("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&v).Error; err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}
