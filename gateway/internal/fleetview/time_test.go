package fleetview

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/monitor"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

// bubbleStart is where a synctest bubble's clock starts.
var bubbleStart = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// smallFleet opens an inventory of n agent devices b0…, each with a 30-day certificate
// issued at fleetNow. It is opened outside the synctest bubble: the inventory's connection
// pools keep goroutines that outlive a bubble.
func smallFleet(t *testing.T, n int) *inventory.Store {
	t.Helper()
	store, err := inventory.Open(t.Context(), filepath.Join(t.TempDir(), "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	for i := range n {
		id := fmt.Sprintf("b%d", i)
		serial := fmt.Sprintf("%x", 0xb000+i)
		err := store.RecordIssuance(t.Context(), inventory.Issuance{
			Device:  inventory.Device{ID: id, Mechanism: inventory.MechanismAgent},
			Cert:    inventory.Certificate{Serial: serial, NotBefore: fleetNow, NotAfter: fleetNow.Add(30 * day)},
			Attempt: inventory.Attempt{RequestID: "r1", StartedAt: fleetNow, FinishedAt: fleetNow}})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := store.Activate(t.Context(), id, serial, fleetNow); err != nil {
			t.Fatal(err)
		}
	}
	return store
}

// startView runs a View on store inside the synctest bubble, recording its calls. The
// bubble's clock starts in 2000, before any plausible hub time, so the View's clock is the
// bubble's moved to fleetNow: timers and the clock stay in step.
func startView(t *testing.T, store *inventory.Store, pol func() *policy.Policy) (*View, *recorder, func() time.Time) {
	t.Helper()
	offset := fleetNow.Sub(bubbleStart)
	now := func() time.Time { return time.Now().Add(offset) }
	rec := newRecorder(nil, nil)
	v := New(Config{Store: store, Publish: rec.publish, Policy: pol, Now: now, Refresh: 365 * day})
	v.SetHomeAssistant(rec)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
	})
	return v, rec, now
}

// problemsOf decodes the problems of a published device state.
func problemsOf(t *testing.T, payload []byte) []protocol.Problem {
	t.Helper()
	var d protocol.BridgeDevice
	if err := protocol.Decode(payload, &d); err != nil {
		t.Fatalf("device state %q: %v", payload, err)
	}
	return d.ProblemDetails
}

// TestVerdictsFollowTime checks that a device's published state follows its renewal window
// as time passes, with no notification at all: fine, then past the window's end, then inside
// the emergency floor, then expired, one publication each.
func TestVerdictsFollowTime(t *testing.T) {
	store := smallFleet(t, 1)
	synctest.Test(t, func(t *testing.T) {
		_, rec, now := startView(t, store, nil)
		synctest.Wait()
		topic := "hearth/bridge/device/b0"
		if p := problemsOf(t, rec.lastOf(topic)); len(p) != 0 {
			t.Fatalf("fresh certificate published with problems %+v", p)
		}
		c, err := store.ActiveCertificate(t.Context(), "b0")
		if err != nil {
			t.Fatal(err)
		}
		w := policy.Default().Window(policy.Subject{DeviceID: "b0"},
			policy.CertInfo{Serial: c.Serial, NotBefore: c.NotBefore, NotAfter: c.NotAfter}, now())
		steps := []struct {
			at   time.Time
			code string
			text string
		}{
			{w.End, monitor.ProblemExpiring, "past the end of its renewal window"},
			{w.EmergencyAt, monitor.ProblemExpiring, "inside the emergency floor"},
			{c.NotAfter, monitor.ProblemExpired, "expired at"},
		}
		for _, s := range steps {
			time.Sleep(s.at.Sub(now()) + time.Second)
			synctest.Wait()
			p := problemsOf(t, rec.lastOf(topic))
			if len(p) != 1 || p[0].Code != s.code || !strings.Contains(p[0].Text, s.text) {
				t.Errorf("at %s the device shows %+v, want %s (%q)", now().Format(time.RFC3339), p, s.code, s.text)
			}
			var sum protocol.BridgeDevices
			if err := protocol.Decode(rec.lastOf("hearth/bridge/devices"), &sum); err != nil || sum.Problems[s.code] != 1 {
				t.Errorf("at %s the summary counts %v, want one %s (%v)", now().Format(time.RFC3339), sum.Problems, s.code, err)
			}
		}
		var states int
		for _, c := range rec.since(0) {
			if c == "publish "+topic {
				states++
			}
		}
		if states != 1+len(steps) {
			t.Errorf("the device's state was published %d times, want %d (at start and at each step)", states, 1+len(steps))
		}
		// Once expired, nothing changes by itself any more.
		mark := rec.mark()
		time.Sleep(365 * day)
		synctest.Wait()
		if calls := rec.since(mark); slices.Contains(calls, "publish "+topic) {
			t.Errorf("an expired device was published again: %q", calls)
		}
	})
}

// TestNotificationsCoalesce checks that many notifications within one interval make one
// flush, loading each device once.
func TestNotificationsCoalesce(t *testing.T) {
	store := smallFleet(t, 3)
	synctest.Test(t, func(t *testing.T) {
		v, rec, _ := startView(t, store, nil)
		synctest.Wait()
		mark := rec.mark()
		for range 100 {
			for _, id := range []string{"b0", "b1", "b2", "gone"} {
				v.DeviceChanged(id)
			}
		}
		time.Sleep(time.Second)
		synctest.Wait()
		calls := rec.since(mark)
		slices.Sort(calls)
		want := []string{"device b0", "device b1", "device b2", "hub", "publish hearth/bridge/devices"}
		if !slices.Equal(calls, want) {
			t.Errorf("400 notifications made calls %q, want one flush %q (unchanged devices publish nothing; an unknown one is ignored)", calls, want)
		}
	})
}

// TestResyncFollowsThePolicy checks that Resync, which the hub calls when the policy
// changes, judges every device again under the new policy.
func TestResyncFollowsThePolicy(t *testing.T) {
	store := smallFleet(t, 3)
	synctest.Test(t, func(t *testing.T) {
		var pol atomic.Pointer[policy.Policy]
		pol.Store(policy.Default())
		v, rec, _ := startView(t, store, pol.Load)
		synctest.Wait()
		// Renew from the first day: every 30-day certificate 16 days old is then past
		// its window's end.
		p, err := policy.Parse([]byte("version: 1\nclasses:\n  - name: default\n    renew_at: 1/30\n    jitter: 0\n"))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(16 * day) // the default window opens from day 18, the new one ends on day 15
		synctest.Wait()
		if got := problemsOf(t, rec.lastOf("hearth/bridge/device/b0")); len(got) != 0 {
			t.Fatalf("before the policy change b0 shows %+v, want nothing", got)
		}
		pol.Store(p)
		mark := rec.mark()
		v.Resync()
		time.Sleep(time.Second)
		synctest.Wait()
		for _, id := range []string{"b0", "b1", "b2"} {
			if got := problemsOf(t, rec.lastOf("hearth/bridge/device/"+id)); len(got) != 1 || got[0].Code != monitor.ProblemExpiring {
				t.Errorf("after the policy change %s shows %+v, want expiring", id, got)
			}
		}
		if calls := rec.since(mark); slices.Contains(calls, "complete") {
			t.Errorf("a second resync told Home Assistant it is complete again: %q", calls)
		}
	})
}
