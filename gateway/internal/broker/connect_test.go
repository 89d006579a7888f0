package broker

import (
	"crypto/tls"
	"errors"
	"testing"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/hearth-pki/hearth/protocol"
)

// TestConnect checks who may connect, with real paho clients (MQTT 3.1.1) over TLS.
func TestConnect(t *testing.T) {
	e := start(t, nil)
	tp := e.topic
	e.auth.tokens["dev-new"] = "tok-123"
	revoked := e.pki.device(t, "dev-revoked")
	e.auth.revoke(revoked.serial)
	other := newPKI(t).device(t, "dev-a") // right name, wrong CA

	type tc struct {
		name     string
		clientID string
		cert     *device
		user     string
		pass     string
		will     string // Will topic, "" for none
		willBody string // Will payload, default {"v":1,"state":"offline"}
		wantRole Role   // 0: refused
	}
	a := &e.a
	tests := []tc{
		{name: "device certificate", clientID: "dev-a", cert: a, wantRole: RoleDevice},
		{name: "device certificate, username is the device", clientID: "dev-a", cert: a, user: "dev-a", wantRole: RoleDevice},
		{name: "device certificate, client id with suffix", clientID: "dev-a:agent", cert: a, wantRole: RoleDevice},
		{name: "device certificate, assigned client id", clientID: "", cert: a, wantRole: RoleDevice},
		{name: "device certificate, other username", clientID: "dev-a", cert: a, user: "dev-b", pass: "x"},
		{name: "device certificate, admin username", clientID: "dev-a", cert: a, user: "admin", pass: "admin-secret"},
		{name: "device certificate, other device's client id", clientID: "dev-b", cert: a},
		{name: "device certificate, prefix of other client id", clientID: "dev-a-2", cert: a},
		{name: "device certificate, inline client id", clientID: "inline", cert: a},
		{name: "revoked certificate", clientID: "dev-revoked", cert: &revoked},
		{name: "certificate from another CA", clientID: "dev-a", cert: &other},
		{name: "enrolling with its token", clientID: "dev-new", user: "dev-new", pass: "tok-123", wantRole: RoleEnrolling},
		{name: "enrolling with a bad token", clientID: "dev-new", user: "dev-new", pass: "tok-999"},
		{name: "enrolling with another device's token", clientID: "dev-a", user: "dev-a", pass: "tok-123"},
		{name: "enrolling with another device's client id", clientID: "dev-b", user: "dev-new", pass: "tok-123"},
		{name: "enrolling with a Will", clientID: "dev-new", user: "dev-new", pass: "tok-123", will: tp.Device("dev-new", protocol.KindState)},
		{name: "no certificate, no credentials", clientID: "dev-a"},
		{name: "username without password", clientID: "dev-new", user: "dev-new"},
		{name: "admin", clientID: "console", user: "admin", pass: "admin-secret", wantRole: RoleAdmin},
		{name: "admin, bad password", clientID: "console", user: "admin", pass: "nope"},
		{name: "admin with a Will", clientID: "console", user: "admin", pass: "admin-secret", will: tp.Bridge(protocol.KindBridgeState)},
		{name: "admin, inline client id", clientID: "inline", user: "admin", pass: "admin-secret"},
		{name: "Will on own state", clientID: "dev-a", cert: a, will: tp.Device("dev-a", protocol.KindState), wantRole: RoleDevice},
		{name: "Will on another device's state", clientID: "dev-a", cert: a, will: tp.Device("dev-b", protocol.KindState)},
		{name: "Will on own state, junk payload", clientID: "dev-a", cert: a, will: tp.Device("dev-a", protocol.KindState), willBody: "junk"},
		{name: "Will on own state, unknown state", clientID: "dev-a", cert: a, will: tp.Device("dev-a", protocol.KindState), willBody: `{"v":1,"state":"gone"}`},
		{name: "Will on own csr", clientID: "dev-a", cert: a, will: tp.Device("dev-a", protocol.KindCSR)},
		{name: "Will on a bridge request", clientID: "dev-a", cert: a, will: tp.BridgeRequest("device/revoke")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cert *tls.Certificate
			if tt.cert != nil {
				cert = &tt.cert.cert
			}
			opts := e.clientOpts(tt.clientID, cert).SetUsername(tt.user).SetPassword(tt.pass)
			if tt.will != "" {
				body := tt.willBody
				if body == "" {
					body = `{"v":1,"state":"offline"}`
				}
				opts.SetWill(tt.will, body, 1, true)
			}
			c, err := connect(t, opts)
			if tt.wantRole == 0 {
				if err == nil {
					c.Disconnect(0)
					t.Fatalf("Connect(%s) succeeded, want refused", tt.name)
				}
				if tt.cert == &other {
					// Refused by TLS, before MQTT: no CONNACK, and Auth never asked.
					if errors.Is(err, packets.ErrorRefusedNotAuthorised) {
						t.Errorf("Connect with a foreign certificate = %v, want a TLS failure", err)
					}
					if n := e.auth.askedFor(other.serial); n != 0 {
						t.Errorf("Auth.Certificate called %d times for a foreign certificate, want 0", n)
					}
					return
				}
				if !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
					t.Errorf("Connect(%s) = %v, want %v", tt.name, err, packets.ErrorRefusedNotAuthorised)
				}
				return
			}
			if err != nil {
				t.Fatalf("Connect(%s) = %v, want success", tt.name, err)
			}
			dev := tt.user
			if tt.cert != nil {
				dev = tt.cert.id
			}
			got := probe(t, e, c, tt.wantRole, dev).from
			if got.Role != tt.wantRole || got.Username != tt.user || (tt.wantRole != RoleAdmin && got.DeviceID != dev) {
				t.Errorf("identity of %s = %+v, want role %v, device %q, username %q", tt.name, got, tt.wantRole, dev, tt.user)
			}
			c.Disconnect(0)
		})
	}
}

// probe publishes a message the role may publish and returns what the handler saw.
func probe(t *testing.T, e *env, c paho.Client, role Role, deviceID string) message {
	t.Helper()
	topic := e.topic.BridgeRequest("device/list")
	if role != RoleAdmin {
		topic = e.topic.Device(deviceID, protocol.KindCSR)
	}
	wait(t, "Publish "+topic, c.Publish(topic, 1, false, "probe"))
	return e.rec.next(t)
}
