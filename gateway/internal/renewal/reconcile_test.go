package renewal

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

func TestWindowPublishedOnceAndStored(t *testing.T) {
	f := newFixture(t, t0.Add(day), Config{})
	plug := spec{id: "plug-1", family: "acme"}
	c := f.enroll(plug, t0, 30*day)
	w := window(plug, c)

	rep := f.reconcile()
	if rep.Published != 1 || f.pub.count() != 1 {
		t.Fatalf("first pass: Published = %d, %d windows published, want 1", rep.Published, f.pub.count())
	}
	st := f.status(plug.id)
	if !st.WindowStart.Equal(w.Start) || !st.WindowEnd.Equal(w.End) || st.State != inventory.RenewalIdle {
		t.Errorf("status = %+v, want idle with window %s..%s", st, w.Start, w.End)
	}
	if !rep.NextWake.Equal(w.End) {
		t.Errorf("NextWake = %s, want the window's end %s", rep.NextWake, w.End)
	}

	f.reconcile()
	f.restart()
	f.reconcile()
	if n := f.pub.count(); n != 1 {
		t.Errorf("after a second pass and a restart: %d windows published, want still 1", n)
	}

	// A new certificate activated without the Committed hook: its window is published here.
	c2 := f.renew(plug.id, t0.Add(day), 30*day)
	if rep := f.reconcile(); rep.Published != 1 {
		t.Errorf("after a renewal: Published = %d, want 1", rep.Published)
	}
	// With the hook, the issuer already published: the window is only stored.
	f.clock.Add(time.Hour)
	c3 := f.renew(plug.id, f.clock.Now(), 30*day)
	f.s.Committed(plug.id)
	if rep := f.reconcile(); rep.Published != 0 {
		t.Errorf("after a committed renewal: Published = %d, want 0 (the issuer publishes)", rep.Published)
	}
	if st, w3 := f.status(plug.id), window(plug, c3); !st.WindowEnd.Equal(w3.End) {
		t.Errorf("after a committed renewal: WindowEnd = %s, want %s (not %s)", st.WindowEnd, w3.End, window(plug, c2).End)
	}
}

func TestDueOnlyFromWindowEnd(t *testing.T) {
	plug := spec{id: "plug-1"}
	// The window of the certificate the fixture issues first for plug-1 from t0.
	probe := newFixture(t, t0, Config{})
	w := window(plug, probe.enroll(plug, t0, 30*day))
	tests := []struct {
		name      string
		at        time.Time
		commanded bool
		reason    string
	}{
		{"waiting", w.Start.Add(-time.Hour), false, ""},
		{"open window: the agent's turn", w.Start.Add(time.Minute), false, ""},
		{"a second before the end", w.End.Add(-time.Second), false, ""},
		{"at the end", w.End, true, "overdue"},
		{"emergency", w.EmergencyAt.Add(time.Minute), true, "emergency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.at, Config{})
			f.enroll(plug, t0, 30*day)
			rep := f.reconcile()
			cmds := f.cmd.commands()
			if got := len(cmds) == 1; got != tt.commanded {
				t.Fatalf("Reconcile at %s: commands %v, want commanded = %v", tt.at, cmds, tt.commanded)
			}
			st := f.status(plug.id)
			if !tt.commanded {
				if st.State != inventory.RenewalIdle || rep.Due != 0 {
					t.Errorf("state %q, Due %d, want idle and 0", st.State, rep.Due)
				}
				return
			}
			if cmds[0].Action != protocol.ActionRenew || !strings.Contains(cmds[0].Reason, tt.reason) {
				t.Errorf("command = %+v, want renew with a reason mentioning %q", cmds[0], tt.reason)
			}
			if st.State != inventory.RenewalCommanded || !st.NextAttemptAt.Equal(tt.at.Add(10*time.Minute)) {
				t.Errorf("status = %+v, want commanded with the deadline %s", st, tt.at.Add(10*time.Minute))
			}
			if n := len(f.events(EventDue)); n != 1 {
				t.Errorf("%d %s events, want 1", n, EventDue)
			}
		})
	}
}

func TestJitterSpreadsDueTimes(t *testing.T) {
	const n = 100
	f := newFixture(t, t0, Config{Rate: 1e6, MaxInFlight: 1000})
	ends := map[time.Time]bool{}
	for i := range n {
		d := spec{id: fmt.Sprintf("plug-%03d", i)}
		ends[window(d, f.enroll(d, t0, 30*day)).End] = true
	}
	if len(ends) < n*9/10 {
		t.Errorf("%d certificates issued together have %d distinct window ends, want at least %d", n, len(ends), n*9/10)
	}
	// 30 days × 2/3 ± 10 % opens the window on day 18 to 22; the end is halfway to the
	// emergency floor (day 28.5): day 23.25 to 25.25, uniformly.
	tests := []struct {
		at       time.Duration
		min, max int // commanded so far
	}{
		{23*day + 5*time.Hour, 0, 0},
		{24*day + 6*time.Hour, n * 3 / 10, n * 7 / 10},
		{25*day + 7*time.Hour, n, n},
	}
	for _, tt := range tests {
		f.clock.Set(t0.Add(tt.at))
		f.reconcile()
		if got := len(f.cmd.commands()); got < tt.min || got > tt.max {
			t.Errorf("at day %.2f: %d of %d devices commanded, want %d..%d", tt.at.Hours()/24, got, n, tt.min, tt.max)
		}
	}
}

func TestBackoffGrowsAndCaps(t *testing.T) {
	tests := []struct {
		name string
		rnd  float64
		want []time.Duration // waits after failures 1, 2, …
	}{
		{"largest jitter", 1, []time.Duration{1, 2, 4, 8, 16, 16, 16}},
		{"smallest jitter", 0, []time.Duration{0.5 * 60, 1 * 60, 2 * 60, 4 * 60, 8 * 60, 8 * 60}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.rnd == 1 {
				for i := range tt.want {
					tt.want[i] *= time.Minute
				}
			} else {
				for i := range tt.want {
					tt.want[i] *= time.Second
				}
			}
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
			if n := len(f.events(EventFailing)); n != 1 {
				t.Errorf("%d %s events, want 1", n, EventFailing)
			}
			if got := f.notes.kinds()[EventFailed]; got != len(tt.want) {
				t.Errorf("%d %s notifications, want %d", got, EventFailed, len(tt.want))
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
		wantCause string
	}{
		{"hook: rolled back", func(f *fixture) { f.s.Failed(plug.id, "rolled_back") }, true, "rolled_back"},
		{"attempt rolled back", func(f *fixture) {
			c := f.issuePending(plug.id)
			if err := f.store.FinishAttempt(context.Background(), plug.id, c, inventory.OutcomeRolledBack, "rolled_back", f.clock.Now()); err != nil {
				t.Fatal(err)
			}
		}, true, "rolled back"},
		{"request refused for good", func(f *fixture) { f.failedAttempt(plug.id, protocol.CodePolicyDenied) }, true, "policy_denied"},
		{"request refused, agent retries", func(f *fixture) { f.failedAttempt(plug.id, protocol.CodeRateLimited) }, false, ""},
		{"nothing yet", func(f *fixture) {}, false, ""},
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
	f.cmd.fail = func(string) error { return errBrokerDown }
	c := f.enroll(plug, t0, 30*day)
	f.clock.Set(window(plug, c).End)
	for i := range 3 {
		rep := f.reconcile()
		if rep.Failed != 1 {
			t.Fatalf("pass %d: Failed = %d, want 1", i+1, rep.Failed)
		}
		f.clock.Set(f.status(plug.id).NextAttemptAt)
	}
	st := f.status(plug.id)
	if st.State != inventory.RenewalFailing || st.Failures != 3 || st.LastCause != "command not sent: broker down" {
		t.Errorf("status = %+v, want failing after 3 failures with cause %q", st, "command not sent: broker down")
	}
	if rep := f.reconcile(); rep.Failing != 1 {
		t.Errorf("Report.Failing = %d, want 1", rep.Failing)
	}
	if got := f.notes.kinds()[EventFailing]; got != 1 {
		t.Errorf("%d %s notifications, want 1", got, EventFailing)
	}

	// Failing devices are still retried; a commit brings them back to idle.
	f.cmd.fail = nil
	f.clock.Set(f.status(plug.id).NextAttemptAt)
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
	f.cmd.fail = func(string) error { return errBrokerDown }
	c := f.enroll(plug, t0, 30*day)
	w := window(plug, c)
	// Fail repeatedly before the floor until the backoff is long.
	f.clock.Set(w.EmergencyAt.Add(-20 * time.Hour))
	for range 12 {
		f.reconcile()
		if next := f.status(plug.id).NextAttemptAt; next.Before(w.EmergencyAt) {
			f.clock.Set(next)
		}
	}
	st := f.status(plug.id)
	if !st.NextAttemptAt.After(w.EmergencyAt.Add(time.Hour)) {
		t.Fatalf("setup: next attempt %s, want past the emergency floor %s", st.NextAttemptAt, w.EmergencyAt)
	}
	n := len(f.cmd.commands()) + st.Failures // every pass either commands or fails
	f.cmd.fail = nil
	f.clock.Set(w.EmergencyAt)
	f.reconcile()
	if got := len(f.cmd.commands()); got != 1 {
		t.Fatalf("at the emergency floor with a retry due at %s: %d commands, want 1 (of %d attempts)", st.NextAttemptAt, got, n)
	}
	f.clock.Add(10 * time.Minute)
	f.reconcile()
	if wait := f.status(plug.id).NextAttemptAt.Sub(f.clock.Now()); wait > base {
		t.Errorf("backoff after a failure in an emergency = %s, want at most %s", wait, base)
	}
}

func TestPriorityHighRiskFirst(t *testing.T) {
	now := t0.Add(60 * day)
	f := newFixture(t, now, Config{Rate: 1, Burst: 1, MaxInFlight: 100})
	type dev struct {
		spec
		age, life time.Duration
	}
	devs := []dev{
		{spec{id: "plug-a"}, 25*day + 12*time.Hour, 30 * day},
		{spec{id: "plug-b"}, 25*day + 18*time.Hour, 30 * day},
		{spec{id: "plug-c"}, 26 * day, 30 * day},
		{spec{id: "lock-1", tags: []string{"high-risk"}}, 6*day + 4*time.Hour, 7 * day},
		{spec{id: "plug-sos"}, 29 * day, 30 * day},
	}
	ends := map[string]time.Time{}
	for _, d := range devs {
		c := f.enroll(d.spec, now.Add(-d.age), d.life)
		w := policy.Default().Window(policy.Subject{DeviceID: d.id, Tags: d.tags},
			policy.CertInfo{Serial: c.Serial, NotBefore: c.NotBefore, NotAfter: c.NotAfter}, now)
		want := policy.PhaseOverdue
		if d.id == "plug-sos" {
			want = policy.PhaseEmergency
		}
		if p := w.Phase(now); p != want {
			t.Fatalf("setup: %s is %s, want %s", d.id, p, want)
		}
		ends[d.id] = w.End
	}
	plugs := []string{"plug-a", "plug-b", "plug-c"}
	slices.SortFunc(plugs, func(a, b string) int { return ends[a].Compare(ends[b]) })
	want := append([]string{"plug-sos", "lock-1"}, plugs...)

	for range devs {
		rep := f.reconcile()
		if rep.Commanded != 1 {
			t.Fatalf("pass at %s: Commanded = %d, want 1 (burst 1)", f.clock.Now(), rep.Commanded)
		}
		f.clock.Add(time.Second)
	}
	if got := f.cmd.ids(); !slices.Equal(got, want) {
		t.Errorf("command order = %v, want %v (emergency, high-risk, then earliest deadline)", got, want)
	}
}

func TestOfflineDeviceQueued(t *testing.T) {
	plug := spec{id: "plug-1", offline: true}
	f := newFixture(t, t0, Config{})
	c := f.enroll(plug, t0, 30*day)
	f.clock.Set(window(plug, c).End.Add(time.Hour))
	rep := f.reconcile()
	if rep.Due != 1 || rep.QueuedOffline != 1 || rep.Commanded != 0 || len(f.cmd.commands()) != 0 {
		t.Fatalf("offline due device: report %+v, commands %v, want queued and not commanded", rep, f.cmd.commands())
	}
	if got := f.status(plug.id).State; got != inventory.RenewalDue {
		t.Errorf("state = %q, want due", got)
	}
	if err := f.store.SetOnline(context.Background(), plug.id, true, f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	f.s.DeviceOnline(plug.id)
	if rep := f.reconcile(); rep.Commanded != 1 {
		t.Errorf("after reconnecting: Commanded = %d, want 1", rep.Commanded)
	}
}

func TestInFlightCap(t *testing.T) {
	f := newFixture(t, t0, Config{MaxInFlight: 3})
	var end time.Time
	for i := range 5 {
		d := spec{id: fmt.Sprintf("plug-%d", i)}
		end = max(end, window(d, f.enroll(d, t0, 30*day)).End)
	}
	f.clock.Set(end)
	if rep := f.reconcile(); rep.Commanded != 3 || rep.Held != 2 || rep.InFlight != 3 {
		t.Fatalf("first pass: %+v, want 3 commanded, 2 held", rep)
	}
	f.clock.Add(time.Minute)
	if rep := f.reconcile(); rep.Commanded != 0 || rep.Held != 2 {
		t.Fatalf("second pass with 3 in flight: %+v, want none commanded", rep)
	}
	first := f.cmd.ids()[0]
	f.renew(first, f.clock.Now(), 30*day)
	f.s.Committed(first)
	if rep := f.reconcile(); rep.Commanded != 1 || rep.Renewed != 1 {
		t.Errorf("after one commit: %+v, want 1 renewed and 1 commanded", rep)
	}
}

func TestRestartDoesNotRepeatCommands(t *testing.T) {
	plug := spec{id: "plug-1"}
	f := newFixture(t, t0, Config{Rand: func() float64 { return 0 }})
	c := f.enroll(plug, t0, 30*day)
	at := window(plug, c).End
	f.clock.Set(at)
	f.reconcile()

	f.clock.Add(2 * time.Minute)
	f.restart()
	rep := f.reconcile()
	if rep.Commanded != 0 || rep.InFlight != 1 || rep.Published != 0 {
		t.Fatalf("2 minutes after a restart: %+v, want the command still in flight, nothing sent or published", rep)
	}
	f.clock.Set(at.Add(10*time.Minute - time.Second))
	f.restart()
	f.reconcile()
	if n := len(f.cmd.commands()); n != 1 {
		t.Fatalf("just before the deadline: %d commands, want 1", n)
	}
	f.clock.Set(at.Add(10 * time.Minute))
	f.restart()
	if rep := f.reconcile(); rep.Failed != 1 || rep.Commanded != 0 {
		t.Fatalf("at the deadline: %+v, want a failure and a backoff", rep)
	}
	f.clock.Set(f.status(plug.id).NextAttemptAt)
	f.restart()
	if rep := f.reconcile(); rep.Commanded != 1 {
		t.Errorf("after the backoff: %+v, want a new command", rep)
	}
}

func TestForce(t *testing.T) {
	f := newFixture(t, t0.Add(day), Config{})
	f.enroll(spec{id: "plug-1"}, t0, 30*day)
	f.enroll(spec{id: "meter-1", manual: true}, t0, 30*day)
	ctx := context.Background()
	if err := f.s.Force(ctx, "plug-1", "admin asked"); err != nil {
		t.Fatalf("Force(plug-1) = %v", err)
	}
	if rep := f.reconcile(); rep.Commanded != 1 {
		t.Errorf("after Force: Commanded = %d, want 1 although the window is days away", rep.Commanded)
	}
	for _, id := range []string{"meter-1", "nobody"} {
		if err := f.s.Force(ctx, id, "admin asked"); !errorsIs(err, ErrNotRenewable) {
			t.Errorf("Force(%s) = %v, want ErrNotRenewable", id, err)
		}
	}
}
