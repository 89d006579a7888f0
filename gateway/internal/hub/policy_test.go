package hub

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
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
