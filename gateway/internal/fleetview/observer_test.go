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
