package hass

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/hearth-pki/hearth/gateway/internal/monitor"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// awaitLimit only guards against a hang; nothing here measures speed.
const awaitLimit = 20 * time.Second

// observer is a plain MQTT client that records every message it receives, in order.
type observer struct {
	t      *testing.T
	client mqtt.Client
	mu     sync.Mutex
	msgs   []mqtt.Message
	more   chan struct{}
}

func newObserver(t *testing.T, m *testkit.Mosquitto, filters ...string) *observer {
	t.Helper()
	o := &observer{t: t, more: make(chan struct{}, 1)}
	id := fmt.Sprintf("observer-%d", time.Now().UnixNano())
	opts := mqtt.NewClientOptions().AddBroker(m.URL()).SetClientID(id).SetProtocolVersion(4).
		SetOrderMatters(true).SetAutoReconnect(false)
	o.client = mqtt.NewClient(opts)
	if tok := o.client.Connect(); !tok.WaitTimeout(awaitLimit) || tok.Error() != nil {
		t.Fatalf("observer connect: %v", tok.Error())
	}
	t.Cleanup(func() { o.client.Disconnect(0) })
	for _, f := range filters {
		tok := o.client.Subscribe(f, 1, func(_ mqtt.Client, msg mqtt.Message) {
			o.mu.Lock()
			o.msgs = append(o.msgs, msg)
			o.mu.Unlock()
			notify(o.more)
		})
		if !tok.WaitTimeout(awaitLimit) || tok.Error() != nil {
			t.Fatalf("observer subscribe %s: %v", f, tok.Error())
		}
	}
	return o
}

// mark returns how many messages arrived so far, to await only later ones.
func (o *observer) mark() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.msgs)
}

// await returns the first message from index from on that is on topic and satisfies ok.
func (o *observer) await(from int, topic string, ok func(mqtt.Message) bool) mqtt.Message {
	o.t.Helper()
	timer := time.NewTimer(awaitLimit)
	defer timer.Stop()
	for {
		o.mu.Lock()
		for _, m := range o.msgs[min(from, len(o.msgs)):] {
			if m.Topic() == topic && (ok == nil || ok(m)) {
				o.mu.Unlock()
				return m
			}
		}
		var seen []string
		for _, m := range o.msgs {
			seen = append(seen, fmt.Sprintf("%s=%q", m.Topic(), m.Payload()))
		}
		o.mu.Unlock()
		select {
		case <-o.more:
		case <-timer.C:
			o.t.Fatalf("no matching message on %s; seen:\n%s", topic, strings.Join(seen, "\n"))
		}
	}
}

// retained subscribes a fresh client to filter and returns the retained messages the broker
// holds for it. A marker published after the subscription tells when they have all arrived.
func retained(t *testing.T, m *testkit.Mosquitto, filter, marker string) map[string][]byte {
	t.Helper()
	o := newObserver(t, m, filter)
	if tok := o.client.Publish(marker, 1, false, "marker"); !tok.WaitTimeout(awaitLimit) || tok.Error() != nil {
		t.Fatalf("publishing the marker: %v", tok.Error())
	}
	o.await(0, marker, nil)
	got := map[string][]byte{}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, msg := range o.msgs {
		if msg.Topic() == marker {
			break
		}
		if msg.Retained() { // live publications racing the subscription are not the store
			got[msg.Topic()] = msg.Payload()
		}
	}
	return got
}

func publish(t *testing.T, o *observer, topic string, retain bool, payload string) {
	t.Helper()
	if tok := o.client.Publish(topic, 1, retain, payload); !tok.WaitTimeout(awaitLimit) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// bridgeCall is one call the test Bridge received.
type bridgeCall struct {
	op      string
	payload []byte
}

// startPublisher discovers the broker through a fake Supervisor (as the add-on does), starts a
// Publisher with a recording Bridge, and stops it when the test ends.
func startPublisher(t *testing.T, m *testkit.Mosquitto, before func(*Publisher)) (p *Publisher, calls chan bridgeCall, stop func()) {
	t.Helper()
	body := fmt.Sprintf(`{"result":"ok","data":{"host":"127.0.0.1","port":%d,"ssl":false,"protocol":"3.1.1","username":"addons","password":"pw"}}`, m.Port)
	sup := supervisor(t, "tok", http.StatusOK, body)
	broker, err := DiscoverBroker(t.Context(), sup.URL, "tok", sup.Client())
	if err != nil {
		t.Fatalf("DiscoverBroker: %v", err)
	}
	calls = make(chan bridgeCall, 16)
	bridge := func(_ context.Context, op string, payload []byte) []byte {
		calls <- bridgeCall{op, payload}
		var req struct {
			ID          string          `json:"id"`
			Transaction json.RawMessage `json:"transaction,omitempty"`
		}
		json.Unmarshal(payload, &req)
		reply, _ := json.Marshal(map[string]any{"status": "ok", "data": map[string]string{"id": req.ID}, "transaction": req.Transaction})
		return reply
	}
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	p = New(Config{Broker: broker, Bridge: bridge, ClientID: "hearth-test"}, logger)
	if before != nil {
		before(p)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run() = %v, want nil", err)
			}
		})
	}
	t.Cleanup(stop)
	return p, calls, stop
}

func deviceWith(id string, exp time.Time) Device {
	return Device{ID: id, Name: id, Expires: exp, Agent: true}
}

// give hands p the hub and every device, as the hub does at start.
func give(p *Publisher, hub Hub, devices ...Device) {
	p.UpdateHub(hub)
	for _, d := range devices {
		p.UpdateDevice(d)
	}
	p.Complete()
}

func TestPublisherAgainstMosquitto(t *testing.T) {
	m := testkit.StartMosquitto(t)
	live := newObserver(t, m, "homeassistant/#", "hearth/#")

	// Left over from an earlier run: a device removed while the hub was down, and a retained
	// request that must never run.
	publish(t, live, "homeassistant/device/hearth_ghost/config", true, `{"dev":{"identifiers":["hearth_ghost"]}}`)
	publish(t, live, "hearth/hass/device/ghost/state", true, `{"problem":false}`)
	publish(t, live, "hearth/bridge/request/device/remove", true, `{"id":"thermostat-1","transaction":"stale"}`)

	exp := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	p, calls, stop := startPublisher(t, m, func(p *Publisher) {
		give(p, testHub(), deviceWith("thermostat-1", exp), deviceWith("plug-1", exp))
	})

	thermoConfig := "homeassistant/device/hearth_thermostat-1/config"
	thermoState := "hearth/hass/device/thermostat-1/state"
	plugConfig := "homeassistant/device/hearth_plug-1/config"
	plugState := "hearth/hass/device/plug-1/state"
	nonEmpty := func(msg mqtt.Message) bool { return len(msg.Payload()) > 0 }
	empty := func(msg mqtt.Message) bool { return len(msg.Payload()) == 0 }
	live.await(0, thermoConfig, nonEmpty)
	live.await(0, "hearth/bridge/state", func(msg mqtt.Message) bool { return string(msg.Payload()) == "online" })

	t.Run("discovery payloads are retained with every required key", func(t *testing.T) {
		live.await(0, plugState, nonEmpty)
		got := retained(t, m, "#", "test/marker/1")
		for _, topic := range []string{"homeassistant/device/hearth_hub/config", thermoConfig, plugConfig} {
			payload, ok := got[topic]
			if !ok {
				t.Errorf("no retained message on %s", topic)
				continue
			}
			checkDiscovery(t, payload)
		}
		for _, topic := range []string{"hearth/hass/hub/state", thermoState, plugState} {
			if !json.Valid(got[topic]) {
				t.Errorf("retained state on %s = %q, want JSON", topic, got[topic])
			}
		}
		if s := string(got["hearth/bridge/state"]); s != "online" {
			t.Errorf("retained hearth/bridge/state = %q, want online", s)
		}
	})

	t.Run("a device removed while the hub was down is cleared", func(t *testing.T) {
		live.await(0, "homeassistant/device/hearth_ghost/config", empty)
		live.await(0, "hearth/hass/device/ghost/state", empty)
	})

	t.Run("home assistant's birth message re-publishes the configs", func(t *testing.T) {
		mark := live.mark()
		publish(t, live, "homeassistant/status", false, "online")
		live.await(mark, thermoConfig, nonEmpty)
		live.await(mark, "homeassistant/device/hearth_hub/config", nonEmpty)
	})

	t.Run("the renew button reaches the bridge and the reply comes back", func(t *testing.T) {
		var config discoveryPayload
		if err := json.Unmarshal(live.await(0, thermoConfig, nonEmpty).Payload(), &config); err != nil {
			t.Fatal(err)
		}
		button := config.Components["renew_certificate"]
		mark := live.mark()
		publish(t, live, button.CommandTopic, false, button.PayloadPress)

		var call bridgeCall
		select {
		case call = <-calls:
		case <-time.After(awaitLimit):
			t.Fatal("the Bridge was not called")
		}
		if call.op != "device/renew" || !bytes.Equal(call.payload, []byte(`{"id":"thermostat-1"}`)) {
			t.Errorf("Bridge got (%q, %s), want (device/renew, {\"id\":\"thermostat-1\"}); a retained request must never run", call.op, call.payload)
		}
		reply := live.await(mark, "hearth/bridge/response/device/renew", nil)
		if !bytes.Contains(reply.Payload(), []byte(`"status":"ok"`)) || !bytes.Contains(reply.Payload(), []byte(`"thermostat-1"`)) {
			t.Errorf("response = %s, want the Bridge's reply", reply.Payload())
		}

		mark = live.mark()
		publish(t, live, "hearth/bridge/request/device/get", false, `{"id":"plug-1","transaction":42}`)
		<-calls
		reply = live.await(mark, "hearth/bridge/response/device/get", nil)
		if !bytes.Contains(reply.Payload(), []byte(`"transaction":42`)) {
			t.Errorf("response = %s, want transaction 42 echoed", reply.Payload())
		}
	})

	t.Run("a new expiry changes the state", func(t *testing.T) {
		mark := live.mark()
		later := exp.Add(30 * 24 * time.Hour)
		p.UpdateDevice(deviceWith("thermostat-1", later))
		msg := live.await(mark, thermoState, nil)
		var st deviceState
		if err := json.Unmarshal(msg.Payload(), &st); err != nil || st.Expires == nil || *st.Expires != "2026-05-31T12:00:00Z" {
			t.Errorf("state = %s, want expires 2026-05-31T12:00:00Z", msg.Payload())
		}
	})

	t.Run("a removed device has its entities cleared", func(t *testing.T) {
		mark := live.mark()
		p.RemoveDevice("plug-1")
		live.await(mark, plugConfig, empty)
		live.await(mark, plugState, empty)
		got := retained(t, m, "#", "test/marker/2")
		for _, topic := range []string{plugConfig, plugState} {
			if payload, ok := got[topic]; ok {
				t.Errorf("%s still retains %q", topic, payload)
			}
		}
		if _, ok := got[thermoConfig]; !ok {
			t.Errorf("%s lost its retained config", thermoConfig)
		}
	})

	t.Run("stopping marks the hub offline", func(t *testing.T) {
		stop()
		o := newObserver(t, m, "hearth/bridge/state")
		msg := o.await(0, "hearth/bridge/state", nil)
		if !msg.Retained() || string(msg.Payload()) != "offline" {
			t.Errorf("hearth/bridge/state = %q (retained %v), want a retained offline", msg.Payload(), msg.Retained())
		}
	})

	select {
	case call := <-calls:
		t.Errorf("unexpected Bridge call %q %s", call.op, call.payload)
	default:
	}
}

// TestPublisherRepublishesAfterBrokerRestart restarts the broker, which forgets every retained
// message: after reconnecting, the Publisher must publish everything again.
func TestPublisherRepublishesAfterBrokerRestart(t *testing.T) {
	m := testkit.StartMosquitto(t)
	_, _, _ = startPublisher(t, m, func(p *Publisher) {
		give(p, testHub(), deviceWith("plug-1", time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)))
	})
	first := newObserver(t, m, "homeassistant/#")
	first.await(0, "homeassistant/device/hearth_plug-1/config", nil)

	m.Stop()
	m.Start()
	o := newObserver(t, m, "homeassistant/#", "hearth/#")
	o.await(0, "homeassistant/device/hearth_plug-1/config", func(msg mqtt.Message) bool { return len(msg.Payload()) > 0 })
	o.await(0, "hearth/bridge/state", func(msg mqtt.Message) bool { return string(msg.Payload()) == "online" })
}

func TestRunRejectsABadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"client id with a slash", Config{Broker: Broker{Host: "h", Port: 1}, ClientID: "hearth/1"}},
		{"client id with a wildcard", Config{Broker: Broker{Host: "h", Port: 1}, ClientID: "hearth#"}},
		{"discovery prefix with a wildcard", Config{Broker: Broker{Host: "h", Port: 1}, DiscoveryPrefix: "home/+"}},
		{"topic prefix with an empty level", Config{Broker: Broker{Host: "h", Port: 1}, TopicPrefix: "hearth/"}},
		{"no broker", Config{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := New(tt.cfg, nil).Run(t.Context()); err == nil {
				t.Errorf("Run(%+v) = nil, want an error", tt.cfg)
			}
		})
	}
}

func TestUpdatesNeverBlockAndCopy(t *testing.T) {
	p := New(Config{}, nil)
	problems := []protocol.Problem{{Code: monitor.ProblemExpired, Text: "expired"}}
	d := Device{ID: "a", Problems: problems}
	for i := range 1000 { // no Run: must not block
		p.UpdateHub(Hub{})
		p.UpdateDevice(d)
		p.RemoveDevice(fmt.Sprintf("gone-%d", i))
	}
	p.UpdateDevice(Device{}) // no id: ignored
	problems[0].Code = "changed"
	p.mu.Lock()
	defer p.mu.Unlock()
	if got := p.devices["a"]; got.Problems[0].Code != monitor.ProblemExpired {
		t.Errorf("UpdateDevice kept a reference to the caller's slice: %+v", got)
	}
	if len(p.devices) != 1 || len(p.dirty) != 1002 {
		t.Errorf("after the updates: %d devices, %d dirty objects; want 1 and 1002 (a, the hub, 1000 removed)", len(p.devices), len(p.dirty))
	}
}

// TestOneDeviceChangePublishesOnlyIt checks that the work of an update does not grow with the
// fleet: after the first publication of 200 devices, changing one publishes that device's
// state and nothing else.
func TestOneDeviceChangePublishesOnlyIt(t *testing.T) {
	m := testkit.StartMosquitto(t)
	live := newObserver(t, m, "homeassistant/#", "hearth/#")
	exp := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	var devices []Device
	for i := range 200 {
		devices = append(devices, deviceWith(fmt.Sprintf("d%03d", i), exp))
	}
	p, _, _ := startPublisher(t, m, func(p *Publisher) { give(p, testHub(), devices...) })
	live.await(0, "hearth/hass/device/d199/state", nil)

	mark := live.mark()
	changed := deviceWith("d042", exp.Add(24*time.Hour))
	p.UpdateDevice(changed)
	// A sentinel whose topics sort after every device's: once its state arrives, whatever the
	// change caused has arrived too (one client, one connection, in order).
	p.UpdateDevice(deviceWith("zzz", exp))
	live.await(mark, "hearth/hass/device/zzz/state", nil)
	live.mu.Lock()
	var got []string
	for _, msg := range live.msgs[mark:] {
		got = append(got, msg.Topic())
	}
	live.mu.Unlock()
	want := []string{"hearth/hass/device/d042/state", "homeassistant/device/hearth_zzz/config", "hearth/hass/device/zzz/state"}
	if sorted := slices.Sorted(slices.Values(got)); !slices.Equal(sorted, slices.Sorted(slices.Values(want))) {
		t.Errorf("one device's change published %q, want exactly %q", got, want)
	}

	// The same state again publishes nothing.
	mark = live.mark()
	p.UpdateDevice(changed)
	p.RemoveDevice("zzz")
	live.await(mark, "hearth/hass/device/zzz/state", func(msg mqtt.Message) bool { return len(msg.Payload()) == 0 })
	live.mu.Lock()
	got = got[:0]
	for _, msg := range live.msgs[mark:] {
		got = append(got, msg.Topic())
	}
	live.mu.Unlock()
	if want := []string{"homeassistant/device/hearth_zzz/config", "hearth/hass/device/zzz/state"}; !slices.Equal(got, want) {
		t.Errorf("an unchanged device and a removal published %q, want only the removal %q", got, want)
	}
}

// TestPublisherBirthEventsAndRefusals runs against mosquitto with a custom discovery prefix:
// Home Assistant's birth message on its default homeassistant/status still re-publishes the
// configs; clearing a retained request runs nothing and gets no reply; a Renew press the hub
// refuses becomes a renew_failed event; an alert reaches the event entity's topic.
func TestPublisherBirthEventsAndRefusals(t *testing.T) {
	m := testkit.StartMosquitto(t)
	live := newObserver(t, m, "custom/#", "hearth/#")
	calls := make(chan bridgeCall, 16)
	bridge := func(_ context.Context, op string, payload []byte) []byte {
		calls <- bridgeCall{op, payload}
		reply, _ := json.Marshal(map[string]any{"status": "error", "code": "not_found", "error": "device ghost is not known to the hub"})
		return reply
	}
	p := New(Config{Broker: Broker{Host: "127.0.0.1", Port: m.Port}, Bridge: bridge, ClientID: "hearth-test-2", DiscoveryPrefix: "custom"},
		slog.New(slog.NewTextHandler(t.Output(), nil)))
	give(p, testHub(), deviceWith("plug-1", time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()

	config := "custom/device/hearth_plug-1/config"
	nonEmpty := func(msg mqtt.Message) bool { return len(msg.Payload()) > 0 }
	live.await(0, config, nonEmpty)
	live.await(0, "hearth/bridge/state", func(msg mqtt.Message) bool { return string(msg.Payload()) == "online" })

	mark := live.mark()
	publish(t, live, "homeassistant/status", false, "online")
	live.await(mark, config, nonEmpty)

	// Clearing a retained request: an empty retained payload, delivered live.
	publish(t, live, "hearth/bridge/request/device/renew", true, "")
	mark = live.mark()
	publish(t, live, "hearth/bridge/request/device/renew", false, `{"id":"ghost"}`)
	if call := <-calls; call.op != "device/renew" || string(call.payload) != `{"id":"ghost"}` {
		t.Errorf("Bridge got (%q, %s), want only the live press (the clear runs nothing)", call.op, call.payload)
	}
	ev := live.await(mark, "hearth/hass/hub/alert", nil)
	var got Event
	if err := json.Unmarshal(ev.Payload(), &got); err != nil || got.EventType != EventRenewFailed || got.DeviceID != "ghost" ||
		got.Message != "device ghost is not known to the hub" {
		t.Errorf("event after a refused press = %s, %v; want renew_failed for ghost with the hub's error", ev.Payload(), err)
	}
	if ev.Retained() {
		t.Errorf("event is retained")
	}

	mark = live.mark()
	p.Publish(Event{EventType: EventRaised, ID: "family_failures/plug", Kind: "family_failures", Message: "3 plugs", Family: "plug",
		Devices: []string{"plug-1", "plug-2", "plug-3"}, Time: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)})
	ev = live.await(mark, "hearth/hass/hub/alert", nil)
	if err := json.Unmarshal(ev.Payload(), &got); err != nil || got.EventType != EventRaised || got.Family != "plug" || len(got.Devices) != 3 {
		t.Errorf("alert event = %s, %v", ev.Payload(), err)
	}
	live.await(0, "hearth/bridge/response/device/renew", nil)
	live.mu.Lock()
	replies := 0
	for _, msg := range live.msgs {
		if msg.Topic() == "hearth/bridge/response/device/renew" {
			replies++
		}
	}
	live.mu.Unlock()
	if replies != 1 {
		t.Errorf("%d replies on device/renew, want 1: the press's, none for the cleared request", replies)
	}
	select {
	case call := <-calls:
		t.Errorf("unexpected Bridge call %q %s (the cleared request ran)", call.op, call.payload)
	default:
	}
}
