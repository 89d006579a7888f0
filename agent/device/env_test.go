package device

import (
	"context"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/keystore"
	"github.com/hearth-pki/hearth/agent/internal/log"
	"github.com/hearth-pki/hearth/agent/internal/testkit"
)

// hangGuard bounds every wait of these tests: it is a guard against a hang, never a timing
// assertion.
const hangGuard = 60 * time.Second

// env is a hub for one test: a throwaway CA, a real mosquitto and a responder.
type env struct {
	t      *testing.T
	ca     *testkit.CA
	broker *testkit.Broker
	hub    *testkit.Responder
}

func newEnv(t *testing.T, presentRoot bool) *env {
	t.Helper()
	ca := testkit.NewCA(t, "Test")
	b := testkit.StartBroker(t, ca, presentRoot)
	return &env{t: t, ca: ca, broker: b, hub: testkit.StartResponder(t, b)}
}

// testLog sends the agent's log to t.Log while the test runs.
type testLog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Logf("%s", p)
	}
	return len(p), nil
}

func newLogger(t testing.TB) *log.Logger {
	if !testing.Verbose() {
		return log.New(io.Discard, log.Text, log.LevelInfo)
	}
	w := &testLog{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return log.New(w, log.Text, log.LevelDebug)
}

// config returns a device configuration for id with a fresh state directory. Renewal retries
// are an hour apart, so that a failure is seen once.
func (e *env) config(id string) Config {
	return Config{
		Dir: filepath.Join(e.t.TempDir(), "hearth"), HubURL: e.broker.URL, DeviceID: id, Version: "test",
		ConnectTimeout: 10 * time.Second, RequestTimeout: 10 * time.Second, AckTimeout: 10 * time.Second,
		RetryMin: time.Hour, RetryMax: time.Hour, Step: 100 * time.Millisecond, Logger: newLogger(e.t),
	}
}

// enroll enrolls cfg's device and consumes the responder's records of it.
func (e *env) enroll(cfg Config) {
	e.t.Helper()
	if err := Enroll(e.t.Context(), cfg, "token-1", e.ca.Fingerprint()); err != nil {
		e.t.Fatalf("Enroll() = %v", err)
	}
	recv(e.t, e.hub.CSRs, "enrollment CSR")
	recv(e.t, e.hub.Commits, "enrollment commit")
}

// recv returns the next value of ch.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(hangGuard):
		t.Fatalf("no %s within %s", what, hangGuard)
	}
	panic("unreachable")
}

// running is an Agent running in the background.
type running struct {
	events chan Event
	cancel context.CancelFunc
	done   chan error
}

// start runs an agent for cfg until the end of the test.
func (e *env) start(cfg Config) *running {
	e.t.Helper()
	return e.startWith(cfg, nil)
}

// startWith is start with prepare, if not nil, called on the Agent before it runs (to
// inject a failure).
func (e *env) startWith(cfg Config, prepare func(*Agent)) *running {
	e.t.Helper()
	r := &running{events: make(chan Event, 4096), done: make(chan error, 1)}
	cfg.OnEvent = func(ev Event) {
		select {
		case r.events <- ev:
		default:
			e.t.Errorf("event %s dropped", ev.Kind)
		}
	}
	a, err := New(cfg)
	if err != nil {
		e.t.Fatalf("New() = %v", err)
	}
	if prepare != nil {
		prepare(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- a.Run(ctx) }()
	e.t.Cleanup(func() { r.stop(e.t) })
	return r
}

// stop ends the agent and checks that Run returned nil.
func (r *running) stop(t testing.TB) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run() = %v, want nil after cancel", err)
		}
	case <-time.After(hangGuard):
		t.Errorf("Run did not return within %s of cancel", hangGuard)
	}
}

// waitFor returns the next event of kind, skipping others.
func (r *running) waitFor(t testing.TB, kind EventKind) Event {
	t.Helper()
	deadline := time.After(hangGuard)
	for {
		select {
		case ev := <-r.events:
			if ev.Kind == kind {
				return ev
			}
		case err := <-r.done:
			t.Fatalf("Run returned %v while waiting for %s", err, kind)
		case <-deadline:
			t.Fatalf("no %s event within %s", kind, hangGuard)
		}
	}
}

// onDisk returns the serial of the current pair in dir.
func onDisk(t testing.TB, dir string) keystore.Pair {
	t.Helper()
	ks, err := keystore.Open(dir, keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := ks.Current()
	if err != nil {
		t.Fatalf("Current() = %v", err)
	}
	return p
}

// loadState reads the keystore state of dir.
func loadState(t testing.TB, dir string) keystore.State {
	t.Helper()
	ks, err := keystore.Open(dir, keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := ks.LoadState()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// offsetClock is a device clock at a settable offset from the real one.
type offsetClock struct{ off atomic.Int64 }

func (c *offsetClock) set(d time.Duration) { c.off.Store(int64(d)) }
func (c *offsetClock) now() time.Time      { return time.Now().Add(time.Duration(c.off.Load())) }
