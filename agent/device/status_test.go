package device

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/keystore"
	"github.com/hearth-pki/hearth/agent/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

func TestStatusWhileRunning(t *testing.T) {
	e := newEnv(t, true)
	cfg := e.config("meter-1")
	e.enroll(cfg)
	serial := onDisk(t, cfg.Dir).Serial()
	r := e.start(cfg)
	r.waitFor(t, EventConnected)
	healthWith(t, e, serial)

	st, err := ReadStatus(Config{Dir: cfg.Dir})
	if err != nil {
		t.Fatalf("ReadStatus() = %v", err)
	}
	if !st.Enrolled || st.Serial != serial || st.DeviceID != "meter-1" || st.Hub != e.broker.URL || !st.Connected ||
		st.AgentVersion != "test" || st.NextRenewal.IsZero() || st.Expired || !st.ChainOK || st.KeyAlgorithm != protocol.KeyP256 {
		t.Errorf("ReadStatus() = %+v", st)
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"device_id", "hub", "serial", "not_after", "time_left", "next_renewal", "connected", "expired"} {
		if _, ok := m[k]; !ok {
			t.Errorf("status JSON lacks %q: %s", k, b)
		}
	}
	if left := m["time_left"].(float64); left < 3000 || left > 3600 {
		t.Errorf("time_left = %v s, want about an hour", left)
	}

	// The directory is in use: a foreground renewal must refuse rather than race the agent.
	if err := Renew(t.Context(), Config{Dir: cfg.Dir}); !errors.Is(err, ErrLocked) {
		t.Errorf("Renew() while an agent runs = %v, want ErrLocked", err)
	}
	r.stop(t)
	if st, _ := ReadStatus(Config{Dir: cfg.Dir}); st.Connected {
		t.Errorf("ReadStatus() after the agent stopped says connected")
	}
}

func TestRenewForeground(t *testing.T) {
	e := newEnv(t, true)
	cfg := e.config("meter-1")
	e.enroll(cfg)
	old := onDisk(t, cfg.Dir).Serial()
	if err := Renew(t.Context(), Config{Dir: cfg.Dir, Logger: cfg.Logger}); err != nil {
		t.Fatalf("Renew() = %v", err)
	}
	if got := onDisk(t, cfg.Dir).Serial(); got == old {
		t.Errorf("serial after Renew() = %s, unchanged", got)
	}
	e.hub.SetBehaviour(testkit.AckError)
	err := Renew(t.Context(), Config{Dir: cfg.Dir, Logger: cfg.Logger, AckTimeout: time.Second})
	if !errors.Is(err, ErrNotCommitted) {
		t.Errorf("Renew() refused by the hub = %v, want ErrNotCommitted", err)
	}
}

func TestStatusNotEnrolled(t *testing.T) {
	st, err := ReadStatus(Config{Dir: t.TempDir()})
	if err != nil || st.Enrolled {
		t.Errorf("ReadStatus(empty dir) = %+v, %v; want not enrolled, no error", st, err)
	}
	if _, err := New(Config{Dir: t.TempDir()}); !errors.Is(err, ErrNotEnrolled) {
		t.Errorf("New(empty dir) = %v, want ErrNotEnrolled", err)
	}
}

// TestResumeAfterRestart installs a new pair and records a pending request as a renewal cut
// short by a restart would, then checks that Run commits it, or rolls it back when the hub
// does not acknowledge.
func TestResumeAfterRestart(t *testing.T) {
	for _, tc := range []struct {
		name      string
		behaviour testkit.Behaviour
		event     EventKind
		keepsNew  bool
	}{
		{"acknowledged", testkit.Normal, EventRenewed, true},
		{"refused", testkit.AckError, EventRolledBack, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, true)
			cfg := e.config("meter-1")
			cfg.AckTimeout = time.Second
			e.enroll(cfg)
			old := onDisk(t, cfg.Dir)
			fresh := installUncommitted(t, e, cfg.Dir, "meter-1", "req-before-restart", old.Serial())

			e.hub.SetBehaviour(tc.behaviour)
			r := e.start(cfg)
			r.waitFor(t, tc.event)
			c := recv(t, e.hub.Commits, "commit")
			if c.RequestID != "req-before-restart" || c.Serial != fresh || c.Outcome != protocol.OutcomeCommitted {
				t.Errorf("commit = %+v, want committed %s for req-before-restart", c, fresh)
			}
			want := old.Serial()
			if tc.keepsNew {
				want = fresh
			}
			r.stop(t)
			if got := onDisk(t, cfg.Dir).Serial(); got != want {
				t.Errorf("serial on disk = %s, want %s", got, want)
			}
			if st := loadState(t, cfg.Dir); st.Pending != nil {
				t.Errorf("pending request after resume = %+v, want none", st.Pending)
			}
		})
	}
}

// TestResumeBeforeInstall is a renewal cut short between its CSR and its install (issue 10:
// the agent forgot the request and the hub held it in flight for its whole timeout). On
// restart the agent gives the request up and tells the hub with a rolled_back report from a
// session presenting the certificate it stays on.
func TestResumeBeforeInstall(t *testing.T) {
	e := newEnv(t, true)
	cfg := e.config("meter-1")
	e.enroll(cfg)
	old := onDisk(t, cfg.Dir)
	ks, err := keystore.Open(cfg.Dir, keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := ks.LoadState()
	st.Pending = &keystore.Pending{RequestID: "req-cut-short", Replaces: old.Serial()}
	if err := ks.SaveState(st); err != nil {
		t.Fatal(err)
	}
	r := e.start(cfg)
	r.waitFor(t, EventRenewFailed)
	c := recv(t, e.hub.Commits, "commit")
	if c.RequestID != "req-cut-short" || c.Serial != old.Serial() || c.Outcome != protocol.OutcomeRolledBack {
		t.Errorf("report = %+v, want rolled_back of req-cut-short staying on %s", c, old.Serial())
	}
	if c.Cause != protocol.CauseInterrupted {
		t.Errorf("report cause = %q, want %q", c.Cause, protocol.CauseInterrupted)
	}
	r.stop(t)
	if got := onDisk(t, cfg.Dir).Serial(); got != old.Serial() {
		t.Errorf("serial on disk = %s, want %s", got, old.Serial())
	}
	if st := loadState(t, cfg.Dir); st.Pending != nil {
		t.Errorf("pending request after resume = %+v, want none", st.Pending)
	}
	if st, err := ReadStatus(Config{Dir: cfg.Dir}); err != nil || st.LastCause != string(protocol.CauseInterrupted) || st.LastRequestID != "req-cut-short" {
		t.Errorf("ReadStatus() after resume = cause %q request %q (%v), want %s of req-cut-short", st.LastCause, st.LastRequestID, err, protocol.CauseInterrupted)
	}
}

// TestRenewUnreachableRecordsCause: a one-shot Renew that cannot reach the hub records the
// failure (cause network) under the attempt's request id before it returns, and the next
// session's health report carries both to the hub.
func TestRenewUnreachableRecordsCause(t *testing.T) {
	e := newEnv(t, true)
	cfg := e.config("meter-1")
	e.enroll(cfg)
	old := onDisk(t, cfg.Dir).Serial()
	err := Renew(t.Context(), Config{Dir: cfg.Dir, HubURL: "mqtts://127.0.0.1:1", Logger: cfg.Logger, ConnectTimeout: 5 * time.Second})
	if err == nil {
		t.Fatal("Renew() with nothing listening succeeded")
	}
	st, err := ReadStatus(Config{Dir: cfg.Dir})
	if err != nil || st.LastCause != string(protocol.CauseNetwork) || st.LastRequestID == "" || st.LastError == "" {
		t.Fatalf("ReadStatus() after an unreachable hub = cause %q request %q error %q (%v), want network with a request id",
			st.LastCause, st.LastRequestID, st.LastError, err)
	}
	r := e.start(cfg)
	r.waitFor(t, EventConnected)
	if h := healthWith(t, e, old); h.LastCause != protocol.CauseNetwork || h.LastRequestID != st.LastRequestID {
		t.Errorf("health after reconnecting = cause %q request %q, want network of %s", h.LastCause, h.LastRequestID, st.LastRequestID)
	}
}

// installUncommitted installs a pair issued by the test CA and records the pending request,
// returning the new serial.
func installUncommitted(t *testing.T, e *env, dir, id, reqID, replaces string) string {
	t.Helper()
	ks, err := keystore.Open(dir, keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	key, err := keystore.GenerateKey(protocol.KeyP256)
	if err != nil {
		t.Fatal(err)
	}
	leaf := e.ca.Issue(t, key.Public(), id, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	if err := ks.Install(key, []*x509.Certificate{leaf, e.ca.Intermediate}); err != nil {
		t.Fatal(err)
	}
	st, _ := ks.LoadState()
	st.Pending = &keystore.Pending{RequestID: reqID, Replaces: replaces}
	if err := ks.SaveState(st); err != nil {
		t.Fatal(err)
	}
	p, _ := ks.Current()
	return p.Serial()
}
