package hass

import (
	"bytes"
	"encoding/json"
	"flag"
	"github.com/google/go-cmp/cmp"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/monitor"
	"github.com/hearth-pki/hearth/protocol"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var testTopics = topics{discovery: "homeassistant", prefix: "hearth", birthTopic: DefaultBirthTopic, dashboard: "homeassistant://hassio/ingress/a0d7b954_hearth"}

var (
	expires  = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	lastSeen = time.Date(2026, 4, 20, 8, 30, 15, 999, time.FixedZone("CEST", 2*3600))
)

func thermostat() Device {
	return Device{
		ID: "thermostat-1", Name: "Hall thermostat", Model: "T100", Vendor: "Acme", Firmware: "2.4.1", Agent: true,
		Family: "thermostat", AgentVersion: "0.1.0", Arch: "armv7",
		Expires: expires, LastSeen: lastSeen, Problems: []protocol.Problem{
			{Code: monitor.ProblemExpiring, Text: "past the end of its renewal window at 2026-04-25T00:00:00Z (class default); the certificate expires 2026-05-01T12:00:00Z"},
			{Code: monitor.ProblemRenewalFailing, Text: "3 renewal attempt(s) in a row failed, the last with: command not sent"},
			{Code: monitor.ProblemExpiring}},
	}
}

func testHub() Hub {
	return Hub{
		Version: "0.1.0", Online: true, Devices: 12, ExpiringSoon: 1, SuccessRate24h: 97.54,
		CAExpires: time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC), RootExpires: time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC),
		BrokerExpires: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

// golden compares got, indented, with testdata/name, or rewrites the file with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	if !json.Valid(got) {
		t.Fatalf("%s: payload is not JSON: %s", name, got)
	}
	var indented bytes.Buffer
	if err := json.Indent(&indented, got, "", "  "); err != nil {
		t.Fatal(err)
	}
	indented.WriteByte('\n')
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, indented.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(indented.Bytes(), want) {
		t.Errorf("%s differs from the golden file (run go test -update if the change is meant):\ngot:\n%s\nwant:\n%s", name, indented.Bytes(), want)
	}
}

func TestPayloadsGolden(t *testing.T) {
	bare := Device{ID: "plug.kitchen/1"}
	tests := []struct {
		name string
		got  []byte
	}{
		{"device_config.json", deviceConfig(testTopics, "0.1.0", thermostat())},
		{"device_state.json", deviceStatePayload(thermostat())},
		{"device_config_bare.json", deviceConfig(testTopics, "0.1.0", bare)},
		{"device_state_bare.json", deviceStatePayload(bare)},
		{"hub_config.json", hubConfig(testTopics, testHub())},
		{"hub_state.json", hubStatePayload(testHub())},
		{"hub_state_no_renewals.json", hubStatePayload(Hub{Version: "0.1.0", SuccessRate24h: math.NaN(), Problem: "CA expires in 20 days"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { golden(t, tt.name, tt.got) })
	}
}

// TestDiscoveryRequiredKeys checks, beyond the golden files, what Home Assistant requires of a
// device-based discovery message.
func TestDiscoveryRequiredKeys(t *testing.T) {
	payloads := map[string][]byte{
		"device":     deviceConfig(testTopics, "0.1.0", thermostat()),
		"odd device": deviceConfig(testTopics, "0.1.0", Device{ID: "Ünïcode dev"}),
		"hub":        hubConfig(testTopics, testHub()),
	}
	for name, payload := range payloads {
		t.Run(name, func(t *testing.T) { checkDiscovery(t, payload) })
	}
}

var (
	entityIDPattern = regexp.MustCompile(`^(sensor|binary_sensor|button|event)\.[a-z0-9_]+$`)
	uniqueIDPattern = regexp.MustCompile(`^hearth_[A-Za-z0-9_-]+$`)
)

// checkDiscovery fails t unless payload is a complete device-based discovery message.
func checkDiscovery(t *testing.T, payload []byte) {
	t.Helper()
	var msg map[string]any
	if err := json.Unmarshal(payload, &msg); err != nil {
		t.Fatalf("discovery payload is not a JSON object: %v", err)
	}
	dev, _ := msg["dev"].(map[string]any)
	if ids, _ := dev["identifiers"].([]any); len(ids) == 0 {
		t.Errorf("dev.identifiers missing in %s", payload)
	}
	if name, _ := dev["name"].(string); name == "" {
		t.Errorf("dev.name missing in %s", payload)
	}
	if o, _ := msg["o"].(map[string]any); o["name"] != "Hearth" || o["url"] == nil {
		t.Errorf("origin = %v, want name Hearth and a url", msg["o"])
	}
	cmps, _ := msg["cmps"].(map[string]any)
	if len(cmps) == 0 {
		t.Fatalf("no cmps in %s", payload)
	}
	uniques := map[string]bool{}
	for key, v := range cmps {
		c, _ := v.(map[string]any)
		for _, k := range []string{"platform", "name", "unique_id", "default_entity_id"} {
			if s, _ := c[k].(string); s == "" {
				t.Errorf("cmps.%s has no %s", key, k)
			}
		}
		if _, ok := c["object_id"]; ok {
			t.Errorf("cmps.%s uses object_id, removed from Home Assistant", key)
		}
		if id, _ := c["default_entity_id"].(string); !entityIDPattern.MatchString(id) || !strings.HasPrefix(id, c["platform"].(string)+".") {
			t.Errorf("cmps.%s default_entity_id = %q, want <platform>.<lowercase slug>", key, id)
		}
		uid, _ := c["unique_id"].(string)
		if !uniqueIDPattern.MatchString(uid) || uniques[uid] {
			t.Errorf("cmps.%s unique_id = %q: not valid or not unique", key, uid)
		}
		uniques[uid] = true
		avail, _ := c["availability"].([]any)
		if len(avail) == 0 || avail[0].(map[string]any)["topic"] != "hearth/bridge/state" {
			t.Errorf("cmps.%s availability = %v, want hearth/bridge/state first", key, c["availability"])
		}
		if len(avail) > 1 && c["availability_mode"] != "all" {
			t.Errorf("cmps.%s has %d availability entries, availability_mode %v; want all", key, len(avail), c["availability_mode"])
		}
		switch c["platform"] {
		case "button":
			if c["command_topic"] != "hearth/bridge/request/device/renew" || c["payload_press"] == nil || c["entity_category"] != "config" {
				t.Errorf("cmps.%s button = %v, want the renew request topic, a payload and entity_category config", key, c)
			}
			continue
		case "event":
			if c["state_topic"] == nil || len(c["event_types"].([]any)) == 0 {
				t.Errorf("cmps.%s event = %v, want a state_topic and event_types", key, c)
			}
			continue
		}
		if c["state_topic"] == nil || c["value_template"] == nil {
			t.Errorf("cmps.%s has no state_topic or value_template", key)
		}
	}
}

func TestRenewButtonPayloadCarriesTheRealID(t *testing.T) {
	id := `odd "id"/+#`
	var msg discoveryPayload
	if err := json.Unmarshal(deviceConfig(testTopics, "", Device{ID: id, Agent: true}), &msg); err != nil {
		t.Fatal(err)
	}
	var press struct{ ID string }
	if err := json.Unmarshal([]byte(msg.Components["renew_certificate"].PayloadPress), &press); err != nil || press.ID != id {
		t.Errorf("payload_press = %s, want {\"id\": %q}", msg.Components["renew_certificate"].PayloadPress, id)
	}
}

// TestDeviceInfo: the discovery payload carries what the agent and the token told the hub,
// and links the device and the hub to the dashboard.
func TestDeviceInfo(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    Device
		want deviceInfo
	}{
		{"reported", Device{ID: "plug 1", Model: "Smart Plug 2", Vendor: "Acme", Family: "plug", AgentVersion: "0.3.0", Arch: "mipsle", Agent: true},
			deviceInfo{Identifiers: []string{"hearth_" + objectID("plug 1")}, Name: "plug 1", Model: "Smart Plug 2", Manufacturer: "Acme",
				SWVersion: "hearth-agent 0.3.0", HWVersion: "mipsle", ViaDevice: "hearth_hub",
				ConfigurationURL: "homeassistant://hassio/ingress/a0d7b954_hearth/devices/plug%201"}},
		{"family as model, firmware first", Device{ID: "cam", Family: "camera", Firmware: "4.2", AgentVersion: "0.3.0"},
			deviceInfo{Identifiers: []string{"hearth_cam"}, Name: "cam", Model: "camera", SWVersion: "4.2", ViaDevice: "hearth_hub",
				ConfigurationURL: "homeassistant://hassio/ingress/a0d7b954_hearth/devices/cam"}},
	} {
		var msg discoveryPayload
		if err := json.Unmarshal(deviceConfig(testTopics, "", tc.d), &msg); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, msg.Device); diff != "" {
			t.Errorf("%s: device info (-want +got):\n%s", tc.name, diff)
		}
	}
	var hub discoveryPayload
	if err := json.Unmarshal(hubConfig(testTopics, testHub()), &hub); err != nil {
		t.Fatal(err)
	}
	if hub.Device.ConfigurationURL != "homeassistant://hassio/ingress/a0d7b954_hearth" {
		t.Errorf("hub configuration_url = %q, want the ingress panel", hub.Device.ConfigurationURL)
	}
}

// TestNoRenewButtonWithoutAgent: a device without an agent (imported) cannot be commanded,
// so it gets no button that would fail silently.
func TestNoRenewButtonWithoutAgent(t *testing.T) {
	var msg discoveryPayload
	if err := json.Unmarshal(deviceConfig(testTopics, "", Device{ID: "meter", Agent: false}), &msg); err != nil {
		t.Fatal(err)
	}
	if _, ok := msg.Components["renew_certificate"]; ok {
		t.Errorf("agentless device has a Renew button: %v", msg.Components)
	}
	if _, ok := msg.Components["certificate_expires"]; !ok {
		t.Errorf("agentless device lacks its expiry sensor: %v", msg.Components)
	}
}

func TestObjectID(t *testing.T) {
	tests := []struct {
		id   string
		want string // "" means: cleaned and hashed
	}{
		{"thermostat-1", "thermostat-1"},
		{"Plug_2", "Plug_2"},
		{strings.Repeat("a", 64), strings.Repeat("a", 64)},
		{"hub", ""},
		{"", ""},
		{"a.b", ""},
		{"a/b", ""},
		{"a+b#", ""},
		{"ünï", ""},
		{strings.Repeat("a", 65), ""},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		got := objectID(tt.id)
		if tt.want != "" && got != tt.want {
			t.Errorf("objectID(%q) = %q, want %q", tt.id, got, tt.want)
		}
		if tt.want == "" && (got == tt.id || !regexp.MustCompile(`^[A-Za-z0-9_-]{0,48}_[0-9a-f]{8}$`).MatchString(got)) {
			t.Errorf("objectID(%q) = %q, want a cleaned id with a hash suffix", tt.id, got)
		}
		if other, ok := seen[got]; ok {
			t.Errorf("objectID(%q) = objectID(%q) = %q", tt.id, other, got)
		}
		seen[got] = tt.id
	}
	// Ids that clean to the same text still get distinct object ids.
	if objectID("a.b") == objectID("a:b") {
		t.Errorf("objectID(%q) = objectID(%q)", "a.b", "a:b")
	}
	if got := objectID("a.b"); got != objectID("a.b") {
		t.Errorf("objectID(%q) is not stable", "a.b")
	}
}

func TestConfigObjectID(t *testing.T) {
	tests := []struct{ topic, want string }{
		{"homeassistant/device/hearth_plug-1/config", "plug-1"},
		{"homeassistant/device/hearth_hub/config", "hub"},
		{"homeassistant/device/zigbee_plug/config", ""},
		{"homeassistant/device/hearth_/config", ""},
		{"homeassistant/sensor/hearth_x/config", ""},
		{"other/device/hearth_x/config", ""},
		{"homeassistant/device/hearth_x/state", ""},
	}
	for _, tt := range tests {
		if got := configObjectID(testTopics, tt.topic); got != tt.want {
			t.Errorf("configObjectID(%q) = %q, want %q", tt.topic, got, tt.want)
		}
	}
}

func TestHubStateSuccessRate(t *testing.T) {
	tests := []struct {
		rate float64
		want string
	}{
		{100, `"success_rate_24h":100`},
		{97.54, `"success_rate_24h":97.5`},
		{0, `"success_rate_24h":0`},
		{math.NaN(), `"success_rate_24h":null`},
		{math.Inf(1), `"success_rate_24h":null`},
	}
	for _, tt := range tests {
		if got := hubStatePayload(Hub{SuccessRate24h: tt.rate}); !bytes.Contains(got, []byte(tt.want)) {
			t.Errorf("hubStatePayload(rate %v) = %s, want it to contain %s", tt.rate, got, tt.want)
		}
	}
}
