package natsbroker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/hearth-pki/hearth/gateway/internal/broker"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// fakeAuth decides logins from maps: the serials it allows, the tokens it accepts and
// those it refuses with a reason, one admin.
type fakeAuth struct {
	mu      sync.Mutex
	serials map[string]bool
	tokens  map[string]string // device → token
	refuse  map[string]protocol.Code
}

type refusal struct{ code protocol.Code }

func (r refusal) Error() string                          { return "refused: " + string(r.code) }
func (r refusal) Reason() (protocol.Code, time.Duration) { return r.code, 30 * time.Second }

func (a *fakeAuth) Certificate(_ context.Context, deviceID, serial string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.serials[serial] {
		return errors.New("unknown or revoked certificate")
	}
	return nil
}

func (a *fakeAuth) Token(_ context.Context, deviceID, token string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.refuse[deviceID]; ok {
		return refusal{c}
	}
	if a.tokens[deviceID] != token {
		return errors.New("bad token")
	}
	return nil
}

func (a *fakeAuth) Admin(_ context.Context, username, password string) bool {
	return username == "ops" && password == "ops password"
}

func (a *fakeAuth) revoke(serial string) {
	a.mu.Lock()
	delete(a.serials, serial)
	a.mu.Unlock()
}

// observer records the Sessions calls as text, in order.
type observer struct{ calls chan string }

func (o observer) SessionUp(id broker.Identity)   { o.calls <- "up " + id.DeviceID + " " + id.Serial }
func (o observer) Subscribed(id broker.Identity)  { o.calls <- "subscribed " + id.DeviceID }
func (o observer) SessionDown(id broker.Identity) { o.calls <- "down " + id.DeviceID + " " + id.Serial }

// received is one message the Handler got.
type received struct {
	from broker.Identity
	kind protocol.Kind
}

// rig is a NATS server with MQTT over TLS on 127.0.0.1 (JetStream, the auth callout answered
// by a Broker), the hub's CA, and what the Broker told the hub.
type rig struct {
	ca     *testkit.CA
	mqtt   string
	broker *Broker
	auth   *fakeAuth
	obs    observer
	got    chan received

	natsURL string
	issuer  nkeys.KeyPair
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func newRig(t *testing.T) *rig {
	t.Helper()
	hubCA := testkit.NewCA(t, "hub")
	node := hubCA.Server(t, "127.0.0.1")
	akp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := akp.PublicKey()
	dir := t.TempDir()
	mqttPort := freePort(t)
	conf := fmt.Sprintf(`server_name: t
listen: "127.0.0.1:-1"
jetstream { store_dir: %q }
mqtt { listen: "127.0.0.1:%d", consumer_memory_storage: true, tls { cert_file: %q, key_file: %q } }
accounts {
  HEARTH { jetstream: enabled, users: [ { user: hub, password: hubpw } ] }
  SYS { users: [ { user: sys, password: syspw } ] }
}
system_account: SYS
authorization { auth_callout { issuer: %q, account: HEARTH, auth_users: [ hub ], allowed_accounts: [ HEARTH ] } }
`, filepath.Join(dir, "js"), mqttPort, node.CertFile, node.KeyFile, pub)
	path := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	opts.MQTT.TLSConfig.ClientAuth = tls.RequestClientCert // what cmd/hearth-nats does
	opts.NoLog, opts.NoSigs = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	r := &rig{ca: hubCA, mqtt: "127.0.0.1:" + strconv.Itoa(mqttPort), obs: observer{calls: make(chan string, 64)},
		got: make(chan received, 64), auth: &fakeAuth{serials: map[string]bool{}, tokens: map[string]string{}, refuse: map[string]protocol.Code{}},
		natsURL: srv.ClientURL(), issuer: akp}
	r.broker = r.startBroker(t, r.obs, r.got)
	return r
}

// startBroker runs a Broker on the rig's server, as one hub replica, telling obs and got.
func (r *rig) startBroker(t *testing.T, obs observer, got chan received) *Broker {
	t.Helper()
	b, err := New(Config{URLs: []string{r.natsURL}, MQTT: []string{r.mqtt}, RootCAs: r.ca.Pool(), ClientCAs: r.ca.Pool(),
		User: "hub", Password: "hubpw", SystemUser: "sys", SystemPassword: "syspw", Issuer: r.issuer, Sessions: obs,
		ConnectTimeout: 5 * time.Second},
		r.auth, func(_ context.Context, from broker.Identity, tp protocol.Topic, _ []byte) {
			got <- received{from, tp.Kind}
		},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	// Ready once the hub's own MQTT session published (Publish waits for the PUBACK).
	testkit.Eventually(t, 20*time.Second, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.pub != nil
	}, "the broker never connected")
	return b
}

// device issues a certificate for id that Auth allows.
func (r *rig) device(t *testing.T, id string) *testkit.Leaf {
	t.Helper()
	l := r.ca.Client(t, id, protocol.DeviceURI(id))
	r.auth.mu.Lock()
	r.auth.serials[l.Serial()] = true
	r.auth.mu.Unlock()
	return l
}

// connect opens an MQTT session as an agent does; lost is closed when the session ends.
func (r *rig) connect(t *testing.T, clientID string, cert *tls.Certificate, user, pass string) (paho.Client, <-chan struct{}, error) {
	t.Helper()
	tc := &tls.Config{RootCAs: r.ca.Pool(), ServerName: "127.0.0.1"}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	lost := make(chan struct{})
	o := paho.NewClientOptions().AddBroker("tls://" + r.mqtt).SetClientID(clientID).SetTLSConfig(tc).
		SetUsername(user).SetPassword(pass).SetCleanSession(true).SetAutoReconnect(false).
		SetConnectTimeout(10 * time.Second).SetConnectionLostHandler(func(paho.Client, error) { close(lost) })
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(20 * time.Second) {
		return nil, nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, nil, err
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, lost, nil
}

func (r *rig) next(t *testing.T) string {
	t.Helper()
	select {
	case c := <-r.obs.calls:
		return c
	case <-time.After(20 * time.Second):
		t.Fatal("no session event")
		return ""
	}
}

func publish(t *testing.T, c paho.Client, topic string, payload []byte) {
	t.Helper()
	if tok := c.Publish(topic, 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// TestDeviceSession: a device's certificate goes through the callout; its session, first
// state and requests reach the hub with its identity; a publish on another device's topic
// does not; Disconnect ends the session on the node, and the revoked certificate cannot
// come back.
func TestDeviceSession(t *testing.T) {
	r := newRig(t)
	topics := protocol.Topics{}
	leaf := r.device(t, "hall")
	c, lost, err := r.connect(t, "hall:1", &leaf.TLS, "", "")
	if err != nil {
		t.Fatalf("device connect: %v", err)
	}
	if got, want := r.next(t), "up hall "+leaf.Serial(); got != want {
		t.Fatalf("first session event %q, want %q", got, want)
	}
	if !r.broker.Online("hall") {
		t.Error("Online(hall) = false with its session up")
	}
	publish(t, c, topics.Device("other", protocol.KindCSR), []byte(`{}`)) // not its topic: the server drops it
	publish(t, c, topics.Device("hall", protocol.KindState), []byte(`{"v":1,"state":"online"}`))
	if got := r.next(t); got != "subscribed hall" {
		t.Fatalf("after its first state: %q, want subscribed hall", got)
	}
	publish(t, c, topics.Device("hall", protocol.KindHealth), []byte(`{}`))
	for _, want := range []protocol.Kind{protocol.KindState, protocol.KindHealth} {
		select {
		case m := <-r.got:
			if m.kind != want || m.from.DeviceID != "hall" || m.from.Serial != leaf.Serial() || m.from.Role != broker.RoleDevice {
				t.Errorf("handler got %+v, want %s from hall with serial %s", m, want, leaf.Serial())
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("handler never got the %s", want)
		}
	}

	r.auth.revoke(leaf.Serial())
	if n := r.broker.Disconnect("hall"); n != 1 {
		t.Errorf("Disconnect(hall) = %d, want 1", n)
	}
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the session was not kicked")
	}
	if got, want := r.next(t), "down hall "+leaf.Serial(); got != want {
		t.Errorf("after the kick: %q, want %q", got, want)
	}
	if _, _, err := r.connect(t, "hall:2", &leaf.TLS, "", ""); err == nil {
		t.Error("the revoked certificate connected again")
	}
	select {
	case m := <-r.got:
		t.Errorf("handler got %+v, want nothing more (the csr on another device's topic must not arrive)", m)
	default:
	}
}

// TestReplicasSeeSubscribed: with two hub replicas on one cluster, a device's first state is
// handled by one of them (the queue group), and both count its session subscribed, so that
// whichever leads the scheduler sends it commands.
func TestReplicasSeeSubscribed(t *testing.T) {
	r := newRig(t)
	obs2, got2 := observer{calls: make(chan string, 64)}, make(chan received, 64)
	r.startBroker(t, obs2, got2)
	leaf := r.device(t, "hall")
	c, _, err := r.connect(t, "hall:1", &leaf.TLS, "", "")
	if err != nil {
		t.Fatalf("device connect: %v", err)
	}
	// Both replicas know the session before its first state, as with an agent (its
	// subscriptions come first): a message of a device no replica knows is dropped.
	for i, calls := range []chan string{r.obs.calls, obs2.calls} {
		select {
		case c := <-calls:
			if want := "up hall " + leaf.Serial(); c != want {
				t.Fatalf("replica %d: first session event %q, want %q", i+1, c, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("replica %d never saw the session", i+1)
		}
	}
	publish(t, c, protocol.Topics{}.Device("hall", protocol.KindState), []byte(`{"v":1,"state":"online"}`))
	for i, calls := range []chan string{r.obs.calls, obs2.calls} {
		var seen []string
		testkit.Eventually(t, 20*time.Second, func() bool {
			select {
			case c := <-calls:
				seen = append(seen, c)
			default:
			}
			return slices.Contains(seen, "subscribed hall")
		}, "replica %d never counted hall subscribed: %q", i+1, testkit.Lazy(func() string { return fmt.Sprint(seen) }))
	}
	// Then a health report: once some replica handled it, the state was delivered and
	// handled already, by exactly one of them.
	publish(t, c, protocol.Topics{}.Device("hall", protocol.KindHealth), []byte(`{}`))
	states, health := 0, 0
	count := func(m received) {
		switch m.kind {
		case protocol.KindState:
			states++
		case protocol.KindHealth:
			health++
		}
	}
	testkit.Eventually(t, 20*time.Second, func() bool {
		select {
		case m := <-r.got:
			count(m)
		case m := <-got2:
			count(m)
		default:
		}
		return health > 0 && states > 0
	}, "the replicas never handled the state and the health report")
	for drained := false; !drained; {
		select {
		case m := <-r.got:
			count(m)
		case m := <-got2:
			count(m)
		default:
			drained = true
		}
	}
	if states != 1 || health != 1 {
		t.Errorf("the replicas' handlers got %d states and %d health reports, want each once", states, health)
	}
}

// TestLoginsRefused: what the callout refuses, and the client ids it ties to devices.
func TestLoginsRefused(t *testing.T) {
	r := newRig(t)
	stranger := testkit.NewCA(t, "stranger").Client(t, "hall", protocol.DeviceURI("hall"))
	good := r.device(t, "hall")
	r.auth.tokens["cam"] = "tok"
	tests := []struct {
		name, clientID, user, pass string
		cert                       *tls.Certificate
	}{
		{"certificate of another CA", "hall", "", "", &stranger.TLS},
		{"username not the certificate's device", "hall", "cam", "", &good.TLS},
		{"client id of another device", "cam", "", "", &good.TLS},
		{"wrong token", "cam", "cam", "nope", nil},
		{"wrong admin password", "tool", "ops", "nope", nil},
		{"nothing", "cam", "", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := r.connect(t, tt.clientID, tt.cert, tt.user, tt.pass); err == nil {
				t.Errorf("connect(%s) succeeded, want refused", tt.name)
			}
		})
	}
}

// TestEnrollment: a token login is an enrolling session whose CSR reaches the hub; a token
// refused with a reason is answered on its cert topic with that reason; an admin's login is
// accepted.
func TestEnrollment(t *testing.T) {
	r := newRig(t)
	topics := protocol.Topics{}
	r.auth.tokens["cam"] = "tok"
	r.auth.refuse["door"] = protocol.Code("token_used")
	c, _, err := r.connect(t, "cam:x", nil, "cam", "tok")
	if err != nil {
		t.Fatalf("enroll login: %v", err)
	}
	publish(t, c, topics.Device("cam", protocol.KindCSR), []byte(`{}`))
	select {
	case m := <-r.got:
		if m.from.Role != broker.RoleEnrolling || m.from.DeviceID != "cam" || m.kind != protocol.KindCSR {
			t.Errorf("handler got %+v, want an enrolling csr of cam", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the enrolling CSR never reached the hub")
	}

	d, _, err := r.connect(t, "door", nil, "door", "whatever")
	if err != nil {
		t.Fatalf("a refused token must still connect (to be told why): %v", err)
	}
	answer := make(chan []byte, 1)
	if tok := d.Subscribe(topics.Device("door", protocol.KindCert), 1, func(_ paho.Client, m paho.Message) { answer <- m.Payload() }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	_, pemCSR := testkit.KeyAndCSR(t, "door")
	csr, err := protocol.Encode(&protocol.CSR{V: protocol.Version, RequestID: "0123456789abcdef0123456789abcdef", Reason: protocol.ReasonEnroll, CSR: pemCSR, Time: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, d, topics.Device("door", protocol.KindCSR), csr)
	select {
	case b := <-answer:
		var cert protocol.Cert
		if err := protocol.Decode(b, &cert); err != nil || cert.Error == nil || cert.Error.Code != "token_used" || cert.Error.RetryAfter != 30 {
			t.Errorf("refusal answer %s (%v), want code token_used retry 30", b, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the refused enrollment was never answered")
	}
	select {
	case m := <-r.got:
		t.Errorf("handler got %+v from a refused session, want nothing", m)
	default:
	}
	if _, _, err := r.connect(t, "tool", nil, "ops", "ops password"); err != nil {
		t.Errorf("admin login: %v", err)
	}
}
