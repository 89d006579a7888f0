package renewal

import (
	"cmp"
	"context"
	"encoding/json"
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

// Settings keys of the campaign records.
const (
	campaignIndexKey  = "campaigns" // JSON list of campaign ids, oldest first
	campaignKeyPrefix = "campaign/" // + id: the campaign's record
)

// Stages of a device in a campaign.
const (
	stagePending   = "pending"
	stageCommanded = "commanded"
	stageCommitted = "committed"
	stageFailed    = "failed"
)

// campaignRecord is a campaign as stored.
type campaignRecord struct {
	Campaign protocol.Campaign      `json:"campaign"`
	State    protocol.CampaignState `json:"state"`
	Started  time.Time              `json:"started"`
	Ended    time.Time              `json:"ended,omitzero"`
	Cause    string                 `json:"cause,omitempty"`
	Devices  []campaignDevice       `json:"devices"` // canaries first
}

// campaignDevice is one device of a campaign.
type campaignDevice struct {
	ID          string    `json:"id"`
	Serial      string    `json:"serial"` // the active certificate when the campaign started
	Canary      bool      `json:"canary,omitempty"`
	Stage       string    `json:"stage"`
	CommandedAt time.Time `json:"commanded_at,omitzero"`
	CommandID   string    `json:"command_id,omitempty"`
	Failures    int       `json:"failures,omitempty"` // the device's failure count when commanded
	Cause       string    `json:"cause,omitempty"`
}

// status returns the record's progress.
func (r *campaignRecord) status() protocol.CampaignStatus {
	st := protocol.CampaignStatus{Campaign: r.Campaign, State: r.State, Started: r.Started, Ended: r.Ended, Cause: r.Cause,
		Total: len(r.Devices)}
	for _, e := range r.Devices {
		if !e.CommandedAt.IsZero() {
			st.Commanded++
		}
		switch e.Stage {
		case stagePending:
			st.Pending++
		case stageCommanded:
			st.InFlight++
		case stageCommitted:
			st.Committed++
		case stageFailed:
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
// canaries chosen among those online first), stores the campaign and kicks a pass, which
// commands its first devices. It returns ErrInvalidCampaign or ErrCampaignExists (wrapped)
// for a campaign it refuses, and ErrInvalidCampaign when the selector matches no device.
func (s *Scheduler) StartCampaign(ctx context.Context, c protocol.Campaign) (protocol.CampaignStatus, error) {
	if err := s.check(); err != nil {
		return protocol.CampaignStatus{}, err
	}
	if err := validateCampaign(&c); err != nil {
		return protocol.CampaignStatus{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	store := s.cfg.Store
	if _, err := store.Setting(ctx, campaignKeyPrefix+c.ID); err == nil {
		return protocol.CampaignStatus{}, fmt.Errorf("start campaign %q: %w", c.ID, ErrCampaignExists)
	} else if !errors.Is(err, inventory.ErrNotFound) {
		return protocol.CampaignStatus{}, fmt.Errorf("start campaign %q: %w", c.ID, err)
	}
	entries, err := s.selectDevices(ctx, c)
	if err != nil {
		return protocol.CampaignStatus{}, fmt.Errorf("start campaign %q: %w", c.ID, err)
	}
	if len(entries) == 0 {
		return protocol.CampaignStatus{}, fmt.Errorf("%w %q: the selector matches no agent device with an active certificate", ErrInvalidCampaign, c.ID)
	}
	now := s.now()
	rec := &campaignRecord{Campaign: c, State: protocol.CampaignRunning, Started: now, Devices: entries}
	// The index first: an id listed without a record is skipped by Campaigns and may be
	// started again; a record without its index entry would be invisible.
	ids, err := s.campaignIDs(ctx)
	if err != nil {
		return protocol.CampaignStatus{}, fmt.Errorf("start campaign %q: %w", c.ID, err)
	}
	if !slices.Contains(ids, c.ID) {
		b, _ := json.Marshal(append(ids, c.ID))
		if err := store.SetSetting(ctx, campaignIndexKey, string(b)); err != nil {
			return protocol.CampaignStatus{}, fmt.Errorf("start campaign %q: %w", c.ID, err)
		}
	}
	if err := s.saveCampaign(ctx, rec); err != nil {
		return protocol.CampaignStatus{}, fmt.Errorf("start campaign %q: %w", c.ID, err)
	}
	st := rec.status()
	s.event(ctx, inventory.Event{Time: now, Kind: protocol.EventCampaignStarted,
		Message: fmt.Sprintf("campaign %s started: %s of %d devices, %d canaries", c.ID, c.Action, st.Total, min(c.Canary, st.Total)),
		Data:    map[string]string{"id": c.ID, "action": string(c.Action), "total": strconv.Itoa(st.Total)}}, true)
	s.cfg.Changed()
	s.Kick()
	return st, nil
}

// selectDevices returns the campaign's devices, canaries first.
func (s *Scheduler) selectDevices(ctx context.Context, c protocol.Campaign) ([]campaignDevice, error) {
	devs, err := s.cfg.Store.Devices(ctx)
	if err != nil {
		return nil, err
	}
	certs, err := s.cfg.Store.ExpiringBefore(ctx, farFuture)
	if err != nil {
		return nil, err
	}
	serials := map[string]string{}
	for _, cert := range certs {
		serials[cert.DeviceID] = cert.Serial
	}
	pol := s.policy()
	type pick struct {
		e      campaignDevice
		online bool
	}
	var picks []pick
	for _, d := range devs {
		serial, ok := serials[d.ID]
		if !ok || !commandable(d) {
			continue
		}
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
		picks = append(picks, pick{campaignDevice{ID: d.ID, Serial: serial, Stage: stagePending}, online})
	}
	// Canaries: the first devices by id among those online, then among the others; a
	// canary that never connects would hold the campaign.
	byCanary := slices.Clone(picks)
	slices.SortStableFunc(byCanary, func(a, b pick) int { return cmp.Compare(btoi(!a.online), btoi(!b.online)) })
	canary := map[string]bool{}
	for _, p := range byCanary[:min(c.Canary, len(byCanary))] {
		canary[p.e.ID] = true
	}
	out := make([]campaignDevice, 0, len(picks))
	for pass := range 2 {
		for _, p := range picks {
			if canary[p.e.ID] == (pass == 0) {
				p.e.Canary = canary[p.e.ID]
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

// Campaigns returns every campaign with its progress, oldest first.
func (s *Scheduler) Campaigns(ctx context.Context) ([]protocol.CampaignStatus, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	recs, err := s.readCampaigns(ctx, nil)
	if err != nil {
		return nil, err
	}
	out := make([]protocol.CampaignStatus, len(recs))
	for i, r := range recs {
		out[i] = r.status()
	}
	return out, nil
}

// campaignIDs reads the campaign index.
func (s *Scheduler) campaignIDs(ctx context.Context) ([]string, error) {
	v, err := s.cfg.Store.Setting(ctx, campaignIndexKey)
	if errors.Is(err, inventory.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	if err := json.Unmarshal([]byte(v), &ids); err != nil {
		return nil, fmt.Errorf("campaign index: %w", err)
	}
	return ids, nil
}

// readCampaigns reads the records of the indexed campaigns, skipping the ids skip holds.
func (s *Scheduler) readCampaigns(ctx context.Context, skip map[string]bool) ([]*campaignRecord, error) {
	ids, err := s.campaignIDs(ctx)
	if err != nil {
		return nil, err
	}
	var out []*campaignRecord
	for _, id := range ids {
		if skip[id] {
			continue
		}
		v, err := s.cfg.Store.Setting(ctx, campaignKeyPrefix+id)
		if errors.Is(err, inventory.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		r := &campaignRecord{}
		if err := json.Unmarshal([]byte(v), r); err != nil {
			return nil, fmt.Errorf("campaign %q: %w", id, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// saveCampaign stores a campaign's record.
func (s *Scheduler) saveCampaign(ctx context.Context, r *campaignRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.cfg.Store.SetSetting(ctx, campaignKeyPrefix+r.Campaign.ID, string(b))
}
