package protocol

import (
	"errors"
	"strings"
	"testing"
)

func TestBridgeDeviceTopic(t *testing.T) {
	def := Topics{}
	home, err := NewTopics("home/pki")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := def.BridgeDevice("lock-front"), "hearth/bridge/device/lock-front"; got != want {
		t.Errorf("BridgeDevice() = %q, want %q", got, want)
	}
	if got, want := home.BridgeDeviceFilter(), "home/pki/bridge/device/+"; got != want {
		t.Errorf("BridgeDeviceFilter() = %q, want %q", got, want)
	}
	for _, tp := range []Topics{def, home} {
		topic := tp.BridgeDevice("cam.1")
		got, err := tp.Parse(topic)
		if want := (Topic{Kind: KindBridgeDevice, DeviceID: "cam.1"}); err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v, want %+v", topic, got, err, want)
		}
	}
	for _, bad := range []string{"hearth/bridge/device/", "hearth/bridge/device/UPPER", "hearth/bridge/device/a/b", "hearth/bridge/device/+"} {
		if got, err := def.Parse(bad); !errors.Is(err, ErrTopic) {
			t.Errorf("Parse(%q) = %+v, %v, want ErrTopic", bad, got, err)
		}
	}
}

func TestDeviceListRequestValidate(t *testing.T) {
	tests := []struct {
		name string
		req  DeviceListRequest
		ok   bool
		size int
	}{
		{"empty", DeviceListRequest{}, true, DefaultDeviceListLimit},
		{"limit", DeviceListRequest{Limit: 7}, true, 7},
		{"largest", DeviceListRequest{Limit: MaxDeviceListLimit}, true, MaxDeviceListLimit},
		{"too large", DeviceListRequest{Limit: MaxDeviceListLimit + 1}, false, 0},
		{"negative", DeviceListRequest{Limit: -1}, false, 0},
		{"cursor", DeviceListRequest{Cursor: DeviceCursor("thermostat-hall")}, true, DefaultDeviceListLimit},
		{"cursor of an odd id", DeviceListRequest{Cursor: DeviceCursor(`odd"id\x`)}, true, DefaultDeviceListLimit},
		{"forged cursor", DeviceListRequest{Cursor: "../x"}, false, 0},
		{"long family", DeviceListRequest{Family: strings.Repeat("f", 65)}, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.req.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate(%+v) = %v, want ok %v", tt.req, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("Validate(%+v) = %v, want ErrInvalid", tt.req, err)
			}
			if tt.ok && tt.req.PageSize() != tt.size {
				t.Errorf("PageSize(%+v) = %d, want %d", tt.req, tt.req.PageSize(), tt.size)
			}
		})
	}
}

func TestDeviceCursor(t *testing.T) {
	for _, id := range []string{"a", "thermostat-hall", `odd"id\x`, strings.Repeat("z", 64)} {
		r := DeviceListRequest{Cursor: DeviceCursor(id)}
		if got, err := r.After(); err != nil || got != id {
			t.Errorf("After(DeviceCursor(%q)) = %q, %v, want the id", id, got, err)
		}
	}
	if got, err := (&DeviceListRequest{}).After(); err != nil || got != "" {
		t.Errorf("After() of the first page = %q, %v, want \"\"", got, err)
	}
}

func TestBridgeStateRejects(t *testing.T) {
	tests := []struct {
		name string
		m    Message
	}{
		{"device without id", &BridgeDevice{V: Version}},
		{"device with a bad serial", &BridgeDevice{V: Version, DeviceSummary: DeviceSummary{ID: "a", Serial: "XYZ"}}},
		{"problem without code", &BridgeDevice{V: Version, DeviceSummary: DeviceSummary{ID: "a", ProblemDetails: []Problem{{Text: "x"}}}}},
		{"device of another version", &BridgeDevice{V: 2, DeviceSummary: DeviceSummary{ID: "a"}}},
		{"summary without time", &BridgeDevices{V: Version}},
		{"negative count", &BridgeDevices{V: Version, Total: -1, Updated: t0}},
		{"negative state count", &BridgeDevices{V: Version, States: map[string]int{"active": -1}, Updated: t0}},
		{"empty problem code", &BridgeDevices{V: Version, Problems: map[string]int{"": 1}, Updated: t0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Encode(tt.m); !errors.Is(err, ErrInvalid) {
				t.Errorf("Encode(%+v) = %v, want ErrInvalid", tt.m, err)
			}
		})
	}
}

func FuzzBridgeDevice(f *testing.F) { fuzzDecoder(f, func() Message { return new(BridgeDevice) }) }
func FuzzDeviceListRequest(f *testing.F) {
	fuzzDecoder(f, func() Message { return new(DeviceListRequest) })
}
