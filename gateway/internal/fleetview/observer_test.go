package fleetview

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/monitor"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
)

// observed records what an Observer hears.
type observed struct {
	mu      sync.Mutex
	judged  map[string]int
	removed []string
}

func (o *observed) Judged(r inventory.DeviceRecord, _ monitor.Verdict, _ *policy.Policy, _ time.Time) {
	o.mu.Lock()
	o.judged[r.Device.ID]++
	o.mu.Unlock()
}

func (o *observed) Removed(id string) {
	o.mu.Lock()
	o.removed = append(o.removed, id)
	o.mu.Unlock()
}

func (o *observed) count(id string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.judged[id]
}

// TestObserverAndConnectivity: the Observer hears every device of the first flush and then
// only the one that changed; the hub's Connectivity follows Serving.
func TestObserverAndConnectivity(t *testing.T) {
	store, ids := fillFleet(t, 5)
	obs := &observed{judged: map[string]int{}}
	var serving atomic.Bool
	rec := newRecorder(nil, nil)
	v := New(Config{Store: store, Publish: rec.publish, Now: func() time.Time { return fleetNow }, Interval: time.Millisecond,
		Observer: obs, Serving: serving.Load})
	v.SetHomeAssistant(rec)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	defer func() { cancel(); <-done }()

	rec.await(t, 0, "the first flush", flushed(true))
	for _, id := range ids {
		if n := obs.count(id); n != 1 {
			t.Errorf("device %s judged %d times by the first flush, want 1", id, n)
		}
	}
	rec.mu.Lock()
	online := rec.hub.Online
	rec.mu.Unlock()
	if online {
		t.Errorf("hub Online = true while the broker does not serve")
	}

	serving.Store(true)
	mark := rec.mark()
	v.DeviceChanged(ids[0])
	rec.await(t, mark, "the hub's next state", func(calls []string) bool {
		for _, c := range calls {
			if c == "hub" {
				return true
			}
		}
		return false
	})
	rec.mu.Lock()
	online = rec.hub.Online
	rec.mu.Unlock()
	if !online {
		t.Errorf("hub Online = false while the broker serves")
	}
	if obs.count(ids[0]) != 2 || obs.count(ids[1]) != 1 {
		t.Errorf("after one change: %s judged %d times, %s %d; want 2 and 1", ids[0], obs.count(ids[0]), ids[1], obs.count(ids[1]))
	}
}

// TestHADeviceKeepsExpiryAfterRevocation: a quarantined device has no active certificate, but
// Home Assistant keeps showing the expiry of the one it holds; an imported device has no
// Renew button; the agent's device info is passed on.
func TestHADeviceKeepsExpiryAfterRevocation(t *testing.T) {
	held := fleetNow.Add(20 * 24 * time.Hour)
	d := inventory.Device{ID: "cam", Family: "camera", State: inventory.StateQuarantined, Mechanism: inventory.MechanismAgent,
		Health: inventory.Health{ReportedNotAfter: held, AgentVersion: "0.3.0", Manufacturer: "Acme", Model: "C1", Arch: "arm64"}}
	hd := haDevice(d, nil, monitor.Judge(d, nil, nil, fleetNow))
	if !hd.Expires.Equal(held) || !hd.Agent || hd.Vendor != "Acme" || hd.Model != "C1" || hd.Arch != "arm64" || hd.Family != "camera" {
		t.Errorf("haDevice(quarantined) = %+v, want the held expiry %s and the agent's info", hd, held)
	}
	m := inventory.Device{ID: "meter", Mechanism: inventory.MechanismManual, State: inventory.StateActive}
	if hd := haDevice(m, &inventory.Certificate{NotAfter: held, Status: inventory.StatusActive}, monitor.Verdict{}); hd.Agent {
		t.Errorf("haDevice(imported) = %+v, want no agent", hd)
	}
}
