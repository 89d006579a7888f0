package natsbroker

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hearth-pki/hearth/gateway/internal/broker"
	"github.com/hearth-pki/hearth/protocol"
)

func TestNameRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		s    session
		want string
	}{
		{"device", session{id: broker.Identity{Role: broker.RoleDevice, DeviceID: "hall.thermostat", Serial: "1f2e", Conn: 7}},
			"hearth|device|7|0|1f2e|hall.thermostat"},
		{"recovery", session{id: broker.Identity{Role: broker.RoleDevice, DeviceID: "cam-1", Serial: "ab", Conn: 8, Expired: true}},
			"hearth|device|8|1|ab|cam-1"},
		{"enrolling", session{id: broker.Identity{Role: broker.RoleEnrolling, DeviceID: "cam-1", Username: "cam-1", Conn: 9}},
			"hearth|enrolling|9|0||cam-1"},
		{"admin with a bar in its name", session{id: broker.Identity{Role: broker.RoleAdmin, Username: "ops|night", Conn: 10}},
			"hearth|admin|10|0||ops|night"},
		{"refused", session{id: broker.Identity{Role: broker.RoleRefused, DeviceID: "cam-1", Conn: 11}, refusal: protocol.Code("locked_out"), retry: 30 * time.Second},
			"hearth|refused|11|0|locked_out:30|cam-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := formatName(tt.s)
			if got != tt.want {
				t.Fatalf("formatName = %q, want %q", got, tt.want)
			}
			back, err := parseName(got)
			if err != nil {
				t.Fatalf("parseName(%q): %v", got, err)
			}
			if diff := cmp.Diff(tt.s, back, cmp.AllowUnexported(session{})); diff != "" {
				t.Errorf("parseName(%q) (-want +got):\n%s", got, diff)
			}
		})
	}
}

func TestParseNameRefuses(t *testing.T) {
	for _, name := range []string{
		"", "hub", "hearth|", "hearth|device|1|0|ab", "hearth|root|1|0|ab|x", "hearth|device|0|0|ab|x",
		"hearth|device|x|0|ab|x", "hearth|device|1|2|ab|x", "hearth|device|1|0||x", "hearth|device|1|0|XY|x",
		"hearth|device|1|0|ab|Bad Id", "hearth|refused|1|0|locked_out|x", "hearth|refused|1|0|:5|x",
		"hearth|refused|1|0|locked_out:-1|x",
	} {
		if s, err := parseName(name); !errors.Is(err, errName) {
			t.Errorf("parseName(%q) = %+v, %v; want errName", name, s, err)
		}
	}
}

// FuzzParseName: a name from the server's events never panics, and one that parses formats
// back to a name that parses to the same session.
func FuzzParseName(f *testing.F) {
	f.Add("hearth|device|7|0|1f2e|hall.thermostat")
	f.Add("hearth|admin|10|0||ops|night")
	f.Add("hearth|refused|11|0|locked_out:30|cam-1")
	f.Fuzz(func(t *testing.T, name string) {
		s, err := parseName(name)
		if err != nil {
			return
		}
		again, err := parseName(formatName(s))
		if err != nil {
			t.Fatalf("parseName(formatName(%+v)): %v", s, err)
		}
		if diff := cmp.Diff(s, again, cmp.AllowUnexported(session{})); diff != "" {
			t.Errorf("round trip of %q (-first +second):\n%s", name, diff)
		}
	})
}

func TestSubject(t *testing.T) {
	tests := []struct{ topic, subj string }{
		{"hearth/v1/dev/hall.thermostat/csr", "hearth.v1.dev.hall//thermostat.csr"},
		{"hearth/bridge/request/device/renew", "hearth.bridge.request.device.renew"},
		{"hearth/v1/ca", "hearth.v1.ca"},
		{"a.b.c/d", "a//b//c.d"},
	}
	for _, tt := range tests {
		if got := subject(tt.topic); got != tt.subj {
			t.Errorf("subject(%q) = %q, want %q", tt.topic, got, tt.subj)
		}
		if got := topicOf(tt.subj); got != tt.topic {
			t.Errorf("topicOf(%q) = %q, want %q", tt.subj, got, tt.topic)
		}
	}
}

// FuzzSubject: an MQTT topic name without empty levels maps to a NATS subject and back
// unchanged, and any subject converts without panicking.
func FuzzSubject(f *testing.F) {
	f.Add("hearth/v1/dev/hall.thermostat/csr")
	f.Add("a./b/.c")
	f.Fuzz(func(t *testing.T, topic string) {
		_ = topicOf(topic)
		if topic == "" || strings.Contains(topic, "//") || strings.HasPrefix(topic, "/") || strings.HasSuffix(topic, "/") {
			return
		}
		if got := topicOf(subject(topic)); got != topic {
			t.Errorf("topicOf(subject(%q)) = %q", topic, got)
		}
	})
}
