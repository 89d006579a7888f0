package renewal

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/protocol"
)

func TestBackoffGrowsAndCaps(t *testing.T) {
	tests := []struct {
		name string
		rnd  float64
		want []time.Duration // waits after failures 1, 2, …
	}{
		{"largest jitter", 1, []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute,
			16 * time.Minute, 16 * time.Minute, 16 * time.Minute}},
		{"smallest jitter", 0, []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute,
			8 * time.Minute, 8 * time.Minute}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plug := spec{id: "plug-1"}
			f := newFixture(t, t0, Config{BackoffBase: time.Minute, BackoffMax: 16 * time.Minute, MaxFailures: 3,
				Rand: func() float64 { return tt.rnd }})
			c := f.enroll(plug, t0, 30*day)
			f.clock.Set(window(plug, c).End)
			for i, want := range tt.want {
				f.reconcile()
				if got := len(f.cmd.commands()); got != i+1 {
					t.Fatalf("attempt %d: %d commands, want %d", i+1, got, i+1)
				}
				deadline := f.status(plug.id).NextAttemptAt
				f.clock.Set(deadline.Add(-time.Second))
				f.reconcile()
				if got := f.status(plug.id).State; got != inventory.RenewalCommanded {
					t.Fatalf("attempt %d: state %q a second before the deadline, want commanded", i+1, got)
				}
				f.clock.Set(deadline)
				rep := f.reconcile()
				st := f.status(plug.id)
				if rep.Failed != 1 || st.Failures != i+1 || !strings.Contains(st.LastCause, "no commit before the deadline") {
					t.Fatalf("attempt %d at its deadline: Failed %d, status %+v, want failure %d for the deadline", i+1, rep.Failed, st, i+1)
				}
				if got := st.NextAttemptAt.Sub(deadline); got != want {
					t.Errorf("wait after failure %d = %s, want %s", i+1, got, want)
				}
				wantState := inventory.RenewalDue
				if i+1 >= 3 {
					wantState = inventory.RenewalFailing
				}
				if st.State != wantState {
					t.Errorf("state after failure %d = %q, want %q", i+1, st.State, wantState)
				}
				f.clock.Set(st.NextAttemptAt.Add(-time.Second))
				f.reconcile()
				if got := len(f.cmd.commands()); got != i+1 {
					t.Fatalf("a second before the retry: %d commands, want %d", got, i+1)
				}
				f.clock.Set(st.NextAttemptAt)
			}
			failing := f.events(protocol.EventRenewalFailing)
			if n := len(failing); n != 1 {
				t.Errorf("%d %s events, want 1", n, protocol.EventRenewalFailing)
			}
			for _, e := range append(failing, f.events(protocol.EventRenewalFailed)...) {
				if got := protocol.Cause(e.Data["cause"]); got != protocol.CauseCommitTimeout {
					t.Errorf("%s cause = %q, want %q", e.Kind, got, protocol.CauseCommitTimeout)
				}
			}
			if got := f.notes.kinds()[protocol.EventRenewalFailed]; got != len(tt.want) {
				t.Errorf("%d %s notifications, want %d", got, protocol.EventRenewalFailed, len(tt.want))
			}
		})
	}
}

func TestFailureSources(t *testing.T) {
	plug := spec{id: "plug-1"}
	tests := []struct {
		name string
		// after runs once the device is commanded, at the command's time + 1 minute.
		after     func(f *fixture)
		failed    bool
		wantCause string         // in LastCause, the words
		wantEvent protocol.Cause // the renewal.failed event's cause
	}{
		{"hook: rolled back", func(f *fixture) { f.s.Failed(plug.id, "rolled_back", protocol.CauseStorage) }, true, "rolled_back",
			protocol.CauseStorage},
		{"hook: refused with a code", func(f *fixture) { f.s.Failed(plug.id, string(protocol.CodePolicyDenied), "") }, true,
			"policy_denied", protocol.CausePolicyRefused},
		{"attempt rolled back", func(f *fixture) {
			c := f.issuePending(plug.id)
			if err := f.store.FinishAttempt(context.Background(), plug.id, c, inventory.OutcomeRolledBack, "rolled_back", f.clock.Now()); err != nil {
				t.Fatal(err)
			}
		}, true, "rolled back", protocol.CauseUnknown},
		{"request refused for good", func(f *fixture) { f.failedAttempt(plug.id, protocol.CodePolicyDenied) }, true, "policy_denied",
			protocol.CausePolicyRefused},
		{"request refused, agent retries", func(f *fixture) { f.failedAttempt(plug.id, protocol.CodeRateLimited) }, false, "", ""},
		{"nothing yet", func(f *fixture) {}, false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, t0, Config{})
			c := f.enroll(plug, t0, 30*day)
			f.clock.Set(window(plug, c).End)
			f.reconcile()
			f.clock.Add(time.Minute)
			tt.after(f)
			rep := f.reconcile()
			st := f.status(plug.id)
			if got := rep.Failed == 1; got != tt.failed {
				t.Fatalf("Failed = %d, status %+v, want failed = %v", rep.Failed, st, tt.failed)
			}
			if !tt.failed {
				if st.State != inventory.RenewalCommanded || rep.InFlight != 1 {
					t.Errorf("status %+v, InFlight %d, want still commanded", st, rep.InFlight)
				}
				return
			}
			if st.State != inventory.RenewalDue || st.Failures != 1 || !strings.Contains(st.LastCause, tt.wantCause) {
				t.Errorf("status = %+v, want due, 1 failure, cause mentioning %q", st, tt.wantCause)
			}
			evs := f.events(protocol.EventRenewalFailed)
			if len(evs) != 1 {
				t.Fatalf("%d %s events, want 1", len(evs), protocol.EventRenewalFailed)
			}
			if got := protocol.Cause(evs[0].Data["cause"]); got != tt.wantEvent {
				t.Errorf("%s cause = %q, want %q", protocol.EventRenewalFailed, got, tt.wantEvent)
			}
			if got := evs[0].Data["detail"]; got != st.LastCause {
				t.Errorf("%s detail = %q, want the status's %q", protocol.EventRenewalFailed, got, st.LastCause)
			}
		})
	}
}

// issuePending records a pending certificate of device id issued now, as the issuer does on
// a CSR, and returns its request id.
func (f *fixture) issuePending(id string) string {
	f.t.Helper()
	f.gen++
	req := fmt.Sprintf("req-%d", f.gen)
	now := f.clock.Now()
	err := f.store.RecordIssuance(context.Background(), inventory.Issuance{Device: inventory.Device{ID: id},
		Cert: inventory.Certificate{Serial: fmt.Sprintf("%x", 0xabc000+f.gen), NotBefore: now, NotAfter: now.Add(30 * day),
			PEM: "x"},
		Attempt: inventory.Attempt{RequestID: req, Reason: "command", StartedAt: now, FinishedAt: now}})
	if err != nil {
		f.t.Fatalf("RecordIssuance() = %v", err)
	}
	return req
}

// failedAttempt records a request of device id refused now with code.
func (f *fixture) failedAttempt(id string, code protocol.Code) {
	f.t.Helper()
	f.gen++
	now := f.clock.Now()
	err := f.store.RecordFailedAttempt(context.Background(), inventory.Attempt{RequestID: fmt.Sprintf("req-%d", f.gen),
		DeviceID: id, Reason: "command", StartedAt: now, FinishedAt: now, ErrorCode: string(code)})
	if err != nil {
		f.t.Fatalf("RecordFailedAttempt() = %v", err)
	}
}

func TestFailingAfterMaxFailuresWithCause(t *testing.T) {
	plug := spec{id: "plug-1"}
	f := newFixture(t, t0, Config{MaxFailures: 3})
	c := f.enroll(plug, t0, 30*day)
	f.clock.Set(window(plug, c).End)
	const cause = "the agent's renewal failed: policy_denied"
	for i := range 3 {
		f.reconcile() // commands it
		f.s.Failed(plug.id, string(protocol.CodePolicyDenied), "")
		rep := f.reconcile()
		if rep.Failed != 1 {
			t.Fatalf("pass %d: Failed = %d, want 1", i+1, rep.Failed)
		}
		if want := i / 2; rep.Failing != want { // failing from the third failure on
			t.Errorf("pass %d: Report.Failing = %d, want %d", i+1, rep.Failing, want)
		}
		f.clock.Set(f.status(plug.id).NextAttemptAt)
	}
	st := f.status(plug.id)
	if st.State != inventory.RenewalFailing || st.Failures != 3 || st.LastCause != cause {
		t.Errorf("status = %+v, want failing after 3 failures with cause %q", st, cause)
	}
	if got := f.notes.kinds()[protocol.EventRenewalFailing]; got != 1 {
		t.Errorf("%d %s notifications, want 1", got, protocol.EventRenewalFailing)
	}

	// Failing devices are still retried; a commit brings them back to idle.
	f.reconcile()
	if got := f.status(plug.id).State; got != inventory.RenewalCommanded {
		t.Fatalf("failing device after its backoff: state %q, want commanded", got)
	}
	f.renew(plug.id, f.clock.Now(), 30*day)
	f.s.Committed(plug.id)
	rep := f.reconcile()
	st = f.status(plug.id)
	if st.State != inventory.RenewalIdle || st.Failures != 0 || st.LastCause != "" || !st.NextAttemptAt.IsZero() {
		t.Errorf("after a commit: status %+v, want idle with no failures", st)
	}
	if rep.Renewed != 1 || rep.InFlight != 0 || rep.Failing != 0 {
		t.Errorf("after a commit: Renewed %d, InFlight %d, Failing %d, want 1, 0, 0", rep.Renewed, rep.InFlight, rep.Failing)
	}
}

func TestEmergencyOverridesBackoff(t *testing.T) {
	plug := spec{id: "plug-1"}
	base := time.Minute
	f := newFixture(t, t0, Config{BackoffBase: base, BackoffMax: 6 * time.Hour, MaxFailures: 1, Rand: func() float64 { return 1 }})
	c := f.enroll(plug, t0, 30*day)
	w := window(plug, c)
	// Fail repeatedly before the floor until the backoff is long: each command's renewal
	// fails at once.
	f.clock.Set(w.EmergencyAt.Add(-20 * time.Hour))
	for range 12 {
		f.reconcile()
		f.s.Failed(plug.id, string(protocol.CodePolicyDenied), "")
		f.reconcile()
		if next := f.status(plug.id).NextAttemptAt; next.Before(w.EmergencyAt) {
			f.clock.Set(next)
		}
	}
	st := f.status(plug.id)
	if !st.NextAttemptAt.After(w.EmergencyAt.Add(10 * time.Minute)) {
		t.Fatalf("setup: next attempt %s, want well past the emergency floor %s", st.NextAttemptAt, w.EmergencyAt)
	}
	before := len(f.cmd.commands())
	f.clock.Set(w.EmergencyAt)
	f.reconcile()
	if got := len(f.cmd.commands()) - before; got != 1 {
		t.Fatalf("at the emergency floor with a retry due at %s: %d commands, want 1", st.NextAttemptAt, got)
	}
	f.clock.Add(10 * time.Minute)
	f.reconcile()
	if wait := f.status(plug.id).NextAttemptAt.Sub(f.clock.Now()); wait > base {
		t.Errorf("backoff after a failure in an emergency = %s, want at most %s", wait, base)
	}
}
