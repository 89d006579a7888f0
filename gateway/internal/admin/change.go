package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/authz"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

// Change approval (issue 15): an operation that needs a second admin (authz.NeedsApproval)
// is proposed, stored with its payload, shown (policy/diff), and runs only when another
// admin approves it; each step is an audit record with its actor. With approval off the
// same flow is available and the proposer may approve their own change.

// errSameAdmin refuses an approval by the change's own proposer (answered forbidden).
var errSameAdmin = errors.New("a change must be approved by another admin than its proposer")

// doChange runs the policy change and approval operations; ok is false for another op.
func (s *Service) doChange(ctx context.Context, op string, payload []byte) (_ any, ok bool, _ error) {
	switch op {
	case "policy/diff", "policy/propose", "policy/apply":
	case "change/propose", "change/approve", "change/reject", "change/list":
	default:
		return nil, false, nil
	}
	if strings.HasPrefix(op, "policy/") {
		var r protocol.PolicyChangeRequest
		if err := protocol.Decode(payload, &r); err != nil {
			return nil, true, err
		}
		switch op {
		case "policy/diff":
			d, err := s.policyDiff(ctx, r)
			return d, true, err
		case "policy/propose":
			c, err := s.proposePolicy(ctx, r)
			return c, true, err
		}
		out, err := s.applyPolicy(ctx, r)
		return out, true, err
	}
	var r protocol.ChangeRequest
	if err := protocol.Decode(payload, &r); err != nil {
		return nil, true, err
	}
	switch op {
	case "change/list":
		ps, err := s.cfg.Store.Proposals(ctx, 20)
		if err != nil {
			return nil, true, internal(err)
		}
		out := protocol.ChangeList{Changes: []protocol.Change{}}
		for _, p := range ps {
			out.Changes = append(out.Changes, changeOf(p, nil))
		}
		return out, true, nil
	case "change/propose":
		c, err := s.propose(ctx, r.Op, json.RawMessage(r.Payload), "", summaryOf(r.Op, r.Payload))
		return c, true, err
	case "change/approve":
		c, err := s.approve(ctx, r.ID)
		return c, true, err
	}
	c, err := s.reject(ctx, r.ID)
	return c, true, err
}

// target is the policy a request puts in force: its YAML, or with a canary class the policy in
// force with only that class's settings taken from the YAML.
func (s *Service) target(ctx context.Context, r protocol.PolicyChangeRequest) (*policy.Policy, error) {
	if r.ID != "" {
		p, err := s.proposal(ctx, r.ID)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(p.Content), &r); err != nil || p.Kind != "policy/apply" {
			return nil, fmt.Errorf("change %s is not a policy change", r.ID)
		}
	}
	if r.Policy == "" {
		return nil, errors.New("give the policy's YAML (policy) or an open change's id (id)")
	}
	next, err := policy.Parse([]byte(r.Policy))
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if r.Canary == "" {
		return next, nil
	}
	return canary(s.cfg.Policy(), next, r.Canary)
}

// canary returns cur with class name's settings taken from next: the change tried on that
// class alone. The class must exist in both, with the same matches.
func canary(cur, next *policy.Policy, name string) (*policy.Policy, error) {
	out, err := clone(cur)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(out.Classes, func(c policy.Class) bool { return c.Name == name })
	j := slices.IndexFunc(next.Classes, func(c policy.Class) bool { return c.Name == name })
	if i < 0 || j < 0 {
		return nil, fmt.Errorf("canary class %q must be in the policy in force and in the new one (have %v)", name, classNames(out))
	}
	c := next.Classes[j]
	if !reflect.DeepEqual(c.Match, out.Classes[i].Match) {
		return nil, fmt.Errorf("canary class %q: its matches change, so the change would move devices between classes; try it without --canary", name)
	}
	out.Classes[i] = c
	if err := out.Validate(); err != nil {
		return nil, fmt.Errorf("canary class %q: %w", name, err)
	}
	return out, nil
}

func clone(p *policy.Policy) (*policy.Policy, error) {
	b, err := p.Marshal()
	if err != nil {
		return nil, internal(err)
	}
	out, err := policy.Parse(b)
	if err != nil {
		return nil, internal(err)
	}
	return out, nil
}

func classNames(p *policy.Policy) []string {
	var out []string
	for _, c := range p.Classes {
		out = append(out, c.Name)
	}
	return out
}

// policyDiff shows what a policy change does: the settings, the devices whose class changes
// and how many devices are in a class whose settings change. It reads the inventory in
// batches; it runs on an admin's request, never per device event.
func (s *Service) policyDiff(ctx context.Context, r protocol.PolicyChangeRequest) (protocol.PolicyDiff, error) {
	next, err := s.target(ctx, r)
	if err != nil {
		return protocol.PolicyDiff{}, err
	}
	cur := s.cfg.Policy()
	out := protocol.PolicyDiff{Hash: next.Hash(), Changes: policy.Diff(cur, next), Moves: []protocol.DeviceMove{}, Canary: r.Canary}
	if out.Changes == nil {
		out.Changes = []string{}
	}
	changed := map[string]bool{}
	for _, c := range next.Classes {
		i := slices.IndexFunc(cur.Classes, func(b policy.Class) bool { return b.Name == c.Name })
		changed[c.Name] = i < 0 || !reflect.DeepEqual(cur.Classes[i], c)
	}
	after := ""
	for {
		page, err := s.cfg.Store.DevicePage(ctx, inventory.DeviceFilter{}, after, inventory.MaxBatch)
		if err != nil {
			return protocol.PolicyDiff{}, internal(err)
		}
		for _, rec := range page {
			d := rec.Device
			subj := policy.Subject{DeviceID: d.ID, Family: d.Family, Tags: d.Tags}
			from, _ := cur.ClassFor(subj)
			to, _ := next.ClassFor(subj)
			switch {
			case from.Name != to.Name:
				out.Moved++
				if len(out.Moves) < protocol.MaxListedMoves {
					out.Moves = append(out.Moves, protocol.DeviceMove{ID: d.ID, From: from.Name, To: to.Name})
				}
			case changed[to.Name]:
				out.Affected++
			}
		}
		if len(page) < inventory.MaxBatch {
			return out, nil
		}
		after = page[len(page)-1].Device.ID
	}
}

// applyPolicy puts a policy in force at once (policy/apply; with approval on, only through
// an approved change).
func (s *Service) applyPolicy(ctx context.Context, r protocol.PolicyChangeRequest) (protocol.PolicyReloaded, error) {
	if s.cfg.ApplyPolicy == nil {
		return protocol.PolicyReloaded{}, errors.New("policy changes are not available")
	}
	next, err := s.target(ctx, r)
	if err != nil {
		return protocol.PolicyReloaded{}, err
	}
	b, err := next.Marshal()
	if err != nil {
		return protocol.PolicyReloaded{}, internal(err)
	}
	diff, err := s.cfg.ApplyPolicy(ctx, b)
	if err != nil {
		return protocol.PolicyReloaded{}, err
	}
	return protocol.PolicyReloaded{Changed: append([]string{}, diff...)}, nil
}

// proposePolicy stores a policy change for approval: the whole policy it puts in force (the
// canary merge done now, against the policy in force now), its diff as the summary.
func (s *Service) proposePolicy(ctx context.Context, r protocol.PolicyChangeRequest) (protocol.Change, error) {
	next, err := s.target(ctx, r)
	if err != nil {
		return protocol.Change{}, err
	}
	b, err := next.Marshal()
	if err != nil {
		return protocol.Change{}, internal(err)
	}
	diff := policy.Diff(s.cfg.Policy(), next)
	if len(diff) == 0 {
		return protocol.Change{}, errors.New("the policy is the one in force: nothing to propose")
	}
	content, _ := json.Marshal(protocol.PolicyChangeRequest{Policy: string(b)})
	return s.propose(ctx, "policy/apply", content, r.Canary, strings.Join(diff, "; "))
}

func (s *Service) propose(ctx context.Context, op string, payload json.RawMessage, canaryClass, summary string) (protocol.Change, error) {
	p := principalFrom(ctx)
	if !authz.NeedsApproval(op) {
		return protocol.Change{}, fmt.Errorf("%s does not need approval: run it", op)
	}
	if op == "policy/reload" {
		// Approving a reload would apply whatever the file holds when approved, not what was
		// reviewed: the file's content is proposed instead.
		return protocol.Change{}, errors.New("propose the policy file itself (policy/propose, `hearth-gateway policy propose FILE`), not a reload")
	}
	if err := authz.Check(p, op); err != nil {
		return protocol.Change{}, err
	}
	if len(payload) == 0 {
		payload = json.RawMessage("{}")
	}
	if !json.Valid(payload) {
		return protocol.Change{}, errors.New("payload is not JSON")
	}
	now := s.cfg.Now().UTC().Truncate(time.Second)
	pr := inventory.Proposal{ID: newID("chg"), Kind: op, Content: string(payload),
		BaseHash: s.cfg.Policy().Hash(), Canary: canaryClass, Summary: protocol.Clip(summary, 4000), ProposedBy: p.Name, ProposedAt: now}
	if op == "policy/apply" {
		if next, err := s.target(ctx, protocol.PolicyChangeRequest{Policy: policyOf(payload)}); err == nil {
			pr.Hash = next.Hash()
		}
	}
	if err := s.cfg.Store.CreateProposal(ctx, pr); err != nil {
		return protocol.Change{}, internal(err)
	}
	pr.State = inventory.ProposalOpen
	return changeOf(pr, nil), nil
}

// approve runs an open change as its approver and closes it. With approval on the approver
// must be an admin other than the proposer; a policy change must still apply to the policy
// it was proposed against.
func (s *Service) approve(ctx context.Context, id string) (protocol.Change, error) {
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	p, err := s.proposal(ctx, id)
	if err != nil {
		return protocol.Change{}, err
	}
	if p.State != inventory.ProposalOpen {
		return protocol.Change{}, fmt.Errorf("change %s is already %s (by %s)", id, p.State, p.DecidedBy)
	}
	who := principalFrom(ctx)
	if err := authz.Check(who, p.Kind); err != nil {
		return protocol.Change{}, err
	}
	if s.cfg.ApprovalRequired && who.Name == p.ProposedBy {
		return protocol.Change{}, fmt.Errorf("%w: %s proposed %s", errSameAdmin, p.ProposedBy, id)
	}
	if p.Kind == "policy/apply" && p.BaseHash != s.cfg.Policy().Hash() {
		return protocol.Change{}, fmt.Errorf("change %s was proposed against policy %s, but %s is in force now: reject it and propose again",
			id, p.BaseHash, s.cfg.Policy().Hash())
	}
	data, err := s.do(ctx, p.Kind, []byte(p.Content))
	if err != nil {
		return protocol.Change{}, fmt.Errorf("change %s (%s): %w", id, p.Kind, err)
	}
	now := s.cfg.Now().UTC().Truncate(time.Second)
	if err := s.cfg.Store.DecideProposal(ctx, id, inventory.ProposalApplied, who.Name, now); err != nil {
		return protocol.Change{}, internal(err)
	}
	p.State, p.DecidedBy, p.DecidedAt = inventory.ProposalApplied, who.Name, now
	result, _ := json.Marshal(data)
	return changeOf(p, result), nil
}

// reject closes an open change without running it: any admin may, the proposer included
// (withdrawing it).
func (s *Service) reject(ctx context.Context, id string) (protocol.Change, error) {
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	who := principalFrom(ctx)
	now := s.cfg.Now().UTC().Truncate(time.Second)
	if _, err := s.proposal(ctx, id); err != nil {
		return protocol.Change{}, err
	}
	err := s.cfg.Store.DecideProposal(ctx, id, inventory.ProposalRejected, who.Name, now)
	if errors.Is(err, inventory.ErrProposalClosed) {
		return protocol.Change{}, fmt.Errorf("change %s: %w", id, err)
	}
	if err != nil {
		return protocol.Change{}, internal(err)
	}
	p, err := s.proposal(ctx, id)
	return changeOf(p, nil), err
}

func (s *Service) proposal(ctx context.Context, id string) (inventory.Proposal, error) {
	p, err := s.cfg.Store.Proposal(ctx, id)
	if errors.Is(err, inventory.ErrNotFound) {
		return p, &notFoundError{fmt.Sprintf("change %q does not exist (hearth-gateway change list)", id)}
	}
	if err != nil {
		return p, internal(err)
	}
	return p, nil
}

func changeOf(p inventory.Proposal, result json.RawMessage) protocol.Change {
	return protocol.Change{ID: p.ID, Op: p.Kind, State: p.State, Summary: p.Summary, Canary: p.Canary, ProposedBy: p.ProposedBy,
		ProposedAt: p.ProposedAt, DecidedBy: p.DecidedBy, DecidedAt: p.DecidedAt, Result: protocol.RawJSON(result)}
}

func policyOf(payload []byte) string {
	var r protocol.PolicyChangeRequest
	_ = json.Unmarshal(payload, &r)
	return r.Policy
}

func summaryOf(op string, payload []byte) string {
	return protocol.Clip(op+" "+string(payload), 400)
}
