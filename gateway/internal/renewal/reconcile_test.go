package renewal

import (
	"context"
	"errors"
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
			if n := len(f.events(protocol.EventRenewalDue)); n != 1 {
				t.Errorf("%d %s events, want 1", n, protocol.EventRenewalDue)
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
		if e := window(d, f.enroll(d, t0, 30*day)).End; e.After(end) {
			end = e
		}
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
	if _, err := f.s.Force(ctx, "plug-1", "admin asked"); err != nil {
		t.Fatalf("Force(plug-1) = %v", err)
	}
	if rep := f.reconcile(); rep.Commanded != 1 {
		t.Errorf("after Force: Commanded = %d, want 1 although the window is days away", rep.Commanded)
	}
	for _, id := range []string{"meter-1", "nobody"} {
		if _, err := f.s.Force(ctx, id, "admin asked"); !errors.Is(err, ErrNotRenewable) {
			t.Errorf("Force(%s) = %v, want ErrNotRenewable", id, err)
		}
	}
}

// TestForceDuringRenewal is issue 10's "renew right after a renewal" bug: a Force while the
// device is commanded was a silent no-op. It is answered truthfully and honoured once the
// current attempt ends, committed or failed.
func TestForceDuringRenewal(t *testing.T) {
	for _, ends := range []string{"committed", "failed"} {
		t.Run(ends, func(t *testing.T) {
			f := newFixture(t, t0.Add(day), Config{})
			f.enroll(spec{id: "plug-1"}, t0, 30*day)
			ctx := context.Background()
			if _, err := f.s.Force(ctx, "plug-1", "first"); err != nil {
				t.Fatal(err)
			}
			if rep := f.reconcile(); rep.Commanded != 1 {
				t.Fatalf("first Force: %+v, want one command", rep)
			}
			got, err := f.s.Force(ctx, "plug-1", "second")
			if err != nil || !got.AfterCurrent {
				t.Fatalf("Force while commanded = %+v, %v; want AfterCurrent", got, err)
			}
			if rep := f.reconcile(); rep.Commanded != 0 {
				t.Fatalf("while the first is in flight: %+v, want no second command yet", rep)
			}
			if ends == "committed" {
				f.renew("plug-1", f.clock.Now(), 30*day)
				f.s.Committed("plug-1")
			} else {
				f.s.Failed("plug-1", "rolled_back", "")
			}
			if rep := f.reconcile(); rep.Commanded != 1 {
				t.Errorf("after the first attempt %s: %+v, want the second command at once", ends, rep)
			}
			if n := len(f.cmd.commands()); n != 2 {
				t.Errorf("commands sent = %d, want 2", n)
			}
		})
	}
}
