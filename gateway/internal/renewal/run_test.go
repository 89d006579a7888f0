package renewal

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
)

// startRun runs f's scheduler in the bubble until the test's cleanup.
func startRun(t *testing.T, f *fixture) {
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := f.s.Run(ctx); err != nil {
			t.Errorf("Run() = %v", err)
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

func TestRunSpreadsCommandsAtTheRate(t *testing.T) {
	const n, perSecond, burst = 25, 5, 5
	f := newFixture(t, time.Time{}, Config{Rate: perSecond, Burst: burst, MaxInFlight: 100})
	synctest.Test(t, func(t *testing.T) {
		f.enter(t)
		start := time.Now()
		for i := range n {
			f.enroll(spec{id: fmt.Sprintf("plug-%02d", i)}, start.Add(-26*day), 30*day)
		}
		startRun(t, f)
		time.Sleep(30 * time.Second)
		synctest.Wait()

		cmds := f.cmd.commands()
		if len(cmds) != n {
			t.Fatalf("after 30 s: %d commands, want %d", len(cmds), n)
		}
		first := cmds[0].At
		for i, c := range cmds {
			// Commands sent by time T: at most the burst plus the rate since the first.
			if allowed := burst + int(c.At.Sub(first).Seconds()*perSecond); i+1 > allowed {
				t.Errorf("%d commands by %s after the first, want at most %d", i+1, c.At.Sub(first), allowed)
			}
		}
		// 25 commands at 5/s with a burst of 5 need 4 s; Run does not idle a minute between.
		if span := cmds[n-1].At.Sub(first); span < 4*time.Second || span > 10*time.Second {
			t.Errorf("commands spread over %s, want 4 s to 10 s", span)
		}
	})
}

func TestRunCommandsOfflineDeviceOnReconnect(t *testing.T) {
	f := newFixture(t, time.Time{}, Config{Interval: time.Hour})
	synctest.Test(t, func(t *testing.T) {
		f.enter(t)
		plug := spec{id: "plug-1", offline: true}
		f.enroll(plug, time.Now().Add(-26*day), 30*day)
		startRun(t, f)
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if n := len(f.cmd.commands()); n != 0 {
			t.Fatalf("offline device: %d commands, want 0", n)
		}
		if st := f.status(plug.id); st.State != "due" {
			t.Fatalf("offline device: state %q, want due", st.State)
		}

		online := time.Now()
		if err := f.store.SetOnline(t.Context(), plug.id, true, online); err != nil {
			t.Fatal(err)
		}
		f.s.DeviceOnline(plug.id)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		cmds := f.cmd.commands()
		if len(cmds) != 1 {
			t.Fatalf("5 s after reconnecting: %d commands, want 1", len(cmds))
		}
		if d := cmds[0].At.Sub(online); d > 2*time.Second {
			t.Errorf("commanded %s after reconnecting, want within a pass (interval is an hour)", d)
		}
	})
}

func TestRunRetriesAtDeadlineAndBackoff(t *testing.T) {
	f := newFixture(t, time.Time{}, Config{Interval: time.Hour, Rand: func() float64 { return 1 }})
	synctest.Test(t, func(t *testing.T) {
		f.enter(t)
		f.enroll(spec{id: "plug-1"}, time.Now().Add(-26*day), 30*day)
		startRun(t, f)
		// Command at 0; deadline at 10 min; retry a minute later (BackoffBase, largest jitter).
		time.Sleep(11*time.Minute + 30*time.Second)
		synctest.Wait()
		cmds := f.cmd.commands()
		if len(cmds) != 2 {
			t.Fatalf("after 11.5 min: %d commands, want 2", len(cmds))
		}
		if gap := cmds[1].At.Sub(cmds[0].At); gap < 11*time.Minute || gap > 11*time.Minute+2*time.Second {
			t.Errorf("retry %s after the first command, want 11 min (deadline + backoff), not the hourly interval", gap)
		}
	})
}

// TestRunPassesOnlyWhileLeader: a replica that does not lead makes no pass and commands
// nothing; once it leads, it passes within FollowerPoll; when it stops leading, it stops
// commanding. (That the pass's writes carry the fence: lease.TestFailoverOnPostgres and
// inventory.TestLeaseTermsAndFencing.)
func TestRunPassesOnlyWhileLeader(t *testing.T) {
	var mu sync.Mutex
	leader := false
	f := newFixture(t, time.Time{}, Config{Interval: time.Hour, MaxInFlight: 100, Leader: func(ctx context.Context) (context.Context, bool) {
		mu.Lock()
		defer mu.Unlock()
		return ctx, leader
	}})
	synctest.Test(t, func(t *testing.T) {
		f.enter(t)
		f.enroll(spec{id: "plug-1"}, time.Now().Add(-26*day), 30*day)
		startRun(t, f)
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if n := len(f.cmd.commands()); n != 0 {
			t.Fatalf("while not leader: %d commands, want 0", n)
		}
		if st := f.status("plug-1"); st.State != "" && st.State != "idle" {
			t.Fatalf("while not leader: plug-1 state %q, want untouched", st.State)
		}
		mu.Lock()
		leader = true
		mu.Unlock()
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if n := len(f.cmd.commands()); n != 1 {
			t.Fatalf("2 s after becoming leader: %d commands, want 1", n)
		}
		mu.Lock()
		leader = false
		mu.Unlock()
		f.enroll(spec{id: "plug-2"}, time.Now().Add(-26*day), 30*day)
		f.s.Touch("plug-2")
		time.Sleep(time.Hour)
		synctest.Wait()
		if n := len(f.cmd.commands()); n != 1 {
			t.Errorf("after leadership ended: %d commands, want still 1", n)
		}
	})
}

// TestRunLeaderReadsEveryDevicePeriodically: a device another replica enrolled (no Touch
// reaches this one) is commanded by the leader at its next full pass, LeaderFullPass after
// the last.
func TestRunLeaderReadsEveryDevicePeriodically(t *testing.T) {
	f := newFixture(t, time.Time{}, Config{Interval: time.Minute, MaxInFlight: 100, LeaderFullPass: 10 * time.Minute,
		Leader: func(ctx context.Context) (context.Context, bool) { return ctx, true }})
	synctest.Test(t, func(t *testing.T) {
		f.enter(t)
		startRun(t, f)
		time.Sleep(time.Minute)
		synctest.Wait()
		// Enrolled elsewhere: in the shared inventory, without a Touch of this scheduler.
		nb := time.Now().Add(-26 * day)
		f.issue(inventory.Device{ID: "plug-1", Path: inventory.PathDirect, Mechanism: inventory.MechanismAgent}, nb, 30*day, "enroll")
		if err := f.store.SetOnline(t.Context(), "plug-1", true, nb); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		if n := len(f.cmd.commands()); n != 0 {
			t.Fatalf("before the next full pass: %d commands, want 0 (nothing told this replica)", n)
		}
		time.Sleep(6 * time.Minute)
		synctest.Wait()
		if n := len(f.cmd.commands()); n != 1 {
			t.Errorf("after the next full pass: %d commands, want 1", n)
		}
	})
}
