package inventory

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
)

// t0 is the tests' fixed "now".
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestMain(m *testing.M) {
	code := m.Run()
	testkit.StopSharedPostgres()
	os.Exit(code)
}

// onPostgres reports whether the tests run on PostgreSQL: HEARTH_TEST_STORAGE=postgres
// (scripts/test.sh runs the package a second time so). Then openTest gives every test a
// database of its own in one throwaway cluster; the tests that open SQLite files by path
// test SQLite itself and run on it either way.
func onPostgres() bool { return os.Getenv("HEARTH_TEST_STORAGE") == "postgres" }

// openTest opens an empty inventory for the test: a SQLite file in its temporary directory,
// or a PostgreSQL database (onPostgres).
func openTest(t testing.TB) *Store {
	t.Helper()
	var s *Store
	var err error
	if onPostgres() {
		s, err = OpenPostgres(t.Context(), PostgresOptions{DSN: testkit.SharedPostgres(t).NewDatabase(t)})
	} else {
		s, err = Open(t.Context(), filepath.Join(t.TempDir(), "hearth.db"))
	}
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return s
}

// issuance returns a valid issuance of serial for device at time at.
func issuance(device, serial, request string, at time.Time) Issuance {
	return Issuance{
		Device: Device{ID: device, Name: "Device " + device, Family: "plug", Path: PathDirect, Mechanism: MechanismAgent},
		Cert: Certificate{
			Serial: serial, NotBefore: at.Add(-time.Minute), NotAfter: at.Add(30 * 24 * time.Hour),
			Issuer: "Hearth Intermediate", KeyAlgorithm: "ECDSA-P256", Fingerprint: fmt.Sprintf("%064x", len(serial)),
			PEM: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
		},
		Attempt: Attempt{RequestID: request, Reason: "enroll", StartedAt: at, FinishedAt: at, Latency: 3 * time.Millisecond},
	}
}

// snapshot describes the rows of every table, to compare before and after a failed write.
func snapshot(t *testing.T, s *Store) string {
	t.Helper()
	var out string
	for _, q := range []string{
		"SELECT COUNT(*) FROM devices",
		"SELECT COUNT(*) FROM certificates",
		"SELECT COUNT(*) FROM attempts",
		"SELECT COUNT(*) FROM tokens",
		"SELECT COUNT(*) FROM tokens WHERE used_at <> 0",
		"SELECT COUNT(*) FROM events",
	} {
		var v string
		if err := s.w.Raw(q).Scan(&v).Error; err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		out += q + " = " + v + "\n"
	}
	var devs []string
	if err := s.w.Raw("SELECT id || ':' || name || ':' || state FROM devices ORDER BY id").Scan(&devs).Error; err != nil {
		t.Fatalf("devices: %v", err)
	}
	out += "devices = " + strings.Join(devs, ",") + "\n"
	return out
}

// mustIssue records an issuance or fails the test.
func mustIssue(t *testing.T, s *Store, in Issuance) {
	t.Helper()
	if err := s.RecordIssuance(t.Context(), in); err != nil {
		t.Fatalf("RecordIssuance(%s) = %v", in.Cert.Serial, err)
	}
}
