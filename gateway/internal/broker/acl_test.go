package broker

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/protocol"
)

func TestGrantMayRead(t *testing.T) {
	tp, _ := protocol.NewTopics("home")
	device := newGrant(tp, Identity{Role: RoleDevice, DeviceID: "a"})
	enrolling := newGrant(tp, Identity{Role: RoleEnrolling, DeviceID: "a"})
	admin := newGrant(tp, Identity{Role: RoleAdmin, Username: "admin"})
	none := newGrant(tp, Identity{})
	tests := []struct {
		filter                   string
		device, enrolling, admin bool
	}{
		{"home/v1/dev/a/cert", true, true, true},
		{"home/v1/dev/a/ack", true, false, true},
		{"home/v1/dev/a/cmd", true, false, true},
		{"home/v1/dev/a/renewal", true, false, true},
		{"home/v1/ca", true, true, true},
		{"home/v1/crl", true, false, true},
		{"home/v1/dev/a/csr", false, false, true},
		{"home/v1/dev/a/state", false, false, true},
		{"home/v1/dev/b/cert", false, false, true},
		{"home/v1/dev/a/#", false, false, true},
		{"home/v1/dev/+/cert", false, false, true},
		{"home/#", false, false, true},
		{"home/bridge/response/token/create", false, false, true},
		{"#", false, false, false},
		{"+/v1/ca", false, false, false},
		{"$SYS/#", false, false, false},
		{"$share/g/home/#", false, false, false},
		{"hearth/v1/ca", false, false, false},
		{"home", false, false, false},
		{"homes/v1/ca", false, false, false},
	}
	for _, tt := range tests {
		for _, c := range []struct {
			name string
			g    *grant
			want bool
		}{{"device", device, tt.device}, {"enrolling", enrolling, tt.enrolling}, {"admin", admin, tt.admin}, {"none", none, false}} {
			if got := c.g.mayRead(tt.filter); got != c.want {
				t.Errorf("%s.mayRead(%q) = %v, want %v", c.name, tt.filter, got, c.want)
			}
		}
	}
}

func TestGrantMayPublish(t *testing.T) {
	var tp protocol.Topics
	device := newGrant(tp, Identity{Role: RoleDevice, DeviceID: "a"})
	enrolling := newGrant(tp, Identity{Role: RoleEnrolling, DeviceID: "a"})
	admin := newGrant(tp, Identity{Role: RoleAdmin})
	tests := []struct {
		topic                    string
		device, enrolling, admin bool
	}{
		{tp.Device("a", protocol.KindCSR), true, true, false},
		{tp.Device("a", protocol.KindCommit), true, false, false},
		{tp.Device("a", protocol.KindHealth), true, false, false},
		{tp.Device("a", protocol.KindState), true, false, false},
		{tp.Device("a", protocol.KindCert), false, false, false},
		{tp.Device("a", protocol.KindAck), false, false, false},
		{tp.Device("a", protocol.KindCmd), false, false, false},
		{tp.Device("a", protocol.KindRenewal), false, false, false},
		{tp.Device("b", protocol.KindCSR), false, false, false},
		{tp.CA(), false, false, false},
		{tp.BridgeRequest("device/renew"), false, false, true},
		{tp.BridgeResponse("device/renew"), false, false, false},
		{tp.Bridge(protocol.KindBridgeState), false, false, false},
	}
	for _, tt := range tests {
		top, err := tp.Parse(tt.topic)
		if err != nil {
			t.Fatalf("Parse(%q) = %v", tt.topic, err)
		}
		for _, c := range []struct {
			name string
			g    *grant
			want bool
		}{{"device", device, tt.device}, {"enrolling", enrolling, tt.enrolling}, {"admin", admin, tt.admin}} {
			if got := c.g.mayPublish(top); got != c.want {
				t.Errorf("%s.mayPublish(%q) = %v, want %v", c.name, tt.topic, got, c.want)
			}
		}
	}
}

func TestCheckClientID(t *testing.T) {
	dev := Identity{Role: RoleDevice, DeviceID: "a"}
	admin := Identity{Role: RoleAdmin}
	tests := []struct {
		name     string
		id       Identity
		clientID string
		assigned bool
		ok       bool
	}{
		{"device id", dev, "a", false, true},
		{"device id with suffix", dev, "a:agent", false, true},
		{"assigned", dev, "cv1k2t3", true, true},
		{"other device", dev, "b", false, false},
		{"longer id", dev, "a-1", false, false},
		{"prefix without colon", dev, "aa", false, false},
		{"inline", dev, "inline", false, false},
		{"admin anything", admin, "console", false, true},
		{"admin inline", admin, "inline", false, false},
	}
	for _, tt := range tests {
		err := checkClientID(tt.id, tt.clientID, tt.assigned)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrRefused)) {
			t.Errorf("checkClientID(%s: %v, %q) = %v, want ok=%v", tt.name, tt.id.Role, tt.clientID, err, tt.ok)
		}
	}
}

func TestTokenBucket(t *testing.T) {
	var b tokenBucket
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		at   time.Duration
		want bool
	}{
		{0, true}, {0, true}, {0, false}, // burst 2
		{500 * time.Millisecond, true}, {500 * time.Millisecond, false}, // 2/s refills one in 0.5 s
		{-time.Hour, false},                                                           // a clock going back refills nothing
		{10 * time.Second, true}, {10 * time.Second, true}, {10 * time.Second, false}, // capped at burst
	}
	for i, s := range steps {
		if got := b.allow(t0.Add(s.at), 2, 2); got != s.want {
			t.Errorf("step %d: allow(t0%+v) = %v, want %v", i, s.at, got, s.want)
		}
	}
}

func TestNextDelay(t *testing.T) {
	var d time.Duration
	var got []time.Duration
	for range 10 {
		d = nextDelay(d)
		got = append(got, d)
	}
	if got[0] != 5*time.Millisecond || got[1] != 10*time.Millisecond || got[9] != time.Second || got[8] != time.Second {
		t.Errorf("nextDelay sequence = %v, want 5ms doubling to 1s", got)
	}
}

// matches reports whether an MQTT filter matches a topic name.
func matches(filter, topic string) bool {
	f, n := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, level := range f {
		if level == "#" {
			return true
		}
		if i >= len(n) || (level != "+" && level != n[i]) {
			return false
		}
	}
	return len(f) == len(n)
}

// FuzzDeviceRead checks, for any filter a client sends, that a device's or enrolling
// session's grant never admits a filter that could match another device's topic or a
// topic it may not read, and that an admin grant stays under the prefix.
func FuzzDeviceRead(f *testing.F) {
	for _, s := range []string{"hearth/v1/dev/a/cert", "hearth/v1/dev/+/cert", "hearth/#", "#", "hearth/v1/dev/a/#",
		"$share/x/hearth/v1/dev/a/cmd", "hearth/v1/ca", "hearth/v1/dev/a/cert/+", "hearth/v1/dev/a/+"} {
		f.Add(s)
	}
	var tp protocol.Topics
	others := []string{tp.Device("b", protocol.KindCert), tp.Device("b", protocol.KindCmd), tp.Device("a", protocol.KindCSR),
		tp.Device("a", protocol.KindState), tp.BridgeResponse("token/create"), tp.BridgeRequest("device/renew"), "$SYS/broker/uptime"}
	grants := []*grant{
		newGrant(tp, Identity{Role: RoleDevice, DeviceID: "a"}),
		newGrant(tp, Identity{Role: RoleEnrolling, DeviceID: "a"}),
	}
	admin := newGrant(tp, Identity{Role: RoleAdmin})
	f.Fuzz(func(t *testing.T, filter string) {
		for _, g := range grants {
			if !g.mayRead(filter) {
				continue
			}
			if strings.ContainsAny(filter, "+#") {
				t.Errorf("%v grant admits wildcard filter %q", g.id.Role, filter)
			}
			for _, o := range others {
				if matches(filter, o) {
					t.Errorf("%v grant admits %q, which matches %q", g.id.Role, filter, o)
				}
			}
		}
		if admin.mayRead(filter) && !strings.HasPrefix(filter, "hearth/") {
			t.Errorf("admin grant admits %q outside the prefix", filter)
		}
	})
}
