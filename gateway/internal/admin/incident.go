package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/rotation"
	"github.com/hearth-pki/hearth/protocol"
)

// Incident runbooks as operations (issue 12): each composes the hub's ordinary operations —
// revoke, a re-key campaign — lists who it affects (all a dry run does), and tells residents
// what is happening in plain language through an protocol.EventIncidentNotice.

// incidentOps maps the bridge operations to their incidents.
var incidentOps = map[string]protocol.Incident{
	"incident/device-lost":              protocol.IncidentDeviceLost,
	"incident/family-compromised":       protocol.IncidentFamilyCompromised,
	"incident/intermediate-compromised": protocol.IncidentIntermediateCompromised,
}

// Incident campaigns: one canary first (a family whose new keys fail stops at one device),
// and an abort once a fifth of the family failed.
const (
	incidentCanary     = 1
	incidentAbortAfter = 0.2
)

// incidents remembers, per family, when its latest family-compromised incident started:
// a certificate of the family issued before that is suspect and is revoked when the device
// commits a new one. Loaded from the stored campaigns on first use, so it survives restarts.
type incidents struct {
	mu      sync.Mutex
	loaded  bool
	started map[string]time.Time // family → start of its latest incident campaign
}

func (s *Service) incident(ctx context.Context, inc protocol.Incident, payload []byte) (any, error) {
	var r protocol.IncidentRequest
	if err := json.Unmarshal(payload, &r); err != nil {
		return nil, fmt.Errorf("incident/%s: %w", inc, err)
	}
	switch inc {
	case protocol.IncidentDeviceLost:
		return s.DeviceLost(ctx, r.ID, r.DryRun)
	case protocol.IncidentIntermediateCompromised:
		return s.IntermediateCompromised(ctx, r.DryRun)
	default:
		return s.FamilyCompromised(ctx, r.Family, r.DryRun)
	}
}

// displayName is how residents know a device: its name, else its id.
func displayName(d inventory.Device) string {
	if d.Name != "" {
		return d.Name
	}
	return d.ID
}

// DeviceLost runs the device-lost runbook: every certificate of the device revoked
// (keyCompromise), its live session dropped, the device quarantined until it is enrolled
// again with a new token. A dry run returns the plan and changes nothing.
func (s *Service) DeviceLost(ctx context.Context, id string, dryRun bool) (protocol.IncidentPlan, error) {
	d, err := s.device(ctx, id)
	if err != nil {
		return protocol.IncidentPlan{}, err
	}
	dev := protocol.IncidentDevice{ID: d.ID, Name: d.Name, Online: d.Online,
		Action: "revoke every certificate (keyCompromise), drop its session, quarantine until enrolled again"}
	if c := s.active(ctx, id); c != nil {
		dev.Serial = c.Serial
	}
	plan := protocol.IncidentPlan{Incident: protocol.IncidentDeviceLost, DryRun: dryRun, Devices: []protocol.IncidentDevice{dev},
		Notice: fmt.Sprintf("%s was reported lost or stolen, so the hub no longer trusts it: it stops working until someone sets it up again.",
			capitalize(displayName(d)))}
	if dryRun {
		return plan, nil
	}
	out, err := s.Revoke(ctx, id, "", inventory.Revocation{Reason: protocol.RevokeKeyCompromise, Note: "keyCompromise: device reported lost"})
	if err != nil {
		return protocol.IncidentPlan{}, err
	}
	plan.Revoked = out.Revoked
	return plan, s.announce(ctx, plan, id, "")
}

// FamilyCompromised runs the family-compromised runbook: a re-key campaign over every agent
// device of the family (one canary, abort at 20 % failed, under the scheduler's rate), and,
// from its start on, each device's previous certificate revoked (keyCompromise) the moment it
// commits the new one (Committed). A dry run returns the devices the campaign would take.
func (s *Service) FamilyCompromised(ctx context.Context, family string, dryRun bool) (protocol.IncidentPlan, error) {
	if family == "" {
		return protocol.IncidentPlan{}, errors.New("incident/family-compromised: a family is required")
	}
	if s.cfg.Scheduler == nil {
		return protocol.IncidentPlan{}, errors.New("incident/family-compromised needs the renewal scheduler")
	}
	now := s.cfg.Now().UTC().Truncate(time.Second)
	c := protocol.Campaign{ID: incidentCampaignID(family, now), Selector: protocol.CampaignSelector{Family: family},
		Action: protocol.ActionRekey, Canary: incidentCanary, AbortAfter: incidentAbortAfter}
	picked, err := s.cfg.Scheduler.PlanCampaign(ctx, c)
	if err != nil {
		return protocol.IncidentPlan{}, err
	}
	devs, err := s.cfg.Store.Devices(ctx)
	if err != nil {
		return protocol.IncidentPlan{}, internal(err)
	}
	byID := make(map[string]inventory.Device, len(devs))
	for _, d := range devs {
		if d.Family == family {
			byID[d.ID] = d
		}
	}
	plan := protocol.IncidentPlan{Incident: protocol.IncidentFamilyCompromised, DryRun: dryRun, Devices: []protocol.IncidentDevice{}}
	for _, p := range picked {
		d := byID[p.DeviceID]
		action := "re-key; " + p.Serial + " revoked when it commits"
		if p.Canary {
			action = "canary: " + action
		}
		plan.Devices = append(plan.Devices, protocol.IncidentDevice{ID: p.DeviceID, Name: d.Name, Online: d.Online, Serial: p.Serial, Action: action})
	}
	plan.Notice = fmt.Sprintf("The %s devices (%d) are getting new keys and certificates because their old keys may have leaked; "+
		"each may drop off for a few seconds while it switches.", family, len(plan.Devices))
	if dryRun {
		return plan, nil
	}
	// Remember the incident before the first device can commit; forget it again if the
	// campaign does not start.
	s.incidents.mu.Lock()
	if s.incidents.started == nil {
		s.incidents.started = map[string]time.Time{}
	}
	prev, had := s.incidents.started[family]
	s.incidents.started[family] = now
	s.incidents.mu.Unlock()
	st, err := s.cfg.Scheduler.StartCampaign(ctx, c)
	if err != nil {
		s.incidents.mu.Lock()
		if had {
			s.incidents.started[family] = prev
		} else {
			delete(s.incidents.started, family)
		}
		s.incidents.mu.Unlock()
		return protocol.IncidentPlan{}, err
	}
	plan.Campaign = st.ID
	return plan, s.announce(ctx, plan, "", family)
}

// IntermediateCompromised runs the intermediate-compromised runbook: an intermediate
// rotation (a new intermediate in force, a re-key campaign over every device, one canary,
// abort at 20 % failed), and once no device uses the old intermediate it is retired and
// revoked on the root's CRL (keyCompromise). A dry run lists the devices the campaign would
// take and checks that the passphrase opens the CA's keys.
func (s *Service) IntermediateCompromised(ctx context.Context, dryRun bool) (protocol.IncidentPlan, error) {
	if s.cfg.Rotation == nil || s.cfg.Scheduler == nil {
		return protocol.IncidentPlan{}, errors.New("incident/intermediate-compromised needs the renewal scheduler and the rotation")
	}
	res, err := s.cfg.Rotation.Rotate(ctx, rotation.Request{CARotateRequest: protocol.CARotateRequest{DryRun: dryRun}, Incident: true})
	if err != nil {
		return protocol.IncidentPlan{}, err
	}
	devs, err := s.cfg.Store.Devices(ctx)
	if err != nil {
		return protocol.IncidentPlan{}, internal(err)
	}
	byID := make(map[string]inventory.Device, len(devs))
	for _, d := range devs {
		byID[d.ID] = d
	}
	rot := res.Rotation
	plan := protocol.IncidentPlan{Incident: protocol.IncidentIntermediateCompromised, DryRun: dryRun, Devices: []protocol.IncidentDevice{},
		Campaign: rot.Campaign, Rotation: &rot}
	if dryRun {
		plan.Campaign = ""
	}
	for _, p := range res.Devices {
		d := byID[p.DeviceID]
		action := "re-key onto the new intermediate; " + p.Serial + " stops working once every device moved"
		if p.Canary {
			action = "canary: " + action
		}
		plan.Devices = append(plan.Devices, protocol.IncidentDevice{ID: p.DeviceID, Name: d.Name, Online: d.Online, Serial: p.Serial, Action: action})
	}
	plan.Notice = fmt.Sprintf("The hub is replacing the authority that vouches for your devices, because its key may have leaked. "+
		"Each of the %d devices gets a new certificate and may drop off for a few seconds while it switches; nothing else changes for you.",
		len(plan.Devices))
	if dryRun {
		return plan, nil
	}
	s.cfg.Changed()
	return plan, s.announce(ctx, plan, "", "")
}

// Committed is told by the device state machine that a device committed a new certificate
// in place of previous. If the device's family is under a family-compromised incident and
// previous was issued before it started, previous is revoked (keyCompromise) at once: the
// leaked key stops working as soon as the device no longer needs it. It is one or two
// inventory reads per commit, whatever the fleet's size, and none while no family was ever
// under an incident (issue 11: a read per commit is CPU every renewal pays).
func (s *Service) Committed(ctx context.Context, deviceID, previous string) {
	if previous == "" {
		return
	}
	if some, err := s.anyIncident(ctx); err == nil && !some {
		return
	}
	d, err := s.cfg.Store.Subject(ctx, deviceID)
	if err != nil || d.Family == "" {
		return
	}
	since, ok, err := s.incidentSince(ctx, d.Family)
	if err != nil {
		s.cfg.Logger.Error("incident campaigns not read; the previous certificate is not revoked", "device", deviceID, "serial", previous, "err", err)
		return
	}
	if !ok {
		return
	}
	// The inventory keeps times to the second: a certificate issued in the incident's first
	// second counts as suspect. The error is on the safe side, and harmless: it is revoked
	// only once superseded.
	old, err := s.cfg.Store.Certificate(ctx, previous)
	if err != nil || !old.CreatedAt.Before(since.Add(time.Second)) || old.Status == inventory.StatusRevoked {
		return
	}
	now := s.cfg.Now()
	rv := inventory.Revocation{Reason: protocol.RevokeKeyCompromise, Note: "keyCompromise: family " + d.Family + " re-keyed after a compromise"}
	if _, err := s.cfg.Store.RevokeCertificate(ctx, deviceID, previous, rv, now); err != nil {
		s.cfg.Logger.Error("previous certificate of a compromised family not revoked", "device", deviceID, "serial", previous, "err", err)
		return
	}
	s.cfg.Revoked(ctx)
	s.cfg.Notify(protocol.Event{V: protocol.Version, Type: protocol.EventCertRevoked, Time: now.UTC(), DeviceID: deviceID,
		Message: fmt.Sprintf("certificate %s revoked: the device committed its new key and family %s is compromised", previous, d.Family),
		Data:    map[string]string{"serial": previous, "reason": string(protocol.RevokeKeyCompromise)}})
	s.cfg.DeviceChanged(deviceID)
}

// incidentSince returns when the latest family-compromised incident of family started.
func (s *Service) incidentSince(ctx context.Context, family string) (time.Time, bool, error) {
	s.incidents.mu.Lock()
	defer s.incidents.mu.Unlock()
	if err := s.loadIncidents(ctx); err != nil {
		return time.Time{}, false, err
	}
	t, ok := s.incidents.started[family]
	return t, ok, nil
}

// anyIncident reports whether any family had a family-compromised incident.
func (s *Service) anyIncident(ctx context.Context) (bool, error) {
	s.incidents.mu.Lock()
	defer s.incidents.mu.Unlock()
	if err := s.loadIncidents(ctx); err != nil {
		return false, err
	}
	return len(s.incidents.started) > 0, nil
}

// loadIncidents reads the incidents from the stored campaigns on first use; the caller
// holds s.incidents.mu.
func (s *Service) loadIncidents(ctx context.Context) error {
	if !s.incidents.loaded {
		camps, err := s.cfg.Store.Campaigns(ctx)
		if err != nil {
			return err
		}
		if s.incidents.started == nil {
			s.incidents.started = map[string]time.Time{}
		}
		for _, c := range camps {
			if protocol.IsIncidentCampaign(c.ID) && c.Family != "" && c.Started.After(s.incidents.started[c.Family]) {
				s.incidents.started[c.Family] = c.Started
			}
		}
		s.incidents.loaded = true
	}
	return nil
}

// announce tells residents: an incident.notice on bridge/event and in the audit log.
func (s *Service) announce(ctx context.Context, plan protocol.IncidentPlan, deviceID, family string) error {
	now := s.cfg.Now().UTC().Truncate(time.Second)
	data := map[string]string{"incident": string(plan.Incident), "devices": strconv.Itoa(len(plan.Devices))}
	if family != "" {
		data["family"] = family
	}
	if plan.Campaign != "" {
		data["campaign"] = plan.Campaign
	}
	if _, err := s.cfg.Store.AppendEvent(ctx, inventory.Event{Time: now, Kind: protocol.EventIncidentNotice, DeviceID: deviceID,
		Message: plan.Notice, Data: data}); err != nil {
		return internal(err)
	}
	s.cfg.Notify(protocol.Event{V: protocol.Version, Type: protocol.EventIncidentNotice, Time: now, DeviceID: deviceID,
		Message: plan.Notice, Data: data})
	s.cfg.Changed()
	return nil
}

// incidentCampaignID names an incident's campaign: protocol.IncidentCampaignPrefix, the
// family in campaign-id characters (at most 32), and the start time.
func incidentCampaignID(family string, now time.Time) string {
	f := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			return r
		}
		return '-'
	}, family)
	if len(f) > 32 {
		f = f[:32]
	}
	return protocol.IncidentCampaignPrefix + f + "-" + strings.ToLower(now.UTC().Format("20060102T150405Z"))
}

// capitalize upper-cases the first letter of a sentence's subject.
func capitalize(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
