package inventory

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
)

// TestPostgresReplicasShareOneOrder runs two Stores on one PostgreSQL database, as two hub
// replicas do, writing at once: every write lands, the audit chain is one chain, and the
// last state change of a device is the one both replicas read.
func TestPostgresReplicasShareOneOrder(t *testing.T) {
	dsn := testkit.SharedPostgres(t).NewDatabase(t)
	var replicas []*Store
	for range 2 {
		s, err := OpenPostgres(t.Context(), PostgresOptions{DSN: dsn})
		if err != nil {
			t.Fatalf("OpenPostgres() = %v", err)
		}
		t.Cleanup(func() { s.Close() })
		replicas = append(replicas, s)
	}
	const perReplica = 40
	var wg sync.WaitGroup
	errs := make(chan error, 2*perReplica)
	for r, s := range replicas {
		wg.Go(func() {
			for i := range perReplica {
				dev := fmt.Sprintf("dev-%d-%03d", r, i)
				in := issuance(dev, fmt.Sprintf("%x%03x", r+10, i), "req-"+dev, t0)
				if err := s.RecordIssuance(t.Context(), in); err != nil {
					errs <- fmt.Errorf("replica %d: RecordIssuance(%s) = %w", r, dev, err)
				}
				// Both replicas change one shared device: each change is a read-then-write.
				if _, err := s.AppendEvent(t.Context(), Event{Time: t0, Kind: "test.shared", DeviceID: "shared",
					Message: fmt.Sprintf("replica %d change %d", r, i)}); err != nil {
					errs <- fmt.Errorf("replica %d: AppendEvent = %w", r, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i, s := range replicas {
		if err := s.VerifyAudit(t.Context()); err != nil {
			t.Errorf("replica %d: VerifyAudit() = %v, want one intact chain", i, err)
		}
		n, err := s.CountDevices(t.Context())
		if err != nil || n != 2*perReplica {
			t.Errorf("replica %d: CountDevices() = %d, %v, want %d", i, n, err, 2*perReplica)
		}
	}
	evs, err := replicas[0].Events(t.Context(), EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d, want %d: the chain has a gap or a fork", i, e.Seq, i+1)
		}
	}
}

// TestOpenPostgresRefusals: a password in the DSN is refused (it would end up in logs and
// the configuration), the password file is read, and a session runs with synchronous_commit
// on.
func TestOpenPostgresRefusals(t *testing.T) {
	pg := testkit.SharedPostgres(t)
	dsn := pg.NewDatabase(t)
	for _, bad := range []string{
		dsn + " password=secret",
		"postgres://hearth:secret@localhost/hearth",
		"postgres://hearth@localhost/hearth?password=secret",
		"",
	} {
		if _, err := OpenPostgres(t.Context(), PostgresOptions{DSN: bad}); !errors.Is(err, ErrInvalid) {
			t.Errorf("OpenPostgres(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := OpenPostgres(t.Context(), PostgresOptions{DSN: dsn, PasswordFile: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("OpenPostgres(missing password file) = nil, want an error")
	}
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("unused-by-trust\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenPostgres(t.Context(), PostgresOptions{DSN: dsn, PasswordFile: pw})
	if err != nil {
		t.Fatalf("OpenPostgres(password file) = %v", err)
	}
	defer s.Close()
	var sync string
	if err := s.w.Raw("SHOW synchronous_commit").Scan(&sync).Error; err != nil || sync != "on" {
		t.Errorf("synchronous_commit = %q, %v, want on", sync, err)
	}
	var ro string
	if err := s.r.Raw("SHOW default_transaction_read_only").Scan(&ro).Error; err != nil || ro != "on" {
		t.Errorf("read pool default_transaction_read_only = %q, %v, want on", ro, err)
	}
	if err := s.Snapshot(t.Context(), filepath.Join(t.TempDir(), "snap.db")); !errors.Is(err, errSnapshotPostgres) {
		t.Errorf("Snapshot() on postgres = %v, want errSnapshotPostgres", err)
	}
	if s.Driver() != "postgres" {
		t.Errorf("Driver() = %q, want postgres", s.Driver())
	}
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping() = %v", err)
	}
	if v, err := s.SchemaVersion(t.Context()); err != nil || v != len(migrations) {
		t.Errorf("SchemaVersion() = %d, %v, want %d", v, err, len(migrations))
	}
}
