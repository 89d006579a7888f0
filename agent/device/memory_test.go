package device

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hearth-pki/hearth/protocol"
)

// TestMemoryDevice enrolls and renews a device whose keys are in memory: the same protocol as
// a state directory, and not one file written.
func TestMemoryDevice(t *testing.T) {
	e := newEnv(t, true)
	cfg := e.config("plug-1")
	cfg.Dir = filepath.Join(t.TempDir(), "never-created")
	cfg.Memory = new(Memory)
	e.enroll(cfg)

	events := make(chan Event, 4096)
	cfg.OnEvent = func(ev Event) { events <- ev }
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	if got := a.Serial(); got != "" {
		t.Errorf("Serial() before Run = %q, want empty", got)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	r := &running{events: events, cancel: cancel, done: done}
	t.Cleanup(func() { r.stop(t) })

	first := r.waitFor(t, EventConnected).Serial
	if got := a.Serial(); got != first || got == "" {
		t.Errorf("Serial() = %q, want the connected serial %q", got, first)
	}
	if h := healthWith(t, e, first); h.KeyStorage != "memory" {
		t.Errorf("health key_storage = %q, want memory", h.KeyStorage)
	}
	e.hub.Command("plug-1", "cmd-1", protocol.ActionRenew)
	if ev := r.waitFor(t, EventRenewing); ev.Detail != string(protocol.ReasonCommand) {
		t.Errorf("renewing event detail = %q, want %q", ev.Detail, protocol.ReasonCommand)
	}
	ev := r.waitFor(t, EventRenewed)
	if ev.Serial == first {
		t.Errorf("renewed serial = %s, still the enrolled one", ev.Serial)
	}
	if commit := recvCommitted(t, e); commit.Serial != ev.Serial {
		t.Errorf("commit serial = %s, want %s", commit.Serial, ev.Serial)
	}
	r.stop(t)
	if got := a.Serial(); got != ev.Serial {
		t.Errorf("Serial() after Run = %q, want %q", got, ev.Serial)
	}
	if _, err := os.Stat(cfg.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory %s: %v, want it never created", cfg.Dir, err)
	}
}

// recvCommitted returns the next committed commit the responder received.
func recvCommitted(t *testing.T, e *env) protocol.Commit {
	t.Helper()
	for {
		if c := recv(t, e.hub.Commits, "commit"); c.Outcome == protocol.OutcomeCommitted {
			return c
		}
	}
}

func TestMemoryNeedsHubAndID(t *testing.T) {
	_, err := New(Config{Dir: t.TempDir(), Memory: new(Memory), DeviceID: "plug-1"})
	if !errors.Is(err, ErrNotEnrolled) {
		t.Errorf("New(memory without hub URL) = %v, want ErrNotEnrolled", err)
	}
}
