package device

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// healthWith waits for a health report of serial.
func healthWith(t testing.TB, e *env, serial string) protocol.Health {
	t.Helper()
	for {
		h := recv(t, e.hub.Healths, "health report of serial "+serial)
		if h.Serial == serial {
			return h
		}
	}
}

func TestRenewByCommand(t *testing.T) {
	for _, action := range []protocol.Action{protocol.ActionRenew, protocol.ActionRekey} {
		t.Run(string(action), func(t *testing.T) {
			e := newEnv(t, true)
			cfg := e.config("plug-1")
			cfg.ExportPEM = true
			e.enroll(cfg)
			old := onDisk(t, cfg.Dir).Serial()
			r := e.start(cfg)
			r.waitFor(t, EventConnected)
			e.hub.Command("plug-1", "cmd-1", action)

			ev := r.waitFor(t, EventRenewed)
			csr := recv(t, e.hub.CSRs, "CSR")
			want := protocol.ReasonCommand
			if action == protocol.ActionRekey {
				want = protocol.ReasonRekey
			}
			if csr.Reason != want || csr.CommandID != "cmd-1" || csr.Replaces != old {
				t.Errorf("CSR reason %q command %q replaces %q, want %q cmd-1 %s", csr.Reason, csr.CommandID, csr.Replaces, want, old)
			}
			commit := recv(t, e.hub.Commits, "commit")
			if commit.Outcome != protocol.OutcomeCommitted || commit.Serial != ev.Serial || commit.RequestID != csr.RequestID {
				t.Errorf("commit = %+v, want committed %s for request %s", commit, ev.Serial, csr.RequestID)
			}
			if got := onDisk(t, cfg.Dir).Serial(); got != ev.Serial || got == old {
				t.Errorf("serial on disk = %s, want the new %s (old %s)", got, ev.Serial, old)
			}
			h := healthWith(t, e, ev.Serial)
			if !h.ChainOK || h.AgentVersion != "test" || h.KeyStorage != "file" {
				t.Errorf("health after renewal = %+v, want chain ok, version test, storage file", h)
			}
			if st := loadState(t, cfg.Dir); st.Pending != nil || st.LastError != "" || st.LastRenewal.IsZero() {
				t.Errorf("state after renewal = %+v, want no pending request, no error, a last renewal", st)
			}
		})
	}
}

func TestRenewByHubWindow(t *testing.T) {
	e := newEnv(t, true)
	cfg := e.config("plug-1")
	e.enroll(cfg)
	old := onDisk(t, cfg.Dir).Serial()
	r := e.start(cfg)
	r.waitFor(t, EventConnected)
	now := e.hub.HubNow()
	e.hub.Publish(protocol.Topics{}.Device("plug-1", protocol.KindRenewal), true, &protocol.RenewalInfo{
		V: protocol.Version, Serial: old, WindowStart: now.Add(-2 * time.Minute), WindowEnd: now.Add(-time.Minute), HubTime: now,
	})
	ev := r.waitFor(t, EventRenewed)
	if csr := recv(t, e.hub.CSRs, "CSR"); csr.Reason != protocol.ReasonWindow || csr.Replaces != old {
		t.Errorf("CSR reason %q replaces %q, want window %s", csr.Reason, csr.Replaces, old)
	}
	if ev.Serial == old {
		t.Errorf("serial after renewal = %s, still the old one", ev.Serial)
	}
}

func TestRenewByDefaultWindow(t *testing.T) {
	e := newEnv(t, true)
	var clk offsetClock
	cfg := e.config("plug-1")
	cfg.Now = clk.now
	e.enroll(cfg)
	old := onDisk(t, cfg.Dir).Serial()
	r := e.start(cfg)
	r.waitFor(t, EventConnected)
	h := healthWith(t, e, old)
	// With no window from the hub the plan is 2/3 of the lifetime ±10 % (60 % to 73.3 %).
	leaf := onDisk(t, cfg.Dir).Leaf()
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	lo, hi := leaf.NotBefore.Add(life*60/100), leaf.NotBefore.Add(life*734/1000)
	if h.NextRenewal.Before(lo) || h.NextRenewal.After(hi) {
		t.Errorf("next renewal = %s, want between %s and %s", h.NextRenewal, lo, hi)
	}
	clk.set(time.Until(hi) + time.Minute) // the device's time passes the plan
	r.waitFor(t, EventRenewed)
	if csr := recv(t, e.hub.CSRs, "CSR"); csr.Reason != protocol.ReasonWindow || csr.Replaces != old {
		t.Errorf("CSR reason %q replaces %q, want window %s", csr.Reason, csr.Replaces, old)
	}
}

func TestRollback(t *testing.T) {
	for _, tc := range []struct {
		name      string
		behaviour testkit.Behaviour
		event     EventKind
		installed bool           // the new certificate was installed before the failure
		want      error          // what the last error wraps
		cause     protocol.Cause // what the rolled-back commit and the health report say
	}{
		{"bad chain", testkit.BadChain, EventRenewFailed, false, ErrBadChain, protocol.CauseChainVerification},
		{"no reply", testkit.NoReply, EventRenewFailed, false, ErrNoReply, protocol.CauseTimeout},
		{"no ack", testkit.NoAck, EventRolledBack, true, ErrNoReply, protocol.CauseCommitTimeout},
		{"ack error", testkit.AckError, EventRolledBack, true, ErrNotCommitted, protocol.CauseCommitRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // most of the time is spent waiting for timeouts
			e := newEnv(t, true)
			cfg := e.config("plug-1")
			cfg.RequestTimeout, cfg.AckTimeout = time.Second, time.Second
			e.enroll(cfg)
			old := onDisk(t, cfg.Dir).Serial()
			e.hub.SetBehaviour(tc.behaviour)
			r := e.start(cfg)
			r.waitFor(t, EventConnected)
			e.hub.Command("plug-1", "cmd-1", protocol.ActionRenew)

			ev := r.waitFor(t, tc.event)
			if !errors.Is(ev.Err, tc.want) {
				t.Errorf("%s event error = %v, want %v", tc.event, ev.Err, tc.want)
			}
			csr := recv(t, e.hub.CSRs, "CSR")
			commit := recv(t, e.hub.Commits, "commit")
			var failed string
			if tc.installed {
				if commit.Outcome != protocol.OutcomeCommitted {
					t.Fatalf("first commit = %+v, want committed", commit)
				}
				failed = commit.Serial
				commit = recv(t, e.hub.Commits, "rolled-back commit")
			}
			if commit.Outcome != protocol.OutcomeRolledBack || commit.Serial != old || commit.RequestID != csr.RequestID || commit.Detail == "" {
				t.Errorf("commit = %+v, want rolled_back to %s for request %s with a detail", commit, old, csr.RequestID)
			}
			if commit.Cause != tc.cause {
				t.Errorf("rolled-back commit cause = %q, want %q", commit.Cause, tc.cause)
			}
			if tc.installed && commit.Failed != failed {
				t.Errorf("commit.Failed = %q, want the given-up serial %q", commit.Failed, failed)
			}
			if tc.behaviour == testkit.BadChain && commit.Failed == "" {
				t.Errorf("commit.Failed is empty, want the serial of the refused chain")
			}
			if got := onDisk(t, cfg.Dir).Serial(); got != old {
				t.Errorf("serial on disk = %s, want the previous %s", got, old)
			}
			// The agent is connected with the previous certificate and says what went wrong.
			h := healthWith(t, e, old)
			for h.LastError == "" {
				h = healthWith(t, e, old)
			}
			if !h.ChainOK {
				t.Errorf("health after rollback = %+v, want a good chain", h)
			}
			if h.LastCause != tc.cause {
				t.Errorf("health last_cause = %q, want %q", h.LastCause, tc.cause)
			}
			r.stop(t)
			if st := loadState(t, cfg.Dir); st.Pending != nil || st.LastError == "" || st.LastCause != string(tc.cause) {
				t.Errorf("state after rollback = %+v, want no pending request, a last error and cause %s", st, tc.cause)
			}
		})
	}
}

func TestResubmitAfterDroppedConnection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	cfg := e.config("plug-1")
	e.enroll(cfg)
	old := onDisk(t, cfg.Dir).Serial()
	e.hub.SetBehaviour(testkit.DropOnce)
	r := e.start(cfg)
	r.waitFor(t, EventConnected)
	e.hub.Command("plug-1", "cmd-1", protocol.ActionRenew)

	first := recv(t, e.hub.CSRs, "first CSR")
	r.waitFor(t, EventDisconnected)
	second := recv(t, e.hub.CSRs, "resubmitted CSR")
	if second.RequestID != first.RequestID || second.CSR != first.CSR {
		t.Errorf("resubmitted request %s (same CSR: %t), want the same request %s and CSR", second.RequestID, second.CSR == first.CSR, first.RequestID)
	}
	ev := r.waitFor(t, EventRenewed)
	if ev.Serial == old {
		t.Errorf("serial after renewal = %s, still the old one", ev.Serial)
	}
	if c := recv(t, e.hub.Commits, "commit"); c.Attempt != 2 || c.RequestID != first.RequestID {
		t.Errorf("commit attempt %d request %s, want attempt 2 of %s", c.Attempt, c.RequestID, first.RequestID)
	}
}

// TestCommitAgainAfterDroppedConnection loses the session after the commit, before its ack
// (the hub restarted): the agent reconnects with the new certificate and commits again
// instead of rolling back (issue 10: a renewal a crash interrupted finishes after the
// restart).
func TestCommitAgainAfterDroppedConnection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	cfg := e.config("plug-1")
	e.enroll(cfg)
	old := onDisk(t, cfg.Dir).Serial()
	e.hub.SetBehaviour(testkit.DropCommitOnce)
	r := e.start(cfg)
	r.waitFor(t, EventConnected)
	e.hub.Command("plug-1", "cmd-1", protocol.ActionRenew)

	var ev Event
	for ev.Kind != EventRenewed {
		select {
		case ev = <-r.events:
		case <-time.After(hangGuard):
			t.Fatalf("no renewal within %s", hangGuard)
		}
		if ev.Kind == EventRolledBack {
			t.Fatalf("the agent rolled back after a dropped connection: %v", ev.Err)
		}
	}
	first := recv(t, e.hub.Commits, "commit")
	again := recv(t, e.hub.Commits, "commit sent again")
	if again.RequestID != first.RequestID || again.Serial != first.Serial || again.Outcome != protocol.OutcomeCommitted {
		t.Errorf("commit after reconnecting = %+v, want the first one %+v again", again, first)
	}
	if ev.Serial == old || onDisk(t, cfg.Dir).Serial() != ev.Serial {
		t.Errorf("serial after renewal = %s (on disk %s), want a new one, not %s", ev.Serial, onDisk(t, cfg.Dir).Serial(), old)
	}
}

func TestHubErrorBacksOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	cfg := e.config("plug-1")
	cfg.RetryMin, cfg.RetryMax = 50*time.Millisecond, 100*time.Millisecond
	e.enroll(cfg)
	e.hub.SetBehaviour(testkit.ErrorReply) // rate_limited, retry after 1 s
	old := onDisk(t, cfg.Dir).Serial()
	now := e.hub.HubNow()
	e.hub.Publish(protocol.Topics{}.Device("plug-1", protocol.KindRenewal), true, &protocol.RenewalInfo{
		V: protocol.Version, Serial: old, WindowStart: now.Add(-2 * time.Minute), WindowEnd: now.Add(-time.Minute), HubTime: now,
	})
	r := e.start(cfg)
	ev := r.waitFor(t, EventRenewFailed)
	var he *HubError
	if !errors.As(ev.Err, &he) || he.RetryAfter != time.Second {
		t.Errorf("failure = %v, want a HubError with retry after 1s", ev.Err)
	}
	e.hub.SetBehaviour(testkit.Normal)
	r.waitFor(t, EventRenewed) // the agent tried again by itself
	if n := len(e.hub.CSRs); n != 2 {
		t.Errorf("CSRs sent = %d, want 2 (one refused, one retried after the backoff)", n)
	}
}

// TestCommandRetriedAfterBusy: a commanded renewal the hub refuses with a retryable code
// (busy, rate_limited) is retried after retry_after with the same command, although the
// certificate's window is far away; it used to be dropped until the window.
func TestCommandRetriedAfterBusy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	cfg := e.config("plug-1")
	cfg.RetryMin, cfg.RetryMax = 50*time.Millisecond, 100*time.Millisecond
	e.enroll(cfg)
	old := onDisk(t, cfg.Dir).Serial()
	r := e.start(cfg)
	r.waitFor(t, EventConnected)
	e.hub.SetErrorCode(protocol.CodeBusy)
	e.hub.SetBehaviour(testkit.ErrorReply)
	e.hub.Command("plug-1", "cmd-busy", protocol.ActionRenew)
	ev := r.waitFor(t, EventRenewFailed)
	var he *HubError
	if !errors.As(ev.Err, &he) || he.Code != string(protocol.CodeBusy) {
		t.Fatalf("failure = %v, want busy", ev.Err)
	}
	e.hub.SetBehaviour(testkit.Normal)
	done := r.waitFor(t, EventRenewed)
	first, second := recv(t, e.hub.CSRs, "refused CSR"), recv(t, e.hub.CSRs, "retried CSR")
	if first.CommandID != "cmd-busy" || second.CommandID != "cmd-busy" || second.Reason != protocol.ReasonCommand {
		t.Errorf("CSRs = %+v then %+v, want both for cmd-busy, the second a command renewal", first, second)
	}
	if done.Serial == old {
		t.Errorf("serial after the retry = %s, unchanged", done.Serial)
	}
}

func TestKeepsTryingWhileUnreachable(t *testing.T) {
	e := newEnv(t, true)
	cfg := e.config("plug-1")
	e.enroll(cfg)
	old := onDisk(t, cfg.Dir).Serial()

	down := cfg
	down.HubURL = "mqtts://127.0.0.1:1" // nothing listens there
	down.RetryMin = 10 * time.Millisecond
	r := e.start(down)
	for range 3 {
		r.waitFor(t, EventUnreachable)
	}
	r.stop(t)
	if got := onDisk(t, cfg.Dir).Serial(); got != old {
		t.Errorf("serial after failed connections = %s, want the unchanged %s", got, old)
	}
	if st, err := ReadStatus(Config{Dir: cfg.Dir}); err != nil || st.ConnectError == "" || st.Connected {
		t.Errorf("ReadStatus() after failed connections = %+v, %v; want a connection error", st, err)
	}

	// Once the hub is back, the connection error is cleared from the reports.
	r = e.start(cfg)
	r.waitFor(t, EventConnected)
	if h := healthWith(t, e, old); h.LastError != "" {
		t.Errorf("health after reconnecting reports %q, want no error", h.LastError)
	}
}

// TestReconnectMax caps the wait between connection attempts to an unreachable hub, in a
// synctest bubble whose clock is virtual: without the cap the waits double towards 5 min.
func TestReconnectMax(t *testing.T) {
	e := newEnv(t, true)
	cfg := e.config("plug-1")
	e.enroll(cfg)
	cfg.HubURL = "mqtts://127.0.0.1:1" // nothing listens there
	cfg.RetryMin, cfg.ReconnectMax = time.Second, 2*time.Second
	synctest.Test(t, func(t *testing.T) {
		var times []time.Time
		cfg.OnEvent = func(ev Event) {
			if ev.Kind == EventUnreachable {
				times = append(times, ev.Time)
			}
		}
		a, err := New(cfg)
		if err != nil {
			t.Fatalf("New() = %v", err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		time.Sleep(time.Minute) // virtual: about 40 attempts 1–2 s apart
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
		if len(times) < 20 {
			t.Fatalf("%d connection attempts in a minute, want at least 20 with waits of at most %s", len(times), cfg.ReconnectMax)
		}
		for i := 1; i < len(times); i++ {
			if gap := times[i].Sub(times[i-1]); gap > cfg.ReconnectMax {
				t.Errorf("attempt %d came %s after the previous one, want at most %s", i+1, gap, cfg.ReconnectMax)
			}
		}
	})
}
