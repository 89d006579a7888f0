package hub

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
	"github.com/hearth-pki/hearth/protocol"
)

// haWatcher subscribes to everything on Home Assistant's broker and keeps the last payload
// of each topic.
type haWatcher struct {
	c    mqtt.Client
	mu   sync.Mutex
	last map[string]string
}

func watchHA(t *testing.T, addr string) *haWatcher {
	w := &haWatcher{last: map[string]string{}}
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("ha-watcher").SetProtocolVersion(4)
	w.c = mqtt.NewClient(opts)
	if tok := w.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to HA broker: %v", tok.Error())
	}
	t.Cleanup(func() { w.c.Disconnect(100) })
	w.c.Subscribe("#", 1, func(_ mqtt.Client, m mqtt.Message) {
		w.mu.Lock()
		w.last[m.Topic()] = string(m.Payload())
		w.mu.Unlock()
	}).WaitTimeout(5 * time.Second)
	return w
}

// wait returns the last payload of topic once it satisfies ok.
func (w *haWatcher) wait(t *testing.T, topic string, ok func(string) bool) string {
	t.Helper()
	var p string
	testkit.Eventually(t, 10*time.Second, func() bool {
		var seen bool
		p, seen = w.payload(topic)
		return seen && ok(p)
	}, "topic %s never matched; last payload %q", topic, testkit.Lazy(func() string { p, _ := w.payload(topic); return p }))
	return p
}

// payload returns the last payload of topic and whether there was one.
func (w *haWatcher) payload(topic string) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p, seen := w.last[topic]
	return p, seen
}

func TestHomeAssistantEntitiesAndButton(t *testing.T) {
	haAddr := testkit.StartMosquitto(t).Addr
	cfg := hubkit.Config(t, fmt.Sprintf("home_assistant:\n  discovery: true\n  broker: mqtt://%s\n", haAddr))
	watcher := watchHA(t, haAddr)
	h := runHub(t, cfg, Options{Version: "test"})

	watcher.wait(t, "homeassistant/device/hearth_hub/config", func(p string) bool { return strings.Contains(p, `"cmps"`) })

	// An enrolled, committed device appears as a Home Assistant device with its expiry.
	pair, reply, _ := enroll(t, h, "thermostat-hall")
	dev, err := client(t, h, "thermostat-hall", "", &pair)
	if err != nil {
		t.Fatal(err)
	}
	request(t, dev, h.topics.Device("thermostat-hall", protocol.KindCommit),
		&protocol.Commit{V: 1, RequestID: "enroll-1", Serial: reply.Serial, Outcome: protocol.OutcomeCommitted, Time: time.Now()},
		h.topics.Device("thermostat-hall", protocol.KindAck))
	cfgTopic := "homeassistant/device/hearth_thermostat-hall/config"
	config := watcher.wait(t, cfgTopic, func(p string) bool { return strings.Contains(p, "hearth/bridge/request/device/renew") })
	for _, want := range []string{`"device_class":"timestamp"`, `"default_entity_id"`, `"unique_id"`, `"via_device":"hearth_hub"`, `"o":`} {
		if !strings.Contains(config, want) {
			t.Errorf("discovery config lacks %s:\n%s", want, config)
		}
	}
	stateTopic := "hearth/hass/device/thermostat-hall/state"
	before := watcher.wait(t, stateTopic, func(p string) bool { return strings.Contains(p, `"expires":"20`) })

	// A renewal moves the entity's expiry. The policy is changed to a shorter lifetime first,
	// so the new certificate expires at a visibly different instant even within a second.
	os.WriteFile(filepath.Join(cfg.DataDir, "policy.yaml"), []byte("version: 1\nclasses:\n  - name: default\n    lifetime: 10d\n"), 0o600)
	if _, err := h.ReloadPolicy(t.Context()); err != nil {
		t.Fatal(err)
	}
	newPair, newSerial, err := tryRenew(t, h, "thermostat-hall", pair, reply.Serial, "renew-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := tryCommit(t, h, "thermostat-hall", newPair, "renew-1", newSerial); err != nil {
		t.Fatal(err)
	}
	oldExpiry := before[strings.Index(before, `"expires":`):][:len(`"expires":"2026-12-26T00:13:25Z"`)]
	after := watcher.wait(t, stateTopic, func(p string) bool { return !strings.Contains(p, oldExpiry) && strings.Contains(p, `"expires":"20`) })
	t.Logf("state before renewal %s, after %s", before, after)
	dev, err = client(t, h, "thermostat-hall", "", &newPair)
	if err != nil {
		t.Fatal(err)
	}

	// Pressing "Renew certificate" in Home Assistant sends a renew command to the device.
	cmds := make(chan protocol.Command, 1)
	dev.Subscribe(h.topics.Device("thermostat-hall", protocol.KindCmd), 1, func(_ mqtt.Client, m mqtt.Message) {
		var c protocol.Command
		if protocol.Decode(m.Payload(), &c) == nil {
			cmds <- c
		}
	}).WaitTimeout(5 * time.Second)
	watcher.c.Publish("hearth/bridge/request/device/renew", 1, false, `{"id":"thermostat-hall","transaction":"ha-1"}`).WaitTimeout(5 * time.Second)
	select {
	case c := <-cmds:
		if c.Action != protocol.ActionRenew {
			t.Errorf("command = %+v, want renew", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the button press did not reach the device")
	}
	watcher.wait(t, "hearth/bridge/response/device/renew", func(p string) bool { return strings.Contains(p, `"transaction":"ha-1"`) })

	// token/create is refused from HA's broker: its answer carries a secret.
	watcher.c.Publish("hearth/bridge/request/token/create", 1, false, `{"id":"x","transaction":"ha-2"}`).WaitTimeout(5 * time.Second)
	watcher.wait(t, "hearth/bridge/response/token/create", func(p string) bool {
		return strings.Contains(p, `"status":"error"`) && !strings.Contains(p, "hst_")
	})

	// Removing the device clears its entities.
	if resp := h.Admin().Do(t.Context(), "test", "device/remove", []byte(`{"id":"thermostat-hall"}`)); resp.Status != "ok" {
		t.Fatalf("remove: %+v", resp)
	}
	watcher.wait(t, cfgTopic, func(p string) bool { return p == "" })
}

// TestLateSupervisorStillStartsDiscovery: the Supervisor first answers that Home Assistant
// has no MQTT service (Mosquitto starts after Hearth), then 401, then the broker: discovery
// starts without a restart, under a client id that names this hub.
func TestLateSupervisorStillStartsDiscovery(t *testing.T) {
	m := testkit.StartMosquitto(t)
	var mu sync.Mutex
	calls := 0
	sup := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path != "/services/mqtt" || r.Header.Get("Authorization") != "Bearer tok":
			w.WriteHeader(http.StatusNotFound)
		case n == 1:
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"result":"error","message":"No mqtt service"}`))
		case n == 2:
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"result":"error","message":"Unauthorized"}`))
		default:
			fmt.Fprintf(w, `{"result":"ok","data":{"host":"127.0.0.1","port":%d,"ssl":false,"protocol":"3.1.1","username":"addons","password":"pw"}}`, m.Port)
		}
	}))
	defer sup.Close()
	cfg := hubkit.Config(t, "home_assistant:\n  discovery: true\n")
	cfg.HA.SupervisorURL, cfg.HA.SupervisorToken = sup.URL, "tok"
	watcher := watchHA(t, m.Addr)
	h := runHub(t, cfg, Options{Version: "test"})
	watcher.wait(t, "homeassistant/device/hearth_hub/config", func(p string) bool { return strings.Contains(p, `"cmps"`) })
	mu.Lock()
	if calls < 3 {
		t.Errorf("Supervisor asked %d times, want at least 3 (two refusals, then the broker)", calls)
	}
	mu.Unlock()
	if id := h.haClientID(); !strings.HasPrefix(id, "hearth-hass-") || len(id) != len("hearth-hass-")+12 {
		t.Errorf("client id %q, want hearth-hass- and 12 characters of the CA fingerprint", id)
	}
}
