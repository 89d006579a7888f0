package protocol

import (
	"errors"
	"testing"
)

func TestTopicsBuildAndParse(t *testing.T) {
	def := Topics{}
	home, err := NewTopics("home/pki")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		topics Topics
		topic  string
		want   Topic
	}{
		{"csr", def, def.Device("thermostat-hall", KindCSR), Topic{Kind: KindCSR, DeviceID: "thermostat-hall"}},
		{"cert", def, def.Device("cam.1", KindCert), Topic{Kind: KindCert, DeviceID: "cam.1"}},
		{"commit", def, def.Device("a", KindCommit), Topic{Kind: KindCommit, DeviceID: "a"}},
		{"ack", def, def.Device("a", KindAck), Topic{Kind: KindAck, DeviceID: "a"}},
		{"cmd", def, def.Device("a", KindCmd), Topic{Kind: KindCmd, DeviceID: "a"}},
		{"renewal", def, def.Device("a", KindRenewal), Topic{Kind: KindRenewal, DeviceID: "a"}},
		{"health", def, def.Device("a", KindHealth), Topic{Kind: KindHealth, DeviceID: "a"}},
		{"state", def, def.Device("a", KindState), Topic{Kind: KindState, DeviceID: "a"}},
		{"ca", def, def.CA(), Topic{Kind: KindCA}},
		{"crl", def, def.CRL(), Topic{Kind: KindCRL}},
		{"bridge state", def, def.Bridge(KindBridgeState), Topic{Kind: KindBridgeState}},
		{"bridge info", def, def.Bridge(KindBridgeInfo), Topic{Kind: KindBridgeInfo}},
		{"bridge devices", def, def.Bridge(KindBridgeDevices), Topic{Kind: KindBridgeDevices}},
		{"bridge event", def, def.Bridge(KindBridgeEvent), Topic{Kind: KindBridgeEvent}},
		{"request", def, def.BridgeRequest("device/renew"), Topic{Kind: KindBridgeRequest, Op: "device/renew"}},
		{"response", def, def.BridgeResponse("token/create"), Topic{Kind: KindBridgeResponse, Op: "token/create"}},
		{"custom prefix", home, home.Device("a", KindCSR), Topic{Kind: KindCSR, DeviceID: "a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.topics.Parse(tt.topic)
			if err != nil {
				t.Fatalf("Parse(%q) = %v", tt.topic, err)
			}
			if got != tt.want {
				t.Errorf("Parse(%q) = %+v, want %+v", tt.topic, got, tt.want)
			}
		})
	}
	if got, want := def.Device("thermostat-hall", KindCSR), "hearth/v1/dev/thermostat-hall/csr"; got != want {
		t.Errorf("Device() = %q, want %q", got, want)
	}
	if got, want := home.BridgeRequest("device/renew"), "home/pki/bridge/request/device/renew"; got != want {
		t.Errorf("BridgeRequest() = %q, want %q", got, want)
	}
	if got, want := def.AllDevices(KindHealth), "hearth/v1/dev/+/health"; got != want {
		t.Errorf("AllDevices() = %q, want %q", got, want)
	}
}

func TestParseRejects(t *testing.T) {
	for _, topic := range []string{
		"", "hearth", "other/v1/ca", "hearth/v2/dev/a/csr", "hearth/v1/dev/a", "hearth/v1/dev/a/csr/x",
		"hearth/v1/dev/A/csr", "hearth/v1/dev/+/csr", "hearth/v1/dev/#", "hearth/v1/dev/a/unknown",
		"hearth/v1/dev//csr", "hearth/bridge/request/", "hearth/bridge/request/a/b/c", "hearth/bridge/other",
		"hearth/v1/dev/-a/csr",
	} {
		if got, err := (Topics{}).Parse(topic); !errors.Is(err, ErrTopic) {
			t.Errorf("Parse(%q) = %+v, %v; want ErrTopic", topic, got, err)
		}
	}
}

func TestNewTopicsRejects(t *testing.T) {
	for _, p := range []string{"/hearth", "hearth/", "a//b", "a/+", "a/#", "sp ace"} {
		if _, err := NewTopics(p); err == nil {
			t.Errorf("NewTopics(%q) = nil error, want one", p)
		}
	}
}
