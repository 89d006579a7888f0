package hub

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/secret"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
	"github.com/hearth-pki/hearth/protocol"
)

// nextEvent returns the next event of type typ from events, skipping others.
func nextEvent(t *testing.T, events <-chan protocol.Event, typ protocol.EventType) protocol.Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-events:
			if e.Type == typ {
				return e
			}
		case <-timeout:
			t.Fatalf("no %s event on bridge/event", typ)
			return protocol.Event{}
		}
	}
}

// TestEnrollmentRefusalsOnBridge checks issue 16, items 4 and 7 through the real broker: a
// wrong, a used and an expired token are each told their reason on the agent's cert topic,
// and each refusal, the good login, and the token's creation and use appear on
// bridge/event for an admin watching.
func TestEnrollmentRefusalsOnBridge(t *testing.T) {
	hash, err := secret.HashPasswordIterations("watcher password", 1000) // cheap under the race detector
	if err != nil {
		t.Fatal(err)
	}
	h := runHub(t, hubkit.Config(t, fmt.Sprintf("admins:\n  - name: watcher\n    password_hash: %q\n", hash)), Options{Version: "test"})
	watcher, err := client(t, h, "watcher", "watcher password", nil)
	if err != nil {
		t.Fatalf("admin login: %v", err)
	}
	events := make(chan protocol.Event, 100)
	if tok := watcher.Subscribe(h.topics.Bridge(protocol.KindBridgeEvent), 1, func(_ mqtt.Client, m mqtt.Message) {
		var e protocol.Event
		if err := protocol.Decode(m.Payload(), &e); err != nil {
			t.Errorf("bridge/event payload %s: %v", m.Payload(), err)
			return
		}
		events <- e
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe to bridge/event: %v", tok.Error())
	}

	// A token, and its use: token.created, enrollment.login, token.used.
	if _, reply, _ := enroll(t, h, "cam"); reply.Serial == "" {
		t.Fatal("enrollment issued nothing")
	}
	if e := nextEvent(t, events, protocol.EventTokenCreated); e.DeviceID != "cam" || e.Data["expires_at"] == "" {
		t.Errorf("token.created = %+v", e)
	}
	if e := nextEvent(t, events, protocol.EventEnrollmentLogin); e.DeviceID != "cam" || e.Data["source"] != "127.0.0.1/32" {
		t.Errorf("enrollment.login = %+v, want cam from 127.0.0.1/32", e)
	}
	if e := nextEvent(t, events, protocol.EventTokenUsed); e.DeviceID != "cam" || e.Data["request_id"] != "enroll-1" {
		t.Errorf("token.used = %+v", e)
	}

	used, err := h.store.Events(t.Context(), inventory.EventFilter{Kind: protocol.EventTokenUsed, DeviceID: "cam"})
	if err != nil || len(used) != 1 {
		t.Fatalf("token.used in the audit log: %v, %v", used, err)
	}
	expired := secret.NewToken()
	past := time.Now().Add(-2 * time.Hour)
	if err := h.store.CreateToken(t.Context(), inventory.Token{Hash: secret.HashToken(expired), DeviceID: "lamp", CreatedAt: past, ExpiresAt: past.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	usedTok, err := h.Admin().CreateToken(t.Context(), protocol.TokenRequest{ID: "plug"})
	if err != nil {
		t.Fatal(err)
	}
	enrollWith(t, h, "plug", usedTok.Token) // uses it
	for _, tc := range []struct {
		name, id, token string
		want            protocol.Code
	}{
		{"wrong", "lamp", secret.NewToken(), protocol.CodeTokenUnknown},
		{"expired", "lamp", expired, protocol.CodeTokenExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reply := refusedCSR(t, h, tc.id, tc.token)
			if reply.Error == nil || reply.Error.Code != tc.want {
				t.Errorf("the agent was told %+v, want %s", reply.Error, tc.want)
			}
			if e := nextEvent(t, events, protocol.EventEnrollmentRefused); e.DeviceID != tc.id || e.Data["code"] != string(tc.want) {
				t.Errorf("enrollment.refused = %+v, want %s for %s", e, tc.want, tc.id)
			}
		})
	}
	// The used token: plug committed nothing yet, so within the resubmission window its
	// token still logs in (to resubmit); after its commit it is refused as used.
	t.Run("used", func(t *testing.T) {
		var detail protocol.DeviceDetail
		if resp := h.Admin().Do(t.Context(), "test", "device/get", []byte(`{"id":"plug"}`)); resp.Status != "ok" || json.Unmarshal(resp.Data, &detail) != nil {
			t.Fatalf("device/get plug: %+v", resp)
		}
		if _, err := h.store.Commit(t.Context(), "plug", "enroll-1", detail.Certificates[0].Serial, false, time.Now()); err != nil {
			t.Fatal(err)
		}
		reply := refusedCSR(t, h, "plug", usedTok.Token)
		if reply.Error == nil || reply.Error.Code != protocol.CodeTokenUsed {
			t.Errorf("the agent was told %+v, want token_used", reply.Error)
		}
		if e := nextEvent(t, events, protocol.EventEnrollmentRefused); e.Data["code"] != string(protocol.CodeTokenUsed) {
			t.Errorf("enrollment.refused = %+v, want token_used", e)
		}
	})
}

// enrollWith sends an enrollment CSR for id with token and returns once it is answered.
func enrollWith(t *testing.T, h *Hub, id, token string) protocol.Cert {
	t.Helper()
	c, err := client(t, h, id, token, nil)
	if err != nil {
		t.Fatalf("login of %s: %v", id, err)
	}
	defer c.Disconnect(0)
	_, csr := testkit.KeyAndCSR(t, id)
	var reply protocol.Cert
	raw := request(t, c, h.topics.Device(id, protocol.KindCSR), &protocol.CSR{V: 1, RequestID: "enroll-1", CSR: csr, Reason: protocol.ReasonEnroll, Time: time.Now()},
		h.topics.Device(id, protocol.KindCert))
	if err := protocol.Decode(raw, &reply); err != nil {
		t.Fatal(err)
	}
	return reply
}

// refusedCSR logs in as id with a token the hub refuses and returns the hub's answer to the
// CSR the agent then sends: the refused session is accepted so that it can be told why.
func refusedCSR(t *testing.T, h *Hub, id, token string) protocol.Cert {
	t.Helper()
	reply := enrollWith(t, h, id, token)
	if reply.Chain != "" {
		t.Fatalf("a refused token got a certificate")
	}
	return reply
}

// TestHARequests checks what Home Assistant's broker may ask (issue 15, item 4): renew spam
// is held at the cool-down (one renewal, every other request quota_exceeded) and device/get
// answers only the summary HA shows.
func TestHARequests(t *testing.T) {
	haAddr := testkit.StartMosquitto(t).Addr
	cfg := hubkit.Config(t, fmt.Sprintf("home_assistant:\n  discovery: true\n  broker: mqtt://%s\n", haAddr))
	h := runHub(t, cfg, Options{Version: "test"})
	pair, reply, _ := enroll(t, h, "plug")
	if err := tryCommit(t, h, "plug", pair, "enroll-1", reply.Serial); err != nil {
		t.Fatal(err)
	}
	spammer := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + haAddr).SetClientID("smart-plug").SetProtocolVersion(4))
	if tok := spammer.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to HA's broker: %v", tok.Error())
	}
	t.Cleanup(func() { spammer.Disconnect(100) })
	var mu sync.Mutex
	answers := map[string]protocol.BridgeResponse{}
	if tok := spammer.Subscribe("hearth/bridge/response/#", 1, func(_ mqtt.Client, m mqtt.Message) {
		var r protocol.BridgeResponse
		if json.Unmarshal(m.Payload(), &r) == nil {
			mu.Lock()
			answers[r.Transaction] = r
			mu.Unlock()
		}
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	answer := func(tx string) (protocol.BridgeResponse, bool) {
		mu.Lock()
		defer mu.Unlock()
		r, ok := answers[tx]
		return r, ok
	}
	// The hub subscribes to HA's broker when it starts: ask until it answers.
	testkit.Eventually(t, 10*time.Second, func() bool {
		spammer.Publish("hearth/bridge/request/device/get", 1, false, `{"id":"plug","transaction":"get"}`).WaitTimeout(time.Second)
		_, ok := answer("get")
		return ok
	}, "the hub never answered device/get on Home Assistant's broker")
	get, _ := answer("get")
	if get.Status != "ok" || !strings.Contains(string(get.Data), `"state"`) {
		t.Errorf("device/get from HA = %+v, want the device's summary", get)
	}
	for _, hidden := range []string{`"certificates"`, `"attempts"`, `"events"`, `"device"`} {
		if strings.Contains(string(get.Data), hidden) {
			t.Errorf("device/get from HA shows %s: %s", hidden, get.Data)
		}
	}

	const spam = 30
	for i := range spam {
		spammer.Publish("hearth/bridge/request/device/renew", 1, false, fmt.Sprintf(`{"id":"plug","transaction":"r%d"}`, i)).WaitTimeout(5 * time.Second)
	}
	testkit.Eventually(t, 10*time.Second, func() bool {
		_, ok := answer(fmt.Sprintf("r%d", spam-1))
		return ok
	}, "the renew requests were not all answered")
	ok, held := 0, 0
	for i := range spam {
		r, _ := answer(fmt.Sprintf("r%d", i))
		switch {
		case r.Status == "ok":
			ok++
		case r.Code == protocol.CodeQuotaExceeded:
			held++
		default:
			t.Errorf("renew r%d = %+v, want ok or quota_exceeded", i, r)
		}
	}
	if ok != 1 || held != spam-1 {
		t.Errorf("%d renew requests from HA's broker: %d renewals, %d held; want 1 and %d", spam, ok, held, spam-1)
	}
	forced, err := h.store.Events(t.Context(), inventory.EventFilter{Kind: protocol.EventRenewalForced, DeviceID: "plug"})
	if err != nil || len(forced) != 1 {
		t.Errorf("renewal.forced events of plug: %d (%v), want 1", len(forced), err)
	}
}

// clientFrom is client for a token login from the local address ip (127.0.0.2 is another
// source than 127.0.0.1 on Linux).
func clientFrom(t *testing.T, h *Hub, ip, id, password string) (mqtt.Client, error) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(h.ca.Root())
	opts := mqtt.NewClientOptions().AddBroker("tls://" + h.BrokerAddr().String()).SetClientID(id).
		SetTLSConfig(&tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetUsername(id).SetPassword(password).
		SetDialer(&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second})
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("login from %s: %v", ip, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

// TestBadTokensFromOneSource checks issue 15's proof through the real broker: bad tokens
// for a device from one source lock that source out, right token included, but the device's
// own enrollment from another source goes through.
func TestBadTokensFromOneSource(t *testing.T) {
	h := runHub(t, hubkit.Config(t, ""), Options{Version: "test"})
	tok, err := h.Admin().CreateToken(t.Context(), protocol.TokenRequest{ID: "cam"})
	if err != nil {
		t.Fatal(err)
	}
	ask := func(ip, token string) protocol.Cert {
		t.Helper()
		c, err := clientFrom(t, h, ip, "cam", token)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Disconnect(0)
		_, csr := testkit.KeyAndCSR(t, "cam")
		var reply protocol.Cert
		raw := request(t, c, h.topics.Device("cam", protocol.KindCSR), &protocol.CSR{V: 1, RequestID: "enroll-1", CSR: csr, Reason: protocol.ReasonEnroll, Time: time.Now()},
			h.topics.Device("cam", protocol.KindCert))
		if err := protocol.Decode(raw, &reply); err != nil {
			t.Fatal(err)
		}
		return reply
	}
	for i := range 7 { // five free failures, then the source waits
		if r := ask("127.0.0.2", secret.NewToken()); r.Error == nil || (r.Error.Code != protocol.CodeTokenUnknown && r.Error.Code != protocol.CodeLockedOut) {
			t.Fatalf("bad token %d from 127.0.0.2 = %+v, want token_unknown or locked_out", i+1, r.Error)
		}
	}
	if r := ask("127.0.0.2", tok.Token); r.Error == nil || r.Error.Code != protocol.CodeLockedOut || r.Error.RetryAfter < 1 {
		t.Errorf("the right token from the failing source = %+v, want locked_out with a retry_after", r.Error)
	}
	if r := ask("127.0.0.1", tok.Token); r.Error != nil || r.Chain == "" {
		t.Errorf("the device's own enrollment from another source = %+v, want a certificate", r.Error)
	}
}
