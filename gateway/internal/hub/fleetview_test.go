package hub

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/protocol"
)

// TestBridgeFleetTopics checks the hub's wiring of the fleet view: an admin on the hub's
// broker sees a device's retained bridge/device/<id> topic follow its enrollment, commit and
// removal, and bridge/devices count it.
func TestBridgeFleetTopics(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Load([]string{"--data", dir, "--listen", "127.0.0.1:0", "--http", "off", "--hostnames", "localhost,127.0.0.1"},
		func(k string) string {
			switch k {
			case "HEARTH_CA_PASSPHRASE":
				return "test passphrase"
			case "HEARTH_ADMIN_PASSWORD":
				return "admin password"
			}
			return ""
		})
	if err != nil {
		t.Fatal(err)
	}
	h, err := Open(t.Context(), cfg, Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	defer func() { cancel(); <-done }()

	admin, err := client(t, h, "admin", "admin password", nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	last := map[string][]byte{}
	more := make(chan struct{}, 1)
	for _, f := range []string{h.topics.BridgeDeviceFilter(), h.topics.Bridge(protocol.KindBridgeDevices)} {
		tok := admin.Subscribe(f, 1, func(_ mqtt.Client, m mqtt.Message) {
			mu.Lock()
			last[m.Topic()] = m.Payload()
			mu.Unlock()
			select {
			case more <- struct{}{}:
			default:
			}
		})
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe %s: %v", f, tok.Error())
		}
	}
	wait := func(topic, what string, ok func(payload []byte) bool) []byte {
		t.Helper()
		timer := time.NewTimer(20 * time.Second)
		defer timer.Stop()
		for {
			mu.Lock()
			p, seen := last[topic]
			mu.Unlock()
			if seen && ok(p) {
				return p
			}
			select {
			case <-more:
			case <-timer.C:
				t.Fatalf("%s: never %s; last %q", topic, what, p)
			}
		}
	}
	device := func(want func(protocol.BridgeDevice) bool) func([]byte) bool {
		return func(p []byte) bool {
			var d protocol.BridgeDevice
			return protocol.Decode(p, &d) == nil && want(d)
		}
	}
	total := func(n int) func([]byte) bool {
		return func(p []byte) bool {
			var s protocol.BridgeDevices
			return protocol.Decode(p, &s) == nil && s.Total == n
		}
	}
	topic := h.topics.BridgeDevice("thermostat-hall")

	pair, reply, _ := enroll(t, h, "thermostat-hall")
	wait(topic, "enrolling", device(func(d protocol.BridgeDevice) bool { return d.State == "enrolling" }))
	wait(h.topics.Bridge(protocol.KindBridgeDevices), "one device", total(1))

	dev, err := client(t, h, "thermostat-hall", "", &pair)
	if err != nil {
		t.Fatal(err)
	}
	request(t, dev, h.topics.Device("thermostat-hall", protocol.KindCommit),
		&protocol.Commit{V: 1, RequestID: "enroll-1", Serial: reply.Serial, Outcome: protocol.OutcomeCommitted, Time: time.Now()},
		h.topics.Device("thermostat-hall", protocol.KindAck))
	wait(topic, fmt.Sprintf("active on %s and online", reply.Serial), device(func(d protocol.BridgeDevice) bool {
		return d.State == "active" && d.Serial == reply.Serial && d.Online && len(d.Problems) == 0
	}))

	if resp := h.Admin().Do(t.Context(), "test", "device/remove", []byte(`{"id":"thermostat-hall"}`)); resp.Status != "ok" {
		t.Fatalf("remove: %+v", resp)
	}
	wait(topic, "cleared", func(p []byte) bool { return len(p) == 0 })
	wait(h.topics.Bridge(protocol.KindBridgeDevices), "no device", total(0))
}
