package renewal

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

// ErrInvalidCampaign reports a campaign StartCampaign refuses; the message says why.
var ErrInvalidCampaign = errors.New("invalid campaign")

// ErrCampaignExists reports a campaign id already used.
var ErrCampaignExists = errors.New("campaign already exists")

// campaignOf returns the definition of a stored campaign.
func campaignOf(c inventory.Campaign) protocol.Campaign {
	return protocol.Campaign{ID: c.ID, Selector: protocol.CampaignSelector{Family: c.Family, Class: c.Class, All: c.All}, Rate: c.Rate,
		Canary: c.Canary, AbortAfter: c.AbortAfter, Action: protocol.Action(c.Action)}
}

// storedCampaign returns c as the inventory stores it, in state running from started.
func storedCampaign(c protocol.Campaign, started time.Time) inventory.Campaign {
	return inventory.Campaign{ID: c.ID, Family: c.Selector.Family, Class: c.Selector.Class, All: c.Selector.All,
		Rate: c.Rate, Canary: c.Canary, AbortAfter: c.AbortAfter, Action: string(c.Action),
		State: inventory.CampaignRunning, Started: started}
}

// statusOf returns the progress of a campaign read with its devices.
func statusOf(r *inventory.CampaignRecord) protocol.CampaignStatus {
	st := protocol.CampaignStatus{Campaign: campaignOf(r.Campaign), State: protocol.CampaignState(r.State), Started: r.Started, Ended: r.Ended, Cause: r.Cause,
		Total: len(r.Devices)}
	for _, e := range r.Devices {
		if !e.CommandedAt.IsZero() {
			st.Commanded++
		}
		switch e.Stage {
		case inventory.StagePending:
			st.Pending++
		case inventory.StageCommanded:
			st.InFlight++
		case inventory.StageCommitted:
			st.Committed++
		case inventory.StageFailed:
			st.Failed++
		}
	}
	return st
}

// progress returns st's counts, to compare two moments of a campaign.
func progress(st protocol.CampaignStatus) [6]int {
	return [6]int{st.Total, st.Commanded, st.InFlight, st.Committed, st.Failed, st.Pending}
}

// validateCampaign checks c and fills its defaults.
func validateCampaign(c *protocol.Campaign) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: %s", ErrInvalidCampaign, c.ID, fmt.Sprintf(format, args...))
	}
	if c.ID == "" || len(c.ID) > 64 {
		return bad("the id must have 1 to 64 characters")
	}
	for _, r := range c.ID {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return bad("the id may only hold letters, digits, '.', '_' and '-'")
		}
	}
	sel := c.Selector
	switch {
	case sel.All && (sel.Family != "" || sel.Class != ""):
		return bad("a selector is either all or a family and/or class")
	case !sel.All && sel.Family == "" && sel.Class == "":
		return bad("the selector chooses nothing: set all, family or class")
	case !(c.Rate >= 0) || math.IsInf(c.Rate, 0):
		return bad("rate %v is not a number of commands per minute", c.Rate)
	case c.Canary < 0:
		return bad("canary %d is negative", c.Canary)
	case !(c.AbortAfter >= 0 && c.AbortAfter <= 1):
		return bad("abort_after %v is not a fraction between 0 and 1", c.AbortAfter)
	}
	switch c.Action {
	case "":
		c.Action = protocol.ActionRenew
	case protocol.ActionRenew, protocol.ActionRekey:
	default:
		return bad("action %q is not renew or rekey", c.Action)
	}
	return nil
}

// StartCampaign selects the campaign's devices (agent devices with an active certificate,
// canaries chosen among those online first), stores the campaign with its devices and its
// start event in one transaction, and kicks a pass, which commands its first devices. It
// returns ErrInvalidCampaign or ErrCampaignExists (wrapped) for a campaign it refuses, and
// ErrInvalidCampaign when the selector matches no device.
func (s *Scheduler) StartCampaign(ctx context.Context, c protocol.Campaign) (protocol.CampaignStatus, error) {
	if err := s.check(); err != nil {
		return protocol.CampaignStatus{}, err
	}
	if err := validateCampaign(&c); err != nil {
		return protocol.CampaignStatus{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	entries, err := s.selectDevices(ctx, c)
	if err != nil {
		return protocol.CampaignStatus{}, fmt.Errorf("start campaign %q: %w", c.ID, err)
	}
	if len(entries) == 0 {
		return protocol.CampaignStatus{}, fmt.Errorf("%w %q: the selector matches no agent device with an active certificate", ErrInvalidCampaign, c.ID)
	}
	now := s.now()
	rec := &inventory.CampaignRecord{Campaign: storedCampaign(c, now), Devices: entries}
	st := statusOf(rec)
	e := inventory.Event{Time: now, Kind: protocol.EventCampaignStarted,
		Message: fmt.Sprintf("campaign %s started: %s of %d devices, %d canaries", c.ID, c.Action, st.Total, min(c.Canary, st.Total)),
		Data:    map[string]string{"id": c.ID, "action": string(c.Action), "total": strconv.Itoa(st.Total)}}
	err = s.cfg.Store.CreateCampaign(ctx, *rec, e)
	if errors.Is(err, inventory.ErrDuplicate) {
		return protocol.CampaignStatus{}, fmt.Errorf("start campaign %q: %w", c.ID, ErrCampaignExists)
	}
	if err != nil {
		return protocol.CampaignStatus{}, fmt.Errorf("start campaign %q: %w", c.ID, err)
	}
	s.notify(e)
	s.cfg.Changed()
	s.Kick()
	return st, nil
}

// PlanCampaign returns the devices campaign c would command, canaries first, without
// starting it or changing anything: a dry run shows them before anyone commits to it.
func (s *Scheduler) PlanCampaign(ctx context.Context, c protocol.Campaign) ([]inventory.CampaignDevice, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if err := validateCampaign(&c); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.selectDevices(ctx, c)
}

// selectDevices returns the campaign's devices, pending, canaries first. A family is
// selected by the inventory's query; a class needs the policy, so every device is read.
func (s *Scheduler) selectDevices(ctx context.Context, c protocol.Campaign) ([]inventory.CampaignDevice, error) {
	recs, err := s.allDevices(ctx, inventory.DeviceFilter{Family: c.Selector.Family})
	if err != nil {
		return nil, err
	}
	pol := s.policy()
	type pick struct {
		e      inventory.CampaignDevice
		online bool
	}
	var picks []pick
	for _, r := range recs {
		d := r.Device
		if r.Active == nil || !commandable(d) {
			continue
		}
		serial := r.Active.Serial
		sel := c.Selector
		if sel.Family != "" && d.Family != sel.Family {
			continue
		}
		if sel.Class != "" {
			if cl, _ := pol.ClassFor(policy.Subject{DeviceID: d.ID, Family: d.Family, Tags: d.Tags}); cl.Name != sel.Class {
				continue
			}
		}
		online := d.Online
		if s.cfg.Online != nil {
			online = s.cfg.Online(d.ID)
		}
		picks = append(picks, pick{inventory.CampaignDevice{DeviceID: d.ID, Serial: serial,
			CampaignStage: inventory.CampaignStage{Stage: inventory.StagePending}}, online})
	}
	// Canaries: the first devices by id among those online, then among the others; a
	// canary that never connects would hold the campaign.
	byCanary := slices.Clone(picks)
	slices.SortStableFunc(byCanary, func(a, b pick) int { return cmp.Compare(btoi(!a.online), btoi(!b.online)) })
	canary := map[string]bool{}
	for _, p := range byCanary[:min(c.Canary, len(byCanary))] {
		canary[p.e.DeviceID] = true
	}
	out := make([]inventory.CampaignDevice, 0, len(picks))
	for pass := range 2 {
		for _, p := range picks {
			if canary[p.e.DeviceID] == (pass == 0) {
				p.e.Canary = canary[p.e.DeviceID]
				out = append(out, p.e)
			}
		}
	}
	return out, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Campaigns returns every campaign with its progress, oldest first. The counts come from
// one aggregate query, not from reading every device of every campaign.
func (s *Scheduler) Campaigns(ctx context.Context) ([]protocol.CampaignStatus, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	sums, err := s.cfg.Store.Campaigns(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]protocol.CampaignStatus, len(sums))
	for i, c := range sums {
		out[i] = protocol.CampaignStatus{Campaign: campaignOf(c.Campaign), State: protocol.CampaignState(c.State), Started: c.Started, Ended: c.Ended,
			Cause: c.Cause, Total: c.Total, Commanded: c.Commanded, InFlight: c.InFlight, Committed: c.Committed,
			Failed: c.Failed, Pending: c.Pending}
	}
	return out, nil
}
