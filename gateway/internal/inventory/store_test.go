package inventory

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hearth-pki/hearth/protocol"
)

func TestOpenCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "hearth")
	path := filepath.Join(dir, "inventory.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(%q) = %v", path, err)
	}
	defer s.Close()
	if err := s.SetSetting(t.Context(), "k", "v"); err != nil {
		t.Fatalf("SetSetting() = %v", err)
	}
	for name, want := range map[string]os.FileMode{
		dir:           0o700 | os.ModeDir,
		path:          0o600,
		path + "-wal": 0o600,
	} {
		info, err := os.Stat(name)
		if err != nil {
			t.Fatalf("Stat(%q) = %v", name, err)
		}
		if got := info.Mode() & (os.ModeDir | os.ModePerm); got != want {
			t.Errorf("mode of %q = %v, want %v", name, got, want)
		}
	}
}

func TestOpenTightensExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.db")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(%q) = %v", path, err)
	}
	s.Close()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != 0o600 {
		t.Errorf("mode of %q = %v, want 0600", path, got)
	}
}

func TestOpenRejectsBadPaths(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, path string
		want       error
	}{
		{"empty", "", ErrInvalid},
		{"query", filepath.Join(dir, "a.db?mode=memory"), ErrInvalid},
		{"uri", "file:" + filepath.Join(dir, "a.db"), ErrInvalid},
		{"memory", ":memory:", ErrInvalid},
		{"directory", dir, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(t.Context(), tc.path)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q) = nil error, want an error", tc.path)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Open(%q) = %v, want %v", tc.path, err, tc.want)
			}
		})
	}
}

func TestReopenIsNoop(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	mustIssue(t, s, issuance("plug-1", "0a", "r1", t0))
	before := snapshot(t, s)
	s.Close()
	for i := range 2 {
		s, err = Open(t.Context(), path)
		if err != nil {
			t.Fatalf("Open() #%d = %v", i+2, err)
		}
		var applied int64
		if err := s.w.Raw("SELECT COUNT(*) FROM schema_migrations").Scan(&applied).Error; err != nil {
			t.Fatal(err)
		}
		if applied != int64(len(migrations)) {
			t.Errorf("schema_migrations has %d rows after reopen, want %d", applied, len(migrations))
		}
		v, err := s.SchemaVersion(t.Context())
		if err != nil || v != len(migrations) {
			t.Errorf("SchemaVersion() = %d, %v, want %d", v, err, len(migrations))
		}
		if after := snapshot(t, s); after != before {
			t.Errorf("rows after reopen:\n%s\nwant\n%s", after, before)
		}
		s.Close()
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	if err := s.w.Exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'from the future', 0)",
		len(migrations)+1).Error; err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(t.Context(), path)
	if err == nil {
		s.Close()
	}
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open(newer database) = %v, want %v", err, ErrSchemaTooNew)
	}
}

func TestMigrateStepIsAtomic(t *testing.T) {
	db, err := openPool(t.Context(), filepath.Join(t.TempDir(), "m.db")+"?_txlock=immediate", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := db.DB()
	defer sqlDB.Close()
	ms := []migration{
		{version: 1, name: "one", sql: []string{"CREATE TABLE one (x INTEGER)"}},
		{version: 2, name: "two", sql: []string{"CREATE TABLE two (x INTEGER)", "THIS IS NOT SQL"}},
	}
	if err := migrate(t.Context(), db, ms); err == nil {
		t.Fatal("migrate(bad step 2) = nil, want an error")
	}
	var version, tables int
	db.Raw("SELECT MAX(version) FROM schema_migrations").Scan(&version)
	db.Raw("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'two'").Scan(&tables)
	if version != 1 || tables != 0 {
		t.Errorf("after failed step 2: version %d, table two exists %d times; want 1 and 0", version, tables)
	}
	// Fixing the step lets the next open finish the migration.
	ms[1].sql = ms[1].sql[:1]
	if err := migrate(t.Context(), db, ms); err != nil {
		t.Fatalf("migrate(fixed) = %v", err)
	}
	db.Raw("SELECT MAX(version) FROM schema_migrations").Scan(&version)
	if version != 2 {
		t.Errorf("version after fixed migration = %d, want 2", version)
	}
	// An out-of-order list is a programming error, caught before touching the database.
	if err := migrate(t.Context(), db, []migration{{version: 2, name: "gap"}}); err == nil {
		t.Error("migrate(out of order) = nil, want an error")
	}
}

func TestMigrationsAreNumberedInOrder(t *testing.T) {
	for i, m := range migrations {
		if m.version != i+1 || m.name == "" || len(m.sql) == 0 {
			t.Errorf("migrations[%d] = version %d %q with %d statements, want version %d, a name and SQL", i, m.version, m.name, len(m.sql), i+1)
		}
	}
}

func TestSettings(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	if _, err := s.Setting(ctx, "crl.number"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Setting(missing) = %v, want %v", err, ErrNotFound)
	}
	for _, v := range []string{"1", "2", ""} {
		if err := s.SetSetting(ctx, "crl.number", v); err != nil {
			t.Fatalf("SetSetting(%q) = %v", v, err)
		}
		if got, err := s.Setting(ctx, "crl.number"); err != nil || got != v {
			t.Errorf("Setting() = %q, %v, want %q", got, err, v)
		}
	}
	if err := s.SetSetting(ctx, "", "x"); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetSetting(empty key) = %v, want %v", err, ErrInvalid)
	}
}

func TestMigrateKeyAlgorithmNames(t *testing.T) {
	db, err := openPool(t.Context(), filepath.Join(t.TempDir(), "m.db")+"?_txlock=immediate", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := db.DB()
	defer sqlDB.Close()
	if err := migrate(t.Context(), db, migrations[:1]); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		old  string
		want protocol.KeyAlgorithm
	}{
		{"ECDSA P-256", protocol.KeyP256}, {"ECDSA P-384", protocol.KeyP384}, {"ECDSA P-521", protocol.KeyP521},
		{"Ed25519", protocol.KeyEd25519}, {"RSA 2048", protocol.KeyRSA2048}, {"RSA 4096", protocol.KeyRSA4096},
		{"unknown (*mlkem.PublicKey)", protocol.KeyUnknown}, {"", ""}, {"p256", protocol.KeyP256},
	}
	for i, tt := range tests {
		if err := db.Exec("INSERT INTO certificates (serial, device_id, not_before, not_after, key_algorithm, status) VALUES (?, 'd', 0, 1, ?, 'superseded')",
			fmt.Sprintf("%x", i+1), tt.old).Error; err != nil {
			t.Fatal(err)
		}
	}
	if err := migrate(t.Context(), db, migrations); err != nil {
		t.Fatalf("migrate(all) = %v", err)
	}
	for i, tt := range tests {
		var got string
		if err := db.Raw("SELECT key_algorithm FROM certificates WHERE serial = ?", fmt.Sprintf("%x", i+1)).Scan(&got).Error; err != nil {
			t.Fatal(err)
		}
		if got != string(tt.want) {
			t.Errorf("key_algorithm %q migrated to %q, want %q", tt.old, got, tt.want)
		}
	}
}
