package hub

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/hearth-pki/hearth/gateway/internal/atomicfile"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

// loadPolicy reads the policy file in force (or the defaults) with the configured overrides.
func (h *Hub) loadPolicy() (*policy.Policy, error) {
	pol := policy.Default()
	if path := h.policyPath(); path != "" {
		var err error
		if pol, err = policy.Load(path); err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
	}
	if h.cfg.LeafLifetime != 0 {
		if err := setDefaultLifetime(pol, h.cfg.LeafLifetime); err != nil {
			return nil, err
		}
	}
	return pol, nil
}

// applyPolicy puts pol in force and, when it differs from the policy recorded last, records
// it with an audit event listing the differences (inventory.RecordPolicy). New settings
// apply from the next issuance and the next scheduler pass; certificates already issued
// keep their lifetime.
func (h *Hub) applyPolicy(ctx context.Context, pol *policy.Policy, actor string) ([]string, error) {
	yaml, err := pol.Marshal()
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	prevHash, prevYAML, err := h.store.PolicyInForce(ctx)
	if err != nil {
		return nil, err
	}
	if prevHash == pol.Hash() {
		h.policy.Store(pol)
		h.reclassify(ctx, pol)
		return nil, nil
	}
	var before *policy.Policy
	if prevYAML != "" {
		before, _ = policy.Parse([]byte(prevYAML))
	}
	diff := policy.Diff(before, pol)
	if len(diff) == 0 && prevHash != "" {
		diff = []string{"policy rewritten without a change of settings"}
	}
	if actor != "" {
		ctx = inventory.WithActor(ctx, actor)
	}
	if err := h.store.RecordPolicy(ctx, pol.Hash(), string(yaml), protocol.Clip(strings.Join(diff, "; "), 4000), h.now()); err != nil {
		return nil, err
	}
	h.policy.Store(pol)
	h.reclassify(ctx, pol)
	return diff, nil
}

// reclassify stores every device's class under pol, which is in force (inventory.Reclassify,
// issue 14): one batched pass per policy put in force — at the hub's start and at each
// change — that writes only the devices whose class was chosen under other classes (none
// when the change left the classes alone, policy.ClassHash). A failure leaves those classes
// stale, which their readers choose themselves: it is logged, and the policy stays in force.
func (h *Hub) reclassify(ctx context.Context, pol *policy.Policy) {
	n, err := h.store.Reclassify(ctx, pol.ClassHash(), func(s inventory.ClassSubject) string {
		c, _ := pol.ClassFor(policy.Subject{DeviceID: s.ID, Family: s.Family, Tags: s.Tags})
		return c.Name
	})
	if err != nil {
		h.log.Error("device classes under the policy in force", "written", n, "err", err)
		return
	}
	if n > 0 {
		h.log.Info("device classes chosen under the policy in force", "devices", n)
	}
}

// ReloadPolicy re-reads the policy file and applies it (`hearth-gateway policy reload`); the
// actor recorded is the context's (inventory.WithActor).
func (h *Hub) ReloadPolicy(ctx context.Context) ([]string, error) {
	pol, err := h.loadPolicy()
	if err != nil {
		return nil, err
	}
	diff, err := h.applyPolicy(ctx, pol, "")
	if err != nil || len(diff) == 0 {
		return diff, err
	}
	h.policyChanged(diff)
	return diff, nil
}

// ApplyPolicy puts a policy given as YAML in force (policy/apply, an approved policy change):
// it is checked, written to the policy file in force (DATA/policy.yaml when none is
// configured) atomically, so a restart keeps it, and applied as ReloadPolicy applies a file.
func (h *Hub) ApplyPolicy(ctx context.Context, yaml []byte) ([]string, error) {
	pol, err := policy.Parse(yaml)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	path := h.policyPath()
	if path == "" {
		path = filepath.Join(h.cfg.DataDir, "policy.yaml")
	}
	if err := atomicfile.WriteFile(path, yaml, 0o600); err != nil {
		return nil, fmt.Errorf("write policy file: %w", err)
	}
	if h.cfg.LeafLifetime != 0 {
		if err := setDefaultLifetime(pol, h.cfg.LeafLifetime); err != nil {
			return nil, err
		}
	}
	diff, err := h.applyPolicy(ctx, pol, "")
	if err != nil || len(diff) == 0 {
		return diff, err
	}
	h.policyChanged(diff)
	return diff, nil
}

// policyChanged follows a change of the policy in force.
func (h *Hub) policyChanged(diff []string) {
	h.renewal.Kick()
	h.view.Resync() // every renewal window may have moved, and "expiring" with it
	h.notify(protocol.Event{V: protocol.Version, Type: protocol.EventPolicyChanged, Time: h.now().UTC(),
		Message: protocol.ClipText(fmt.Sprintf("policy changed: %s", strings.Join(diff, "; ")))})
}

// approvedPolicy is the policy to start with: pol, the file's, unless change approval is on
// and the file differs from the policy last in force, which then stays in force: an edited
// file goes through policy propose like any other change, and a restart does not bypass it.
func (h *Hub) approvedPolicy(ctx context.Context, pol *policy.Policy) (*policy.Policy, error) {
	if !h.cfg.ChangeApproval {
		return pol, nil
	}
	hash, yaml, err := h.store.PolicyInForce(ctx)
	if err != nil || hash == "" || hash == pol.Hash() {
		return pol, err
	}
	kept, err := policy.Parse([]byte(yaml))
	if err != nil {
		return nil, fmt.Errorf("policy in force: %w", err)
	}
	h.log.Warn("the policy file differs from the approved policy in force, which stays: propose the file (hearth-gateway policy propose)",
		"file", h.policyPath(), "in_force", hash, "file_hash", pol.Hash(), "changes", strings.Join(policy.Diff(kept, pol), "; "))
	return kept, nil
}
