package inventory

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// TestAttemptCauses stores a cause on every way an attempt fails: a refusal (the cause of
// its code, with the refusal's text), a rollback the agent explains, a request without a
// commit before the in-flight timeout, and one a crash left in flight.
func TestAttemptCauses(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	mustIssue(t, s, issuance("cam", "a1", "r1", t0))
	if _, err := s.Commit(ctx, "cam", "r1", "a1", false, t0); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ serial, req string }{{"a2", "r2"}, {"a3", "r3"}, {"a4", "r4"}} {
		in := issuance("cam", r.serial, r.req, t0.Add(time.Hour))
		in.Attempt.Reason = "window"
		mustIssue(t, s, in)
	}
	refused := Attempt{DeviceID: "cam", RequestID: "r5", Reason: "window", StartedAt: t0, ErrorCode: string(protocol.CodePolicyDenied),
		Detail: "rule max_lifetime: 400 days is more than 90"}
	if err := s.RecordFailedAttempt(ctx, refused); err != nil {
		t.Fatal(err)
	}
	if err := s.EndRequest(ctx, "cam", "r2", "a2", "a1", OutcomeRolledBack, protocol.CauseStorage, "disk full", t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.EndRequest(ctx, "cam", "r3", "a3", "", OutcomeExpired, "", "no commit", t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AbandonStale(ctx, t0.Add(3*time.Hour), t0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		req     string
		outcome string
		cause   protocol.Cause
		detail  string
	}{
		{"r1", OutcomeCommitted, "", ""},
		{"r2", OutcomeRolledBack, protocol.CauseStorage, "disk full"},
		{"r3", OutcomeExpired, protocol.CauseCommitTimeout, "no commit"},
		{"r4", OutcomeExpired, protocol.CauseCommitTimeout, ""},
		{"r5", OutcomeFailed, protocol.CausePolicyRefused, refused.Detail},
	} {
		a, err := s.Attempt(ctx, "cam", tc.req)
		if err != nil {
			t.Fatal(err)
		}
		if a.Outcome != tc.outcome || a.Cause != tc.cause || a.Detail != tc.detail {
			t.Errorf("Attempt(%s) = %s, cause %q, detail %q; want %s, %q, %q", tc.req, a.Outcome, a.Cause, a.Detail, tc.outcome, tc.cause, tc.detail)
		}
	}
	bad := Attempt{DeviceID: "cam", RequestID: "r6", StartedAt: t0, Cause: "Not A Cause"}
	if err := s.RecordFailedAttempt(ctx, bad); err == nil {
		t.Errorf("RecordFailedAttempt(cause %q) = nil, want an error", bad.Cause)
	}
}

// TestMigrateAttemptCauses opens a version-4 database whose attempts predate causes: each
// failed one gets the cause its error code or outcome implies.
func TestMigrateAttemptCauses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v4.db")
	db, err := openPool(t.Context(), path+"?_txlock=immediate", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(t.Context(), db, migrations[:4]); err != nil {
		t.Fatal(err)
	}
	rows := []struct {
		req, outcome, code string
		want               protocol.Cause
	}{
		{"ok", OutcomeCommitted, "", ""},
		{"issued", OutcomeIssued, "", ""},
		{"busy", OutcomeFailed, "busy", protocol.CauseHubBusy},
		{"policy", OutcomeFailed, "policy_denied", protocol.CausePolicyRefused},
		{"weak", OutcomeFailed, "weak_key", protocol.CauseBadRequest},
		{"revoked", OutcomeFailed, "revoked", protocol.CauseRevoked},
		{"rolled", OutcomeRolledBack, "", protocol.CauseUnknown},
		{"expired", OutcomeExpired, "", protocol.CauseCommitTimeout},
		{"not_presented", OutcomeFailed, "not_presented", protocol.CauseCommitRefused},
	}
	for _, r := range rows {
		if err := db.Exec("INSERT INTO attempts (device_id, request_id, outcome, error_code) VALUES ('cam', ?, ?, ?)", r.req, r.outcome, r.code).Error; err != nil {
			t.Fatal(err)
		}
	}
	sqlDB, _ := db.DB()
	sqlDB.Close()
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(version 4) = %v", err)
	}
	defer s.Close()
	for _, r := range rows {
		a, err := s.Attempt(t.Context(), "cam", r.req)
		if err != nil {
			t.Fatal(err)
		}
		if a.Cause != r.want {
			t.Errorf("migrated attempt %s (%s, %q) cause = %q, want %q", r.req, r.outcome, r.code, a.Cause, r.want)
		}
		if r.want != "" && protocol.CauseOf(protocol.Code(r.code)) != r.want && r.code != "" {
			t.Errorf("migration maps %q to %q, CauseOf to %q", r.code, r.want, protocol.CauseOf(protocol.Code(r.code)))
		}
	}
}

// TestHealthDeviceInfo stores the device info a health report brings.
func TestHealthDeviceInfo(t *testing.T) {
	s := openTest(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	mustIssue(t, s, issuance("plug", "a1", "r1", t0))
	h := Health{ReportedSerial: "a1", AgentVersion: "0.3.0", Manufacturer: "Acme", Model: "Smart Plug 2", Arch: "mipsle", At: t0}
	if err := s.UpdateHealth(t.Context(), "plug", h); err != nil {
		t.Fatal(err)
	}
	d, err := s.Device(t.Context(), "plug")
	if err != nil {
		t.Fatal(err)
	}
	if d.Health.Manufacturer != "Acme" || d.Health.Model != "Smart Plug 2" || d.Health.Arch != "mipsle" || d.Health.AgentVersion != "0.3.0" {
		t.Errorf("Device().Health = %+v, want the reported device info", d.Health)
	}
}

// TestRecordReportedFailure stores a failure an agent reports once, however often the report
// repeats, and never over the hub's own record of the request, on SQLite and PostgreSQL.
func TestRecordReportedFailure(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testRecordReportedFailure(t, openTest(t)) })
	t.Run("postgres", func(t *testing.T) {
		s, err := OpenPostgres(t.Context(), PostgresOptions{DSN: testkit.SharedPostgres(t).NewDatabase(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		testRecordReportedFailure(t, s)
	})
}

func testRecordReportedFailure(t *testing.T, s *Store) {
	ctx := t.Context()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	mustIssue(t, s, issuance("cam", "a1", "r1", t0))
	reported := Attempt{DeviceID: "cam", RequestID: "r9", StartedAt: t0, FinishedAt: t0,
		Cause: protocol.CauseNetwork, Detail: "hub: connect: connection refused"}
	for _, tc := range []struct {
		name string
		a    Attempt
		want bool
	}{
		{"first report", reported, true},
		{"the same report again", reported, false},
		{"a report naming the hub's own request", Attempt{DeviceID: "cam", RequestID: "r1", Cause: protocol.CauseTimeout, StartedAt: t0}, false},
	} {
		got, err := s.RecordReportedFailure(ctx, tc.a)
		if err != nil || got != tc.want {
			t.Errorf("%s: RecordReportedFailure(%s) = %v, %v; want %v", tc.name, tc.a.RequestID, got, err, tc.want)
		}
	}
	if _, err := s.RecordReportedFailure(ctx, Attempt{DeviceID: "cam", RequestID: "r10"}); err == nil {
		t.Error("RecordReportedFailure without a cause succeeded")
	}
	for _, tc := range []struct {
		req     string
		outcome string
		cause   protocol.Cause
	}{{"r9", OutcomeFailed, protocol.CauseNetwork}, {"r1", OutcomeIssued, ""}} {
		a, err := s.Attempt(ctx, "cam", tc.req)
		if err != nil {
			t.Fatal(err)
		}
		if a.Outcome != tc.outcome || a.Cause != tc.cause {
			t.Errorf("Attempt(%s) = %s, cause %q; want %s, %q", tc.req, a.Outcome, a.Cause, tc.outcome, tc.cause)
		}
	}
	if all, err := s.Attempts(ctx, "cam", 0); err != nil || len(all) != 2 {
		t.Errorf("Attempts = %d, %v; want 2", len(all), err)
	}
}
