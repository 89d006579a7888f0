package fleetview

import (
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/hass"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/monitor"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

// flush does w: a resync reads every device in batches; otherwise only w.ids are loaded, in
// one batched query. Then the summary is published. A device that publishes badly is logged
// and retried at the next flush; an error means the inventory could not be read.
func (v *View) flush(ctx context.Context, w work) error {
	now, pol := v.cfg.Now(), v.cfg.Policy()
	if w.resync {
		if err := v.resyncAll(ctx, now, pol); err != nil {
			return err
		}
		if !v.complete && v.ha != nil {
			v.ha.Complete()
		}
		v.complete = true
	} else if len(w.ids) > 0 {
		recs, err := v.cfg.Store.DeviceRecords(ctx, w.ids)
		if err != nil {
			return err
		}
		found := make(map[string]bool, len(recs))
		for _, r := range recs {
			found[r.Device.ID] = true
			v.apply(r, now, pol)
		}
		for _, id := range w.ids {
			if !found[id] {
				v.remove(id)
			}
		}
	}
	return v.publishSummary(ctx, now)
}

// resyncAll judges and publishes every device, and forgets those that are gone.
func (v *View) resyncAll(ctx context.Context, now time.Time, pol *policy.Policy) error {
	seen := make(map[string]bool, len(v.known))
	after := ""
	for {
		page, err := v.cfg.Store.DevicePage(ctx, inventory.DeviceFilter{}, after, inventory.MaxBatch)
		if err != nil {
			return err
		}
		for _, r := range page {
			seen[r.Device.ID] = true
			v.apply(r, now, pol)
		}
		if len(page) < inventory.MaxBatch {
			break
		}
		after = page[len(page)-1].Device.ID
	}
	for _, id := range slices.Collect(maps.Keys(v.known)) {
		if !seen[id] {
			v.remove(id)
		}
	}
	return nil
}

// apply judges one device, publishes its state if it changed, updates Home Assistant and
// the problem counts, and schedules its next review.
func (v *View) apply(r inventory.DeviceRecord, now time.Time, pol *policy.Policy) {
	d := r.Device
	verdict := monitor.Judge(d, r.Active, pol, now)
	j := v.known[d.ID]
	if j == nil {
		j = &judged{}
		v.known[d.ID] = j
	} else {
		v.devices.add(j.dev, j.on, -1)
	}
	j.dev, j.on = d.State, d.Online
	v.devices.add(j.dev, j.on, +1)
	v.count(j.codes, -1)
	j.codes, j.until = verdict.Codes(), verdict.Until
	v.count(j.codes, +1)
	v.reviews.add(d.ID, j.until)

	if err := protocol.ValidateDeviceID(d.ID); err != nil {
		// Not a topic level the protocol allows (the inventory holds what manual imports
		// gave it): the device stays in the counts and in Home Assistant, without a topic.
		v.cfg.Logger.Debug("device id cannot name a bridge topic", "device", d.ID, "err", err)
	} else if err := v.publishDevice(monitor.SummaryOf(d, r.Active, verdict), j); err != nil {
		v.cfg.Logger.Warn("publish device state", "device", d.ID, "err", err)
		v.DeviceChanged(d.ID) // next flush
	}
	if v.ha != nil {
		v.ha.UpdateDevice(haDevice(d, r.Active, verdict))
	}
	if v.cfg.Observer != nil {
		v.cfg.Observer.Judged(r, verdict, pol, now)
	}
}

// publishDevice publishes the retained state of one device unless the broker already has it.
func (v *View) publishDevice(s protocol.DeviceSummary, j *judged) error {
	b, err := protocol.Encode(&protocol.BridgeDevice{V: protocol.Version, DeviceSummary: s})
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	sum := sha256.Sum256(b)
	if sum == j.state {
		return nil
	}
	if err := v.cfg.Publish(v.cfg.Topics.BridgeDevice(s.ID), b, true); err != nil {
		return err
	}
	j.state = sum
	return nil
}

// remove forgets a device that left the inventory: its topic is cleared and its entities
// removed. A device the View never published needs nothing: the hub's broker keeps no
// retained message across restarts, and Home Assistant's broker's are cleared by the
// publisher once it is complete.
func (v *View) remove(id string) {
	j, ok := v.known[id]
	if !ok {
		return
	}
	if j.state != ([32]byte{}) {
		if err := v.cfg.Publish(v.cfg.Topics.BridgeDevice(id), nil, true); err != nil {
			v.cfg.Logger.Warn("clear device state", "device", id, "err", err)
			v.DeviceChanged(id) // next flush
			return
		}
	}
	v.count(j.codes, -1)
	v.devices.add(j.dev, j.on, -1)
	delete(v.known, id)
	if v.ha != nil {
		v.ha.RemoveDevice(id)
	}
	if v.cfg.Observer != nil {
		v.cfg.Observer.Removed(id)
	}
}

// count adds delta to the counts of codes.
func (v *View) count(codes []string, delta int) {
	if len(codes) == 0 {
		return
	}
	v.problems += delta
	for _, c := range codes {
		if v.counts[c] += delta; v.counts[c] == 0 {
			delete(v.counts, c)
		}
	}
	if slices.Contains(codes, monitor.ProblemExpiring) || slices.Contains(codes, monitor.ProblemExpired) {
		v.expiring += delta
	}
}

// publishSummary publishes bridge/devices and the hub's Home Assistant state: totals, states
// and problem counts from the devices the View loaded, the success rate from an aggregate
// query over the last day's renewal attempts (not enrollments or imports).
func (v *View) publishSummary(ctx context.Context, now time.Time) error {
	c := v.devices
	s := protocol.BridgeDevices{V: protocol.Version, Total: c.total, Online: c.online, States: maps.Clone(c.states),
		WithProblems: v.problems, Problems: maps.Clone(v.counts), Updated: now.UTC().Truncate(time.Second)}
	b, err := protocol.Encode(&s)
	if err != nil {
		return fmt.Errorf("encode summary: %w", err)
	}
	if err := v.cfg.Publish(v.cfg.Topics.Bridge(protocol.KindBridgeDevices), b, true); err != nil {
		v.cfg.Logger.Warn("publish summary", "err", err)
	}
	if v.ha == nil {
		return nil
	}
	h := v.cfg.Hub
	if v.cfg.CADates != nil {
		h.CAExpires, h.RootExpires, h.BrokerExpires = v.cfg.CADates()
	}
	h.Online, h.Devices, h.ExpiringSoon, h.SuccessRate24h = v.cfg.Serving == nil || v.cfg.Serving(), c.total, v.expiring, math.NaN()
	if ok, failed, err := v.cfg.Store.RenewalStats(ctx, now.Add(-24*time.Hour)); err != nil {
		return err
	} else if ok+failed > 0 {
		h.SuccessRate24h = 100 * float64(ok) / float64(ok+failed)
	}
	if v.problems > 0 {
		h.Problem = fmt.Sprintf("%d device(s) need attention", v.problems)
	}
	v.ha.UpdateHub(h)
	return nil
}

// haDevice is what Home Assistant shows of a device, with the monitor's verdict.
func haDevice(d inventory.Device, active *inventory.Certificate, verdict monitor.Verdict) hass.Device {
	hd := hass.Device{ID: d.ID, Name: d.Name, Model: d.Model, Vendor: d.Vendor, Firmware: d.Firmware, LastSeen: d.LastSeen,
		Problems: verdict.Problems, Agent: d.Mechanism != inventory.MechanismManual, Online: d.Online,
		Family: d.Family, AgentVersion: d.Health.AgentVersion, Arch: d.Health.Arch}
	hd.Model = cmp.Or(d.Health.Model, d.Model)
	hd.Vendor = cmp.Or(d.Health.Manufacturer, d.Vendor)
	switch {
	case active != nil:
		hd.Expires = active.NotAfter
	case verdict.Has(monitor.ProblemRevoked):
		// Revoked: the certificate the device still holds keeps its date in Home Assistant.
		hd.Expires = d.Health.ReportedNotAfter
	}
	return hd
}
