package hub

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
	"github.com/hearth-pki/hearth/protocol"
)

func TestPolicyReloadRecordsDiff(t *testing.T) {
	h, cfg := startHub(t)
	ctx := t.Context()
	evs, err := h.store.Events(ctx, inventory.EventFilter{Kind: protocol.EventPolicyChanged})
	if err != nil || len(evs) != 1 || evs[0].Actor != "hub start" {
		t.Fatalf("policy events after the first start = %+v, %v; want one by \"hub start\"", evs, err)
	}
	// Reloading the same policy records nothing.
	if resp := h.Admin().Do(ctx, "cli", "policy/reload", nil); resp.Status != "ok" || strings.Contains(string(resp.Data), "lifetime") {
		t.Fatalf("reload unchanged policy = %+v", resp)
	}
	// A new file: the change is applied and recorded with who and what.
	os.WriteFile(filepath.Join(cfg.DataDir, "policy.yaml"), []byte("version: 1\nclasses:\n  - name: default\n    lifetime: 14d\n"), 0o600)
	resp := h.Admin().Do(ctx, "alice", "policy/reload", nil)
	if resp.Status != "ok" {
		t.Fatalf("reload = %+v", resp)
	}
	var r struct{ Changed []string }
	json.Unmarshal(resp.Data, &r)
	if len(r.Changed) == 0 || !strings.Contains(strings.Join(r.Changed, " "), "lifetime") {
		t.Errorf("reload changes = %v, want the lifetime", r.Changed)
	}
	evs, _ = h.store.Events(ctx, inventory.EventFilter{Kind: protocol.EventPolicyChanged})
	if len(evs) != 2 || evs[len(evs)-1].Actor != "alice" || !strings.Contains(evs[len(evs)-1].Message, "lifetime") {
		t.Errorf("policy events = %+v, want a second one by alice naming the lifetime", evs)
	}
	if got := h.policy.Load().Classes[0].Lifetime.Hours(); got != 14*24 {
		t.Errorf("policy in force has lifetime %vh, want 336h", got)
	}
	// A broken file is refused and the policy in force stays.
	os.WriteFile(filepath.Join(cfg.DataDir, "policy.yaml"), []byte("classes: [\n"), 0o600)
	if resp := h.Admin().Do(ctx, "alice", "policy/reload", nil); resp.Status != "error" {
		t.Errorf("reload of a broken file = %+v, want an error", resp)
	}
	if got := h.policy.Load().Classes[0].Lifetime.Hours(); got != 14*24 {
		t.Errorf("after a failed reload the lifetime is %vh, want 336h kept", got)
	}
}

// TestPolicyClassesStored: the hub's start stores the class of every device whose class was
// not chosen under the policy in force, and a reload that changes the classes stores them
// again; one that leaves the classes alone writes none (issue 14: the device list's class
// filter reads these).
func TestPolicyClassesStored(t *testing.T) {
	cfg := hubkit.Config(t, "")
	write := func(yaml string) {
		t.Helper()
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cfg.DataDir, "policy.yaml"), []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("version: 1\nclasses:\n  - name: cams\n    match:\n      families: [cam]\n")
	store, err := inventory.Open(t.Context(), cfg.DatabasePath())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []inventory.Device{{ID: "cam-1", Family: "cam"}, {ID: "plug-1", Family: "plug"},
		{ID: "old-cam", Family: "cam", Class: "default", ClassHash: "classes:earlier"}} {
		if err := store.UpsertDevice(t.Context(), d); err != nil {
			t.Fatal(err)
		}
	}
	store.Close()
	h := runHub(t, cfg, Options{Version: "test"})
	ctx := t.Context()
	classes := func() map[string]string {
		out := map[string]string{}
		for _, id := range []string{"cam-1", "plug-1", "old-cam"} {
			d, err := h.store.Device(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if d.ClassHash != h.policy.Load().ClassHash() {
				t.Errorf("device %s has its class %q under %q, want the policy's %q", id, d.Class, d.ClassHash, h.policy.Load().ClassHash())
			}
			out[id] = d.Class
		}
		return out
	}
	if got, want := classes(), map[string]string{"cam-1": "cams", "plug-1": "default", "old-cam": "cams"}; !maps.Equal(got, want) {
		t.Errorf("classes after the start = %v, want %v", got, want)
	}
	write("version: 1\nclasses:\n  - name: cams\n    match:\n      families: [plug]\n")
	if resp := h.Admin().Do(ctx, "alice", "policy/reload", nil); resp.Status != "ok" {
		t.Fatalf("reload = %+v", resp)
	}
	if got, want := classes(), map[string]string{"cam-1": "default", "plug-1": "cams", "old-cam": "default"}; !maps.Equal(got, want) {
		t.Errorf("classes after a reload moving the families = %v, want %v", got, want)
	}
	// A lifetime alone: the classes' hash stays, so a class stored stale on purpose stays too.
	if err := h.store.UpsertDevice(ctx, inventory.Device{ID: "plug-1", Class: "marker", ClassHash: h.policy.Load().ClassHash()}); err != nil {
		t.Fatal(err)
	}
	write("version: 1\nclasses:\n  - name: cams\n    lifetime: 7d\n    match:\n      families: [plug]\n")
	if resp := h.Admin().Do(ctx, "alice", "policy/reload", nil); resp.Status != "ok" {
		t.Fatalf("reload = %+v", resp)
	}
	if d, err := h.store.Device(ctx, "plug-1"); err != nil || d.Class != "marker" {
		t.Errorf("plug-1 after a reload changing a lifetime = %q, %v; want no class written", d.Class, err)
	}
}
