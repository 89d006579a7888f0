package hub

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
	"github.com/hearth-pki/hearth/protocol"
)

// startHub opens and runs a hub on 127.0.0.1:0 with a fresh data directory.
func startHub(t testing.TB) (*Hub, config.Config) {
	t.Helper()
	cfg := hubkit.Config(t, "")
	return runHub(t, cfg, Options{Version: "test"}), cfg
}

// runHub opens a hub for cfg and runs it until the test ends.
func runHub(t testing.TB, cfg config.Config, opts Options) *Hub {
	t.Helper()
	h, err := Open(t.Context(), cfg, opts)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run() = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("hub did not stop within 10 s")
		}
	})
	return h
}

// client connects a paho client to the hub; cert nil means a token login. The connect
// timeout leaves room for an admin's PBKDF2 check (600,000 iterations), which takes seconds
// under the race detector on a loaded machine.
func client(t testing.TB, h *Hub, id, password string, cert *tls.Certificate) (mqtt.Client, error) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(h.ca.Root())
	tc := &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	opts := mqtt.NewClientOptions().AddBroker("tls://" + h.BrokerAddr().String()).SetClientID(id).
		SetTLSConfig(tc).SetProtocolVersion(4).SetOrderMatters(false).SetAutoReconnect(false).SetConnectTimeout(20 * time.Second)
	if cert == nil {
		opts.SetUsername(id).SetPassword(password)
	}
	c := mqtt.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(30 * time.Second) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

// request publishes m on topic and waits for the first message on replyTopic.
func request(t testing.TB, c mqtt.Client, topic string, m protocol.Message, replyTopic string) []byte {
	t.Helper()
	b, err := tryRequest(c, topic, m, replyTopic)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tryRequest is request for goroutines: it returns its error.
func tryRequest(c mqtt.Client, topic string, m protocol.Message, replyTopic string) ([]byte, error) {
	got := make(chan []byte, 1)
	if tok := c.Subscribe(replyTopic, 1, func(_ mqtt.Client, msg mqtt.Message) {
		select {
		case got <- msg.Payload():
		default:
		}
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("subscribe %s: %v", replyTopic, tok.Error())
	}
	defer func() { c.Unsubscribe(replyTopic).WaitTimeout(time.Second) }()
	b, err := protocol.Encode(m)
	if err != nil {
		return nil, err
	}
	if tok := c.Publish(topic, 1, false, b); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("publish %s: %v", topic, tok.Error())
	}
	select {
	case p := <-got:
		return p, nil
	case <-time.After(10 * time.Second):
		return nil, fmt.Errorf("no reply on %s", replyTopic)
	}
}

// enroll runs a full enrollment of id over the broker and returns the device's TLS pair,
// the reply and the token it used.
func enroll(t testing.TB, h *Hub, id string) (tls.Certificate, protocol.Cert, string) {
	t.Helper()
	pair, reply, tok, err := tryEnroll(t, h, id)
	if err != nil {
		t.Fatal(err)
	}
	return pair, reply, tok
}

func tryEnroll(t testing.TB, h *Hub, id string) (tls.Certificate, protocol.Cert, string, error) {
	tok, err := h.Admin().CreateToken(t.Context(), protocol.TokenRequest{ID: id})
	if err != nil {
		return tls.Certificate{}, protocol.Cert{}, "", err
	}
	c, err := client(t, h, id, tok.Token, nil)
	if err != nil {
		return tls.Certificate{}, protocol.Cert{}, "", fmt.Errorf("enrollment login: %w", err)
	}
	defer c.Disconnect(0)
	key, csr := testkit.KeyAndCSR(t, id)
	pair, reply, err := csrRoundTrip(h, c, id, key, &protocol.CSR{V: 1, RequestID: "enroll-1", CSR: csr, Reason: protocol.ReasonEnroll, Time: time.Now()})
	return pair, reply, tok.Token, err
}

// csrRoundTrip sends req and returns the issued pair.
func csrRoundTrip(h *Hub, c mqtt.Client, id string, key *ecdsa.PrivateKey, req *protocol.CSR) (tls.Certificate, protocol.Cert, error) {
	var reply protocol.Cert
	raw, err := tryRequest(c, h.topics.Device(id, protocol.KindCSR), req, h.topics.Device(id, protocol.KindCert))
	if err != nil {
		return tls.Certificate{}, reply, err
	}
	if err := protocol.Decode(raw, &reply); err != nil || reply.Error != nil {
		return tls.Certificate{}, reply, fmt.Errorf("csr reply: %v %v", err, reply.Error)
	}
	pair := tls.Certificate{PrivateKey: key}
	rest := []byte(reply.Chain)
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		pair.Certificate = append(pair.Certificate, b.Bytes)
	}
	return pair, reply, nil
}

// tryRenew renews id over its mutual-TLS session with a fresh key.
func tryRenew(t testing.TB, h *Hub, id string, cur tls.Certificate, serial, requestID string) (tls.Certificate, string, error) {
	c, err := client(t, h, id, "", &cur)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	defer c.Disconnect(0)
	key, csr := testkit.KeyAndCSR(t, id)
	pair, reply, err := csrRoundTrip(h, c, id, key, &protocol.CSR{V: 1, RequestID: requestID, CSR: csr, Reason: protocol.ReasonWindow, Replaces: serial, Time: time.Now()})
	return pair, reply.Serial, err
}

// tryCommit reconnects with pair and commits serial.
func tryCommit(t testing.TB, h *Hub, id string, pair tls.Certificate, requestID, serial string) error {
	c, err := client(t, h, id, "", &pair)
	if err != nil {
		return fmt.Errorf("reconnect with the new certificate: %w", err)
	}
	defer c.Disconnect(0)
	raw, err := tryRequest(c, h.topics.Device(id, protocol.KindCommit),
		&protocol.Commit{V: 1, RequestID: requestID, Serial: serial, Outcome: protocol.OutcomeCommitted, Time: time.Now()},
		h.topics.Device(id, protocol.KindAck))
	if err != nil {
		return err
	}
	var ack protocol.Ack
	if err := protocol.Decode(raw, &ack); err != nil || ack.Error != nil {
		return fmt.Errorf("ack: %v %v", err, ack.Error)
	}
	return nil
}

func TestEnrollVerifyCommit(t *testing.T) {
	h, cfg := startHub(t)
	pair, reply, _ := enroll(t, h, "thermostat-hall")

	t.Run("openssl accepts the chain", func(t *testing.T) {
		openssl := testkit.RequirePeer(t, "openssl")
		dir := t.TempDir()
		root := testkit.WritePEM(t, dir, "root.pem", "CERTIFICATE", h.ca.Root().Raw)
		inter := testkit.WritePEM(t, dir, "inter.pem", "CERTIFICATE", pair.Certificate[1])
		leaf := testkit.WritePEM(t, dir, "leaf.pem", "CERTIFICATE", pair.Certificate[0])
		out, err := exec.CommandContext(t.Context(), openssl, "verify", "-CAfile", root, "-untrusted", inter, leaf).CombinedOutput()
		if err != nil || !strings.Contains(string(out), ": OK") {
			t.Fatalf("openssl verify: %v\n%s", err, out)
		}
	})

	// Reconnect with mutual TLS and commit.
	c, err := client(t, h, "thermostat-hall", "", &pair)
	if err != nil {
		t.Fatalf("mutual TLS login with the new certificate: %v", err)
	}
	var ack protocol.Ack
	raw := request(t, c, h.topics.Device("thermostat-hall", protocol.KindCommit),
		&protocol.Commit{V: 1, RequestID: "enroll-1", Serial: reply.Serial, Outcome: protocol.OutcomeCommitted, Time: time.Now()},
		h.topics.Device("thermostat-hall", protocol.KindAck))
	if err := protocol.Decode(raw, &ack); err != nil || ack.Error != nil || ack.Serial != reply.Serial {
		t.Fatalf("ack = %+v (%v), want serial %s", ack, err, reply.Serial)
	}
	active, err := h.store.ActiveCertificate(t.Context(), "thermostat-hall")
	if err != nil || active.Serial != reply.Serial {
		t.Fatalf("active certificate = %+v, %v; want %s", active, err, reply.Serial)
	}
	if _, err := os.Stat(cfg.SocketPath()); err != nil {
		t.Errorf("control socket: %v", err)
	}

	// Revocation: the session is dropped and the certificate no longer logs in.
	if resp := h.Admin().Do(t.Context(), "test", "device/revoke", []byte(`{"id":"thermostat-hall"}`)); resp.Status != "ok" {
		t.Fatalf("revoke: %+v", resp)
	}
	testkit.Eventually(t, 10*time.Second, func() bool { return !c.IsConnectionOpen() }, "revoked device's session is still open")
	if _, err := client(t, h, "thermostat-hall", "", &pair); err == nil {
		t.Error("revoked certificate logged in")
	}
}

func TestLoginRefusals(t *testing.T) {
	h, _ := startHub(t)
	tok, err := h.Admin().CreateToken(t.Context(), protocol.TokenRequest{ID: "cam"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, id, password string
	}{
		{"wrong token", "cam", "hst_wrong"},
		{"token of another device", "doorbell", tok.Token},
		{"no token", "cam", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !loginRefused(t, h, tt.id, tt.password) {
				t.Errorf("login %s/%q succeeded, want refused", tt.id, tt.password)
			}
		})
	}
	// A used token no longer logs in once the device has committed a certificate.
	pair, reply, used := enroll(t, h, "cam2")
	// Before the commit, the used token still logs in so a lost reply can be fetched again.
	if _, err := client(t, h, "cam2", used, nil); err != nil {
		t.Errorf("used token before commit refused: %v, want accepted for resubmission", err)
	}
	c, err := client(t, h, "cam2", "", &pair)
	if err != nil {
		t.Fatal(err)
	}
	request(t, c, h.topics.Device("cam2", protocol.KindCommit),
		&protocol.Commit{V: 1, RequestID: "enroll-1", Serial: reply.Serial, Outcome: protocol.OutcomeCommitted, Time: time.Now()},
		h.topics.Device("cam2", protocol.KindAck))
	if !loginRefused(t, h, "cam2", used) {
		t.Error("used token logged in after the device committed")
	}
}

// loginRefused reports whether an enrollment login is refused: at CONNECT, or, for a
// token-shaped password, as a refused session whose CSR is answered with a token error and
// no certificate (protocol/README.md, "Why an enrollment login was refused").
func loginRefused(t *testing.T, h *Hub, id, password string) bool {
	t.Helper()
	c, err := client(t, h, id, password, nil)
	if err != nil {
		return true
	}
	defer c.Disconnect(0)
	_, csr := testkit.KeyAndCSR(t, id)
	var reply protocol.Cert
	raw := request(t, c, h.topics.Device(id, protocol.KindCSR), &protocol.CSR{V: 1, RequestID: "probe", CSR: csr, Reason: protocol.ReasonEnroll, Time: time.Now()},
		h.topics.Device(id, protocol.KindCert))
	if err := protocol.Decode(raw, &reply); err != nil {
		t.Fatal(err)
	}
	return reply.Chain == "" && reply.Error != nil && strings.HasPrefix(string(reply.Error.Code), "token_")
}

func TestDuplicateSessionFinding(t *testing.T) {
	h, _ := startHub(t)
	pair, reply, _ := enroll(t, h, "cam")
	if err := tryCommit(t, h, "cam", pair, "enroll-1", reply.Serial); err != nil {
		t.Fatal(err)
	}
	if _, err := client(t, h, "cam:one", "", &pair); err != nil {
		t.Fatal(err)
	}
	if _, err := client(t, h, "cam:two", "", &pair); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() bool {
		evs, err := h.store.Events(t.Context(), inventory.EventFilter{Kind: protocol.EventFindingDuplicateSession, DeviceID: "cam"})
		return err == nil && len(evs) > 0
	}, "no finding after one certificate was presented on two connections at once")
}

// watchEvents logs in as the admin and returns the events the hub publishes on bridge/event
// from now on.
func watchEvents(t *testing.T, h *Hub) <-chan protocol.Event {
	t.Helper()
	admin, err := client(t, h, "admin", hubkit.AdminPassword, nil)
	if err != nil {
		t.Fatalf("admin login: %v", err)
	}
	events := make(chan protocol.Event, 100)
	tok := admin.Subscribe(h.topics.Bridge(protocol.KindBridgeEvent), 1, func(_ mqtt.Client, m mqtt.Message) {
		var e protocol.Event
		if err := protocol.Decode(m.Payload(), &e); err != nil {
			t.Errorf("bridge/event payload %s: %v", m.Payload(), err)
			return
		}
		events <- e
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe to bridge/event: %v", tok.Error())
	}
	return events
}

// TestHealthUpdatesInventory sends a health report that contradicts the inventory: the
// report is recorded, the device is seen at the hub's time, and each contradiction raises
// its finding.
func TestHealthUpdatesInventory(t *testing.T) {
	clock := testkit.NewClock(time.Now().Truncate(time.Second))
	h := runHub(t, hubkit.Config(t, ""), Options{Version: "test", Now: clock.Now})
	pair, reply, _ := enroll(t, h, "cam")
	if err := tryCommit(t, h, "cam", pair, "enroll-1", reply.Serial); err != nil {
		t.Fatal(err)
	}
	c, err := client(t, h, "cam", "", &pair)
	if err != nil {
		t.Fatal(err)
	}
	events := watchEvents(t, h)
	before, err := h.store.Device(t.Context(), "cam")
	if err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Minute) // the inventory keeps seconds: a later report must show as later

	const issuer = "CN=Someone Else"
	b, err := protocol.Encode(&protocol.Health{V: 1, Serial: "abcdef", Issuer: issuer, ChainOK: true,
		DeviceTime: time.Now(), AgentVersion: "test", KeyAlgorithm: protocol.KeyP256, KeyStorage: "file"})
	if err != nil {
		t.Fatal(err)
	}
	if tok := c.Publish(h.topics.Device("cam", protocol.KindHealth), 1, false, b); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish health: %v", tok.Error())
	}

	want := map[protocol.EventType]string{ // finding → what its message must name
		protocol.EventFindingUnexpectedSerial: "abcdef",
		protocol.EventFindingUnexpectedIssuer: issuer,
	}
	got := map[protocol.EventType]protocol.Event{}
	timeout := time.After(10 * time.Second)
	for len(got) < len(want) {
		select {
		case e := <-events:
			if _, ok := want[e.Type]; ok {
				got[e.Type] = e
			} else if strings.HasPrefix(string(e.Type), "finding.") {
				t.Errorf("unexpected finding %+v", e)
			}
		case <-timeout:
			t.Fatalf("findings after the health report = %v, want %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
		}
	}
	for typ, name := range want {
		e := got[typ]
		if e.DeviceID != "cam" || !strings.Contains(e.Message, name) || !e.Time.Equal(clock.Now().UTC()) {
			t.Errorf("%s = %+v, want device cam, a message naming %q, at the hub's time %s", typ, e, name, clock.Now().UTC())
		}
	}

	d, err := h.store.Device(t.Context(), "cam")
	if err != nil {
		t.Fatal(err)
	}
	if d.Health.ReportedSerial != "abcdef" || !d.LastSeen.After(before.LastSeen) {
		t.Errorf("after a health report: reported serial %q, last seen %s (was %s); want abcdef and later", d.Health.ReportedSerial, d.LastSeen, before.LastSeen)
	}
}

// TestOpenBindsTheDashboard: Open binds the dashboard's port, so a taken port fails before
// serve prints the dashboard's URL, and the URL answers as soon as Open returns.
func TestOpenBindsTheDashboard(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := hubkit.Config(t, "")
	cfg.HTTPListen = taken.Addr().String()
	if _, err := Open(t.Context(), cfg, Options{Version: "test"}); err == nil {
		t.Fatalf("Open() with the dashboard's port taken = nil error")
	}
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.Addr().String()
	free.Close()
	cfg = hubkit.Config(t, "")
	cfg.HTTPListen = addr
	h, err := Open(t.Context(), cfg, Options{Version: "test"})
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Errorf("the dashboard does not accept connections after Open: %v", err)
	} else {
		c.Close()
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // Run with an ended context closes what Open opened
	if err := h.Run(ctx); err != nil {
		t.Errorf("Run() = %v", err)
	}
}
