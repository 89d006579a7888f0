package fleetview

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/go-cmp/cmp"

	"github.com/hearth-pki/hearth/gateway/internal/hass"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/monitor"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

const day = 24 * time.Hour

// fleetNow is the fixed "now" the fleet is judged at.
var fleetNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// fillFleet stores n agent devices d0000… in a fresh inventory, as varied as a real fleet:
// fresh, past their renewal window, expired, failing, quarantined, never activated, online
// or not.
func fillFleet(t *testing.T, n int) (*inventory.Store, []string) {
	t.Helper()
	store, err := inventory.Open(t.Context(), filepath.Join(t.TempDir(), "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	ids := make([]string, n)
	items := make([]inventory.Issuance, n)
	for i := range n {
		ids[i] = fmt.Sprintf("d%04d", i)
		issued := fleetNow.Add(-day)
		switch i % 10 {
		case 0:
			issued = fleetNow.Add(-27 * day) // past its window's end: expiring
		case 1:
			issued = fleetNow.Add(-31 * day) // expired
		}
		items[i] = inventory.Issuance{
			Device: inventory.Device{ID: ids[i], Name: "Device " + ids[i], Family: "plug", Model: "P1", Vendor: "Acme",
				Mechanism: inventory.MechanismAgent},
			Cert:    inventory.Certificate{Serial: fmt.Sprintf("%x", 0x10000+i), NotBefore: issued, NotAfter: issued.Add(30 * day)},
			Attempt: inventory.Attempt{RequestID: "r1", StartedAt: issued, FinishedAt: issued},
		}
	}
	for i, err := range store.RecordIssuances(t.Context(), items) {
		if err != nil {
			t.Fatalf("RecordIssuances()[%d] = %v", i, err)
		}
	}
	ctx := t.Context()
	for i, id := range ids {
		if i%25 != 3 { // the others stay enrolling, without an active certificate
			if _, _, err := store.Activate(ctx, id, items[i].Cert.Serial, items[i].Cert.NotBefore); err != nil {
				t.Fatal(err)
			}
		}
		if i%3 == 0 {
			if err := store.SetOnline(ctx, id, true, fleetNow.Add(-time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
		if i%7 == 0 {
			if err := store.SetRenewal(ctx, id, inventory.RenewalStatus{State: inventory.RenewalFailing, Failures: 5, LastCause: "timeout"}); err != nil {
				t.Fatal(err)
			}
		}
		if i%50 == 0 {
			if err := store.SetState(ctx, id, inventory.StateQuarantined, fleetNow); err != nil {
				t.Fatal(err)
			}
		}
	}
	return store, ids
}

// expected returns what the view must publish for every device: its bridge/device payload
// and verdict, judged one by one through the ordinary reads, and the summary's counts.
func expected(t *testing.T, store *inventory.Store) (map[string][]byte, map[string]monitor.Verdict, protocol.BridgeDevices) {
	t.Helper()
	devs, err := store.Devices(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	payloads, verdicts := map[string][]byte{}, map[string]monitor.Verdict{}
	sum := protocol.BridgeDevices{V: protocol.Version, States: map[string]int{}, Problems: map[string]int{},
		Updated: fleetNow}
	for _, d := range devs {
		var active *inventory.Certificate
		if c, err := store.ActiveCertificate(t.Context(), d.ID); err == nil {
			c.PEM = ""
			active = &c
		}
		v := monitor.Judge(d, active, policy.Default(), fleetNow)
		b, err := protocol.Encode(&protocol.BridgeDevice{V: protocol.Version, DeviceSummary: monitor.SummaryOf(d, active, v)})
		if err != nil {
			t.Fatal(err)
		}
		payloads[d.ID], verdicts[d.ID] = b, v
		sum.Total++
		sum.States[d.State]++
		if d.Online {
			sum.Online++
		}
		if len(v.Problems) > 0 {
			sum.WithProblems++
		}
		for _, c := range v.Codes() {
			sum.Problems[c]++
		}
	}
	return payloads, verdicts, sum
}

// haState is the JSON of a device's Home Assistant state topic.
type haState struct {
	Expires *string  `json:"expires"`
	Problem bool     `json:"problem"`
	Reasons []string `json:"reasons"`
	Details []string `json:"details"`
}

// checkHAState fails t unless the retained Home Assistant state of device id shows verdict
// v and the certificate's expiry.
func checkHAState(t *testing.T, id string, payload []byte, v monitor.Verdict, active *inventory.Certificate) {
	t.Helper()
	var st haState
	if err := json.Unmarshal(payload, &st); err != nil {
		t.Fatalf("Home Assistant state of %s = %q: %v", id, payload, err)
	}
	reasons := slices.Compact(slices.Sorted(slices.Values(v.Codes())))
	if reasons == nil {
		reasons = []string{}
	}
	if st.Problem != (len(v.Problems) > 0) || !slices.Equal(st.Reasons, reasons) || len(st.Details) != len(v.Problems) {
		t.Errorf("Home Assistant state of %s = %s, want problems %v", id, payload, v.Problems)
	}
	var want *string
	if active != nil {
		want = new(active.NotAfter.UTC().Format(time.RFC3339))
	}
	if !cmp.Equal(st.Expires, want) {
		t.Errorf("Home Assistant state of %s expires %v, want %v", id, st.Expires, want)
	}
}

// haObserver counts the device states and configs that reach Home Assistant's broker.
type haObserver struct {
	mu      sync.Mutex
	states  map[string][]byte
	configs map[string]bool
	more    chan struct{}
}

func observeHA(t *testing.T, port int) *haObserver {
	t.Helper()
	o := &haObserver{states: map[string][]byte{}, configs: map[string]bool{}, more: make(chan struct{}, 1)}
	c := connect(t, port, "ha-observer")
	handler := func(_ mqtt.Client, m mqtt.Message) {
		o.mu.Lock()
		switch {
		case strings.HasPrefix(m.Topic(), "hearth/hass/device/"):
			o.states[m.Topic()] = m.Payload()
		case strings.HasPrefix(m.Topic(), "homeassistant/device/hearth_d"):
			o.configs[m.Topic()] = len(m.Payload()) > 0
		}
		o.mu.Unlock()
		select {
		case o.more <- struct{}{}:
		default:
		}
	}
	for _, f := range []string{"hearth/hass/#", "homeassistant/#"} {
		if tok := c.Subscribe(f, 1, handler); !tok.WaitTimeout(awaitLimit) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	return o
}

// await waits until ok holds of what the observer saw.
func (o *haObserver) await(t *testing.T, what string, ok func(o *haObserver) bool) {
	t.Helper()
	timer := time.NewTimer(awaitLimit)
	defer timer.Stop()
	for {
		o.mu.Lock()
		done := ok(o)
		o.mu.Unlock()
		if done {
			return
		}
		select {
		case <-o.more:
		case <-timer.C:
			t.Fatalf("timed out waiting for %s on Home Assistant's broker", what)
		}
	}
}

// TestThousandDevices is issue 10's proof for the bridge state: 1,000 devices in a real
// SQLite inventory, published through a real broker, with Home Assistant's entities on a
// real publisher. Every device's retained state and Home Assistant state are published and
// correct, the summary's counts are right, and a change to one device publishes that device
// only.
func TestThousandDevices(t *testing.T) {
	const n = 1000
	store, ids := fillFleet(t, n)
	port := startMosquitto(t)
	observer := observeHA(t, port)

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	ha := hass.New(hass.Config{Broker: hass.Broker{Host: "127.0.0.1", Port: port}, ClientID: "hearth-hass-test"}, logger)
	rec := newRecorder(connect(t, port, "hearth-hub"), ha)
	v := New(Config{Store: store, Publish: rec.publish, Hub: hass.Hub{Version: "test"}, Now: func() time.Time { return fleetNow },
		Interval: 20 * time.Millisecond, Logger: logger})
	v.SetHomeAssistant(rec)
	wg.Go(func() {
		if err := ha.Run(ctx); err != nil {
			t.Errorf("hass Run() = %v", err)
		}
	})
	wg.Go(func() {
		if err := v.Run(ctx); err != nil {
			t.Errorf("Run() = %v", err)
		}
	})

	calls := rec.await(t, 0, "the first flush", flushed(true))
	counts := map[string]int{}
	for _, c := range calls {
		kind, _, _ := strings.Cut(c, " ")
		if strings.HasPrefix(c, "publish hearth/bridge/device/") {
			kind = "device topic"
		}
		counts[kind]++
	}
	if want := map[string]int{"device topic": n, "publish": 1, "device": n, "complete": 1, "hub": 1}; !cmp.Equal(counts, want) {
		t.Errorf("the first flush made calls %v, want %v", counts, want)
	}

	payloads, verdicts, summary := expected(t, store)
	records, err := store.DeviceRecords(t.Context(), ids)
	if err != nil {
		t.Fatal(err)
	}
	actives := map[string]*inventory.Certificate{}
	for _, r := range records {
		actives[r.Device.ID] = r.Active
	}

	t.Run("every device's retained state is published and correct", func(t *testing.T) {
		got := retained(t, port, "hearth/bridge/device/+")
		if len(got) != n {
			t.Errorf("the broker retains %d device states, want %d", len(got), n)
		}
		for _, id := range ids {
			if b := got["hearth/bridge/device/"+id]; string(b) != string(payloads[id]) {
				t.Errorf("retained state of %s =\n%s\nwant\n%s", id, b, payloads[id])
			}
		}
	})

	t.Run("the summary counts are right", func(t *testing.T) {
		var got protocol.BridgeDevices
		if err := protocol.Decode(retained(t, port, "hearth/bridge/devices")["hearth/bridge/devices"], &got); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(summary, got); diff != "" {
			t.Errorf("bridge/devices mismatch (-want +got):\n%s", diff)
		}
		// The fleet was built with every kind of problem: the counts are not trivially zero.
		for _, code := range []string{monitor.ProblemExpiring, monitor.ProblemExpired, monitor.ProblemRenewalFailing, monitor.ProblemRevoked} {
			if got.Problems[code] == 0 {
				t.Errorf("bridge/devices counts no %s device: %+v", code, got.Problems)
			}
		}
	})

	t.Run("every device's Home Assistant state is published and correct", func(t *testing.T) {
		observer.await(t, "1,000 states and configs", func(o *haObserver) bool { return len(o.states) >= n && len(o.configs) >= n })
		got := retained(t, port, "hearth/hass/device/+/state")
		if len(got) != n {
			t.Errorf("Home Assistant's broker retains %d device states, want %d", len(got), n)
		}
		for _, id := range ids {
			checkHAState(t, id, got["hearth/hass/device/"+id+"/state"], verdicts[id], actives[id])
		}
		configs := retained(t, port, "homeassistant/device/+/config")
		if len(configs) != n+1 {
			t.Errorf("Home Assistant's broker retains %d discovery configs, want %d (the devices and the hub)", len(configs), n+1)
		}
		var hubState struct {
			Devices      int  `json:"devices"`
			ExpiringSoon int  `json:"expiring_soon"`
			Problem      bool `json:"problem"`
		}
		json.Unmarshal(retained(t, port, "hearth/hass/hub/state")["hearth/hass/hub/state"], &hubState)
		if want := summary.Problems[monitor.ProblemExpiring] + summary.Problems[monitor.ProblemExpired]; hubState.Devices != n ||
			hubState.ExpiringSoon != want || !hubState.Problem {
			t.Errorf("hub state = %+v, want %d devices, %d expiring, a problem", hubState, n, want)
		}
	})

	t.Run("one device's change publishes only that device", func(t *testing.T) {
		// d0002 comes online with its clock 10 minutes off: a new problem.
		if err := store.SetOnline(t.Context(), "d0002", true, fleetNow); err != nil {
			t.Fatal(err)
		}
		if err := store.UpdateHealth(t.Context(), "d0002", inventory.Health{ClockSkew: 10 * time.Minute, At: fleetNow}); err != nil {
			t.Fatal(err)
		}
		mark := rec.mark()
		v.DeviceChanged("d0002")
		calls := rec.await(t, mark, "the flush of d0002", flushed(true))
		want := []string{"publish hearth/bridge/device/d0002", "device d0002", "publish hearth/bridge/devices", "hub"}
		if !slices.Equal(calls, want) {
			t.Errorf("a change to d0002 made calls %q, want %q", calls, want)
		}
		payloads, verdicts, summary := expected(t, store)
		if got := retained(t, port, "hearth/bridge/device/d0002")["hearth/bridge/device/d0002"]; string(got) != string(payloads["d0002"]) {
			t.Errorf("retained state of d0002 = %s, want %s", got, payloads["d0002"])
		}
		if !verdicts["d0002"].Has(monitor.ProblemClockSkew) {
			t.Fatalf("d0002's verdict %+v lacks clock_skew: the test changes nothing", verdicts["d0002"])
		}
		var got protocol.BridgeDevices
		protocol.Decode(rec.lastOf("hearth/bridge/devices"), &got)
		if diff := cmp.Diff(summary, got); diff != "" {
			t.Errorf("bridge/devices after the change (-want +got):\n%s", diff)
		}
		observer.await(t, "d0002's new state", func(o *haObserver) bool {
			return strings.Contains(string(o.states["hearth/hass/device/d0002/state"]), monitor.ProblemClockSkew)
		})
	})

	t.Run("a device that did not change publishes nothing of its own", func(t *testing.T) {
		mark := rec.mark()
		v.DeviceChanged("d0006")
		calls := rec.await(t, mark, "the flush of d0006", flushed(true))
		if want := []string{"device d0006", "publish hearth/bridge/devices", "hub"}; !slices.Equal(calls, want) {
			t.Errorf("an unchanged d0006 made calls %q, want %q", calls, want)
		}
	})

	t.Run("a removed device is cleared", func(t *testing.T) {
		if err := store.RemoveDevice(t.Context(), "d0004", fleetNow); err != nil {
			t.Fatal(err)
		}
		mark := rec.mark()
		v.DeviceChanged("d0004")
		calls := rec.await(t, mark, "the flush of d0004", flushed(true))
		if want := []string{"publish hearth/bridge/device/d0004", "remove d0004", "publish hearth/bridge/devices", "hub"}; !slices.Equal(calls, want) {
			t.Errorf("removing d0004 made calls %q, want %q", calls, want)
		}
		if b, ok := retained(t, port, "hearth/bridge/device/+")["hearth/bridge/device/d0004"]; ok {
			t.Errorf("the broker still retains d0004's state %s", b)
		}
		observer.await(t, "d0004's entities removed", func(o *haObserver) bool {
			return !o.configs["homeassistant/device/hearth_d0004/config"]
		})
		var got protocol.BridgeDevices
		protocol.Decode(rec.lastOf("hearth/bridge/devices"), &got)
		if got.Total != n-1 {
			t.Errorf("bridge/devices total = %d after a removal, want %d", got.Total, n-1)
		}
	})

	t.Run("the summary follows presence and state from the devices loaded", func(t *testing.T) {
		var before protocol.BridgeDevices
		protocol.Decode(rec.lastOf("hearth/bridge/devices"), &before)
		d, err := store.Device(t.Context(), "d0007")
		if err != nil {
			t.Fatal(err)
		}
		if err := store.SetOnline(t.Context(), "d0007", !d.Online, fleetNow); err != nil {
			t.Fatal(err)
		}
		mark := rec.mark()
		v.DeviceChanged("d0007")
		rec.await(t, mark, "the flush of d0007", flushed(true))
		var got protocol.BridgeDevices
		protocol.Decode(rec.lastOf("hearth/bridge/devices"), &got)
		_, _, want := expected(t, store)
		if got.Online != want.Online || got.Total != want.Total || !maps.Equal(got.States, want.States) {
			t.Errorf("bridge/devices after d0007 went online=%v: total %d, online %d, states %v; want %d, %d, %v (was online %d)",
				!d.Online, got.Total, got.Online, got.States, want.Total, want.Online, want.States, before.Online)
		}
		if got.Online == before.Online {
			t.Errorf("bridge/devices online = %d, unchanged by d0007's presence", got.Online)
		}
	})
}
