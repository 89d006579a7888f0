package hub

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

// Settings keys of the policy in force, so a change is noticed and recorded across restarts.
const (
	settingPolicyHash = "policy/hash"
	settingPolicyYAML = "policy/yaml"
)

// EventPolicyChanged is the audit event of a policy change: who, when, and the difference.
const EventPolicyChanged = "policy.changed"

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

// applyPolicy puts pol in force and, when it differs from the policy recorded last, appends
// an audit event listing the differences. New settings apply from the next issuance and the
// next scheduler pass; certificates already issued keep their lifetime.
func (h *Hub) applyPolicy(ctx context.Context, pol *policy.Policy, actor string) ([]string, error) {
	yaml, err := pol.Marshal()
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	var before *policy.Policy
	prevHash, err := h.store.Setting(ctx, settingPolicyHash)
	switch {
	case errors.Is(err, inventory.ErrNotFound):
	case err != nil:
		return nil, err
	default:
		if prevHash == pol.Hash() {
			h.policy.Store(pol)
			return nil, nil
		}
		if prevYAML, err := h.store.Setting(ctx, settingPolicyYAML); err == nil {
			before, _ = policy.Parse([]byte(prevYAML))
		}
	}
	diff := policy.Diff(before, pol)
	if len(diff) == 0 && prevHash != "" {
		diff = []string{"policy rewritten without a change of settings"}
	}
	now := h.now()
	if actor != "" {
		ctx = inventory.WithActor(ctx, actor)
	}
	if _, err := h.store.AppendEvent(ctx, inventory.Event{Time: now, Kind: EventPolicyChanged,
		Message: truncate(strings.Join(diff, "; "), 4000), Data: map[string]string{"hash": pol.Hash(), "previous": prevHash}}); err != nil {
		return nil, err
	}
	if err := h.store.SetSetting(ctx, settingPolicyYAML, string(yaml)); err != nil {
		return nil, err
	}
	if err := h.store.SetSetting(ctx, settingPolicyHash, pol.Hash()); err != nil {
		return nil, err
	}
	h.policy.Store(pol)
	return diff, nil
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
	h.renewal.Kick()
	h.view.Resync() // every renewal window may have moved, and "expiring" with it
	h.notify(protocol.Event{V: protocol.Version, Type: EventPolicyChanged, Time: h.now().UTC(),
		Message: truncate(fmt.Sprintf("policy changed: %s", strings.Join(diff, "; ")), protocol.MaxTextLen)})
	return diff, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
