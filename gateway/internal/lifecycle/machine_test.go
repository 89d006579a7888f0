package lifecycle

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/protocol"
)

// published is a Publisher that records what the machine publishes.
type published struct {
	mu   sync.Mutex
	msgs []message
}

type message struct {
	topic   string
	payload []byte
}

func (p *published) Publish(topic string, payload []byte, _ bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, message{topic, payload})
	return nil
}

// on returns the payloads published on topic, decoded into new(T) each.
func on[T any](t *testing.T, p *published, topic string) []T {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []T
	for _, m := range p.msgs {
		if m.topic != topic {
			continue
		}
		var v T
		if err := json.Unmarshal(m.payload, &v); err != nil {
			t.Fatalf("payload on %s: %v", topic, err)
		}
		out = append(out, v)
	}
	return out
}

type fixture struct {
	store   *inventory.Store
	pub     *published
	m       *Machine
	topics  protocol.Topics
	commits []Committed
	ended   []Ended
	mu      sync.Mutex
}

func openStore(t *testing.T, path string) *inventory.Store {
	t.Helper()
	s, err := inventory.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// start runs a Machine on store until the test ends.
func start(t *testing.T, store *inventory.Store, inFlight time.Duration) *fixture {
	t.Helper()
	return startShared(t, store, inFlight, false)
}

// startShared is start with Config.Shared set to shared.
func startShared(t *testing.T, store *inventory.Store, inFlight time.Duration, shared bool) *fixture {
	t.Helper()
	f := &fixture{store: store, pub: &published{}}
	// The hub's clock: real time, or inside a synctest bubble (which starts in 2000) the
	// bubble's time moved to a date the protocol accepts.
	clock := time.Now
	if time.Now().Year() < 2020 {
		origin := time.Now()
		clock = func() time.Time { return t0.Add(time.Since(origin)) }
	}
	m, err := New(Config{Rules: Rules{InFlight: inFlight}, Store: store, Publisher: f.pub, Shards: 2, Now: clock, Shared: shared,
		Hooks: Hooks{
			Committed: func(c Committed) { f.mu.Lock(); f.commits = append(f.commits, c); f.mu.Unlock() },
			Ended:     func(e Ended) { f.mu.Lock(); f.ended = append(f.ended, e); f.mu.Unlock() },
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := m.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	f.m = m
	return f
}

// issue records a pending certificate serial for request req of device id, as the issuance
// pipeline does.
func issue(t *testing.T, s *inventory.Store, id, req, serial, replaces string, at time.Time) {
	t.Helper()
	err := s.RecordIssuance(context.Background(), inventory.Issuance{
		Device:  inventory.Device{ID: id, Mechanism: inventory.MechanismAgent},
		Cert:    inventory.Certificate{Serial: serial, NotBefore: at, NotAfter: at.Add(30 * 24 * time.Hour), Replaces: replaces},
		Attempt: inventory.Attempt{RequestID: req, Reason: "command", StartedAt: at, FinishedAt: at},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// issueFunc is an IssueFunc that records serial for req.
func issueFunc(t *testing.T, s *inventory.Store, id, req, serial, replaces string, at time.Time) IssueFunc {
	return func(context.Context) (string, bool) {
		err := s.RecordIssuance(context.Background(), inventory.Issuance{
			Device:  inventory.Device{ID: id, Mechanism: inventory.MechanismAgent},
			Cert:    inventory.Certificate{Serial: serial, NotBefore: at, NotAfter: at.Add(30 * 24 * time.Hour), Replaces: replaces},
			Attempt: inventory.Attempt{RequestID: req, Reason: "command", StartedAt: at, FinishedAt: at},
		})
		if err != nil {
			t.Errorf("record issuance of %s: %v", serial, err)
			return "", false
		}
		return serial, true
	}
}

func (f *fixture) inspect(t *testing.T, id string) State {
	t.Helper()
	s, err := f.m.Inspect(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func activeSerial(t *testing.T, s *inventory.Store, id string) string {
	t.Helper()
	c, err := s.ActiveCertificate(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return c.Serial
}

func countEvents(t *testing.T, s *inventory.Store, kind protocol.EventType) int {
	t.Helper()
	evs, err := s.Events(context.Background(), inventory.EventFilter{Kind: kind})
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

// enrolled returns a store with device d1 active on certificate "a" (request e1).
func enrolled(t *testing.T) (*inventory.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hearth.db")
	s := openStore(t, path)
	now := time.Now().UTC().Truncate(time.Second)
	issue(t, s, "d1", "e1", "a", "", now)
	if _, err := s.Commit(context.Background(), "d1", "e1", "a", false, now); err != nil {
		t.Fatal(err)
	}
	return s, path
}

// TestLateOnlineAfterCommit is issue 10's first bug: the online event of the renewal's old
// session arrives after the commit of the new one. The device must stay on the new
// certificate, with one activation.
func TestLateOnlineAfterCommit(t *testing.T) {
	s, _ := enrolled(t)
	f := start(t, s, time.Minute)
	now := time.Now().UTC()
	f.m.SessionUp("d1", 1, "a")
	f.m.CSR("d1", 1, &protocol.CSR{RequestID: "r1"}, issueFunc(t, s, "d1", "r1", "b", "a", now))
	f.m.SessionUp("d1", 3, "b")
	f.m.Commit("d1", 3, "b", &protocol.Commit{RequestID: "r1", Serial: "b", Outcome: protocol.OutcomeCommitted})
	f.m.SessionUp("d1", 2, "a") // late: connection 2 opened before 3
	f.m.SessionDown("d1", 1)
	f.m.SessionDown("d1", 2)
	st := f.inspect(t, "d1")
	if st.Active != "b" || !st.Online() {
		t.Errorf("state: Active %q, Online %v; want b, true", st.Active, st.Online())
	}
	if got := activeSerial(t, s, "d1"); got != "b" {
		t.Errorf("inventory active = %q, want b", got)
	}
	if n := countEvents(t, s, protocol.EventCertActivated); n != 2 {
		t.Errorf("cert.activated events = %d, want 2 (enrollment and commit)", n)
	}
	acks := on[protocol.Ack](t, f.pub, f.topics.Device("d1", protocol.KindAck))
	if len(acks) != 1 || acks[0].Serial != "b" || acks[0].Error != nil {
		t.Errorf("acks = %+v, want one for b", acks)
	}
	d, err := s.Device(context.Background(), "d1")
	if err != nil || !d.Online {
		t.Errorf("device online = %v (%v), want true", d.Online, err)
	}
}

// TestSharedReplicas: two machines on one inventory, as two hub replicas on PostgreSQL, both
// following the device's session. One handles its CSR, the other its commit: with Shared the
// second applies the commit to the stored state, without it it refuses a request it never
// saw (what the replicas did before issue 17's storm test).
func TestSharedReplicas(t *testing.T) {
	for _, tc := range []struct {
		name   string
		shared bool
		want   protocol.Code // of the commit's ack, "" for a success
	}{
		{"shared", true, ""},
		{"not shared", false, protocol.CodeUnknownRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := enrolled(t)
			a, b := startShared(t, s, time.Minute, tc.shared), startShared(t, s, time.Minute, tc.shared)
			for _, f := range []*fixture{a, b} {
				f.m.SessionUp("d1", 1, "a")
				f.inspect(t, "d1") // loaded, and kept while the session lives
			}
			a.m.CSR("d1", 1, &protocol.CSR{RequestID: "r1"}, issueFunc(t, s, "d1", "r1", "b", "a", time.Now().UTC()))
			a.inspect(t, "d1")
			for _, f := range []*fixture{a, b} {
				f.m.SessionUp("d1", 2, "b")
			}
			b.m.Commit("d1", 2, "b", &protocol.Commit{RequestID: "r1", Serial: "b", Outcome: protocol.OutcomeCommitted})
			b.inspect(t, "d1")
			acks := on[protocol.Ack](t, b.pub, b.topics.Device("d1", protocol.KindAck))
			var got protocol.Code
			if len(acks) == 1 && acks[0].Error != nil {
				got = acks[0].Error.Code
			}
			if len(acks) != 1 || got != tc.want {
				t.Fatalf("acks of the commit on the second machine = %+v, want one with code %q", acks, tc.want)
			}
			wantActive := "a"
			if tc.shared {
				wantActive = "b"
			}
			if got := activeSerial(t, s, "d1"); got != wantActive {
				t.Errorf("inventory active = %q, want %q", got, wantActive)
			}
		})
	}
}

// TestRecoverShared: a replica that starts on a shared inventory leaves the other replicas'
// devices online; a hub on its own file marks every device offline.
func TestRecoverShared(t *testing.T) {
	for _, tc := range []struct {
		name   string
		shared bool
		online bool
	}{{"shared", true, true}, {"own file", false, false}} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := enrolled(t)
			if err := s.SetOnline(context.Background(), "d1", true, time.Now()); err != nil {
				t.Fatal(err)
			}
			startShared(t, s, time.Minute, tc.shared) // runs Recover
			d, err := s.Device(context.Background(), "d1")
			if err != nil || d.Online != tc.online {
				t.Errorf("after Recover (Shared %v): online %v (%v), want %v", tc.shared, d.Online, err, tc.online)
			}
		})
	}
}

// TestSecondCSRWhilePendingIsBusy: single flight holds until commit or timeout.
func TestSecondCSRWhilePendingIsBusy(t *testing.T) {
	s, _ := enrolled(t) // outside the bubble: the store's pools outlive it
	synctest.Test(t, func(t *testing.T) {
		f := start(t, s, time.Minute)
		now := time.Now().UTC()
		f.m.SessionUp("d1", 1, "a")
		f.m.CSR("d1", 1, &protocol.CSR{RequestID: "r1"}, issueFunc(t, s, "d1", "r1", "b", "a", now))
		called := false
		f.m.CSR("d1", 1, &protocol.CSR{RequestID: "r2"}, func(context.Context) (string, bool) { called = true; return "", false })
		st := f.inspect(t, "d1")
		if called || st.Pending == nil || st.Pending.RequestID != "r1" {
			t.Fatalf("second request ran: %v, pending %+v", called, st.Pending)
		}
		replies := on[protocol.Cert](t, f.pub, f.topics.Device("d1", protocol.KindCert))
		if len(replies) != 1 || replies[0].Error == nil || replies[0].Error.Code != protocol.CodeBusy || replies[0].Error.RetryAfter != 60 {
			t.Fatalf("replies = %+v, want one busy with retry_after 60; published %q", replies, f.pub.msgs)
		}

		time.Sleep(time.Minute + 2*time.Second) // past the in-flight timeout: the tick ends r1
		synctest.Wait()
		st = f.inspect(t, "d1")
		if st.Pending != nil {
			t.Fatalf("pending after the timeout: %+v", st.Pending)
		}
		c, err := s.Certificate(context.Background(), "b")
		if err != nil || c.Status != inventory.StatusAbandoned {
			t.Errorf("pending certificate b: %v, %v; want abandoned", c.Status, err)
		}
		a, err := s.Attempt(context.Background(), "d1", "r1")
		if err != nil || a.Outcome != inventory.OutcomeExpired {
			t.Errorf("attempt r1: %q, %v; want expired", a.Outcome, err)
		}
		f.m.CSR("d1", 1, &protocol.CSR{RequestID: "r2"}, issueFunc(t, s, "d1", "r2", "c", "a", time.Now().UTC()))
		if st := f.inspect(t, "d1"); st.Pending == nil || st.Pending.RequestID != "r2" || st.Pending.Serial != "c" {
			t.Errorf("after the timeout a new request proceeds: pending %+v", st.Pending)
		}
	})
}

// TestCommandBeforeSubscribe is issue 10's second bug: a command sent between CONNECT and
// the agent's SUBSCRIBE was lost. It must wait for the subscription, and survive a restart.
func TestCommandBeforeSubscribe(t *testing.T) {
	s, path := enrolled(t)
	f := start(t, s, time.Minute)
	cmdTopic := f.topics.Device("d1", protocol.KindCmd)
	f.m.SessionUp("d1", 1, "a")
	cmd := Command{ID: "c1", Action: string(protocol.ActionRenew), Reason: "test", Deadline: time.Now().Add(time.Hour).UTC().Truncate(time.Second)}
	if err := f.m.Command(context.Background(), "d1", cmd); err != nil {
		t.Fatal(err)
	}
	f.inspect(t, "d1")
	if got := on[protocol.Command](t, f.pub, cmdTopic); len(got) != 0 {
		t.Fatalf("command sent before the subscription: %+v", got)
	}
	f.m.Subscribed("d1", 1)
	f.inspect(t, "d1")
	if got := on[protocol.Command](t, f.pub, cmdTopic); len(got) != 1 || got[0].CommandID != "c1" {
		t.Fatalf("commands after the subscription = %+v, want c1 once", got)
	}

	// A restart: a new machine on the same database sends the command again on the next
	// subscription, because the device never acted on it.
	f2 := start(t, openStore(t, path), time.Minute)
	f2.m.SessionUp("d1", 1, "a")
	f2.m.Subscribed("d1", 1)
	f2.inspect(t, "d1")
	if got := on[protocol.Command](t, f2.pub, cmdTopic); len(got) != 1 || got[0].CommandID != "c1" {
		t.Fatalf("after a restart, commands = %+v, want c1 again", got)
	}
	// Acting on it (a CSR) ends it: no further sends.
	f2.m.CSR("d1", 1, &protocol.CSR{RequestID: "r1", CommandID: "c1"}, issueFunc(t, f2.store, "d1", "r1", "b", "a", time.Now().UTC()))
	f2.m.Subscribed("d1", 1)
	f2.inspect(t, "d1")
	if got := on[protocol.Command](t, f2.pub, cmdTopic); len(got) != 1 {
		t.Errorf("command sent %d times after the device acted on it, want 1", len(got))
	}
	d, err := f2.store.Device(context.Background(), "d1")
	if err != nil || d.Command.ID != "" {
		t.Errorf("stored command after the CSR = %+v (%v), want none", d.Command, err)
	}
}

// TestForgedRolledBack: a rolled_back report is checked against the session like a commit.
func TestForgedRolledBack(t *testing.T) {
	s, _ := enrolled(t)
	f := start(t, s, time.Minute)
	now := time.Now().UTC()
	f.m.SessionUp("d1", 1, "a")
	f.m.CSR("d1", 1, &protocol.CSR{RequestID: "r1"}, issueFunc(t, s, "d1", "r1", "b", "a", now))
	f.m.SessionUp("d1", 2, "b")
	f.m.Commit("d1", 2, "b", &protocol.Commit{RequestID: "r1", Serial: "b", Outcome: protocol.OutcomeCommitted})
	// From the new certificate's session, claim a rollback to the old one.
	f.m.Commit("d1", 2, "b", &protocol.Commit{RequestID: "r1", Serial: "a", Outcome: protocol.OutcomeRolledBack})
	if st := f.inspect(t, "d1"); st.Active != "b" {
		t.Fatalf("forged rollback changed the active certificate to %q", st.Active)
	}
	acks := on[protocol.Ack](t, f.pub, f.topics.Device("d1", protocol.KindAck))
	if len(acks) != 2 || acks[1].Error == nil || acks[1].Error.Code != protocol.CodeNotPresented {
		t.Fatalf("acks = %+v, want the second refused not_presented", acks)
	}
	// The real rollback, from a session presenting the old certificate, is honoured.
	f.m.SessionUp("d1", 3, "a")
	f.m.Commit("d1", 3, "a", &protocol.Commit{RequestID: "r1", Serial: "a", Outcome: protocol.OutcomeRolledBack, Failed: "b"})
	if st := f.inspect(t, "d1"); st.Active != "a" {
		t.Errorf("rollback after commit: active %q, want a", st.Active)
	}
	if got := activeSerial(t, s, "d1"); got != "a" {
		t.Errorf("inventory active = %q, want a", got)
	}
	if len(f.ended) != 1 || !f.ended[0].AfterCommit {
		t.Errorf("Ended hooks = %+v, want one after-commit rollback", f.ended)
	}
}

// TestRecover: after a crash nothing stays online and stale requests end.
func TestRecover(t *testing.T) {
	s, path := enrolled(t)
	ctx := context.Background()
	old := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	issue(t, s, "d1", "r1", "b", "a", old)
	if err := s.SetOnline(ctx, "d1", true, old); err != nil {
		t.Fatal(err)
	}
	f := start(t, openStore(t, path), time.Minute)
	d, err := f.store.Device(ctx, "d1")
	if err != nil || d.Online {
		t.Errorf("online after Recover = %v (%v), want false", d.Online, err)
	}
	c, err := f.store.Certificate(ctx, "b")
	if err != nil || c.Status != inventory.StatusAbandoned {
		t.Errorf("stale pending certificate: %v (%v), want abandoned", c.Status, err)
	}
	if st := f.inspect(t, "d1"); st.Pending != nil || st.Active != "a" {
		t.Errorf("state after Recover: %+v", st)
	}
}

// TestReportedFailureOnce: a failure only the agent saw, repeated by every health report
// until its next success, becomes one failed attempt with the agent's cause and one Ended
// (for the metrics and alerts); a report naming a request the hub recorded adds nothing.
func TestReportedFailureOnce(t *testing.T) {
	s, _ := enrolled(t)
	f := start(t, s, time.Minute)
	f.m.SessionUp("d1", 1, "a")
	failure := ReportedFailure{RequestID: "r9", Cause: protocol.CauseNetwork, Detail: "hub: connect: connection refused"}
	for range 3 {
		f.m.Health("d1", 1, "", inventory.Health{ReportedSerial: "a"}, failure)
	}
	f.m.Health("d1", 1, "", inventory.Health{ReportedSerial: "a"}, ReportedFailure{RequestID: "e1", Cause: protocol.CauseTimeout})
	f.inspect(t, "d1") // every report applied
	a, err := s.Attempt(context.Background(), "d1", "r9")
	if err != nil {
		t.Fatal(err)
	}
	if a.Outcome != inventory.OutcomeFailed || a.Cause != protocol.CauseNetwork || a.Detail != failure.Detail {
		t.Errorf("attempt r9 = %s, cause %q, detail %q; want failed, network, %q", a.Outcome, a.Cause, a.Detail, failure.Detail)
	}
	if e1, err := s.Attempt(context.Background(), "d1", "e1"); err != nil || e1.Outcome != inventory.OutcomeCommitted {
		t.Errorf("attempt e1 = %+v, %v; want the enrollment's committed record untouched", e1, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.ended) != 1 || f.ended[0].Outcome != OutcomeFailed || f.ended[0].Failure != protocol.CauseNetwork || f.ended[0].RequestID != "r9" {
		t.Errorf("ended = %+v, want one failed r9 with cause network", f.ended)
	}
}
