package inventory

import (
	"testing"
	"time"
)

func TestRenewalStatsCountsRenewalsOnly(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	type att struct {
		device, serial, req, reason, outcome string
		at                                   time.Time
	}
	for _, a := range []att{
		{"plug-1", "01", "e1", "enroll", OutcomeCommitted, t0},
		{"plug-2", "02", "i1", "import", OutcomeCommitted, t0},
		{"plug-1", "03", "w1", "window", OutcomeCommitted, t0.Add(time.Hour)},
		{"plug-2", "04", "k1", "rekey", OutcomeRolledBack, t0.Add(time.Hour)},
		{"plug-3", "05", "r1", "recovery", OutcomeExpired, t0.Add(time.Hour)},
		{"plug-3", "06", "c1", "command", OutcomeIssued, t0.Add(time.Hour)}, // pending: neither
		{"plug-4", "07", "e2", "enroll", OutcomeExpired, t0.Add(time.Hour)},
		{"plug-4", "08", "old", "command", OutcomeCommitted, t0.Add(-time.Hour)}, // before since
	} {
		in := issuance(a.device, a.serial, a.req, a.at)
		in.Attempt.Reason = a.reason
		mustIssue(t, s, in)
		if a.outcome != OutcomeIssued {
			if err := s.FinishAttempt(ctx, a.device, a.req, a.outcome, "", a.at.Add(time.Minute)); err != nil {
				t.Fatalf("FinishAttempt(%s, %s) = %v", a.req, a.outcome, err)
			}
		}
	}
	for _, f := range []Attempt{
		{RequestID: "f1", DeviceID: "plug-1", Reason: "command", ErrorCode: "policy_denied"},
		{RequestID: "f2", DeviceID: "plug-1", Reason: "enroll", ErrorCode: "unauthorized"},
	} {
		f.StartedAt, f.FinishedAt = t0.Add(2*time.Hour), t0.Add(2*time.Hour)
		if err := s.RecordFailedAttempt(ctx, f); err != nil {
			t.Fatalf("RecordFailedAttempt(%s) = %v", f.RequestID, err)
		}
	}
	for _, tc := range []struct {
		name            string
		since           time.Time
		wantOK, wantBad int
	}{
		{"all of them", t0.Add(-2 * time.Hour), 2, 3},
		{"since the enrollments", t0, 1, 3},
		{"the last failure", t0.Add(90 * time.Minute), 0, 1},
		{"none", t0.Add(3 * time.Hour), 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, bad, err := s.RenewalStats(ctx, tc.since)
			if err != nil || ok != tc.wantOK || bad != tc.wantBad {
				t.Errorf("RenewalStats(%v) = %d, %d, %v, want %d, %d", tc.since, ok, bad, err, tc.wantOK, tc.wantBad)
			}
		})
	}
}
