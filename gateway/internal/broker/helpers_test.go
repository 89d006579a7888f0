package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

var logFlag = flag.Bool("broker.log", false, "write the broker's logs to stderr")

// waitFor bounds every wait in these tests; reaching it is a failure, not a measurement.
const waitFor = 10 * time.Second

// testPKI is the tests' throwaway hub CA with the broker's server certificate (for 127.0.0.1
// and localhost); its files are there for the mosquitto clients.
type testPKI struct {
	*testkit.CA
	server tls.Certificate
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	ca := testkit.NewCA(t, "Test hub")
	return &testPKI{CA: ca, server: ca.Server(t, "127.0.0.1", "localhost").TLS}
}

// device is a device's certificate and its files.
type device struct {
	id       string
	cert     tls.Certificate
	certFile string
	keyFile  string
	serial   string
}

// device issues a device certificate for id: CN and URI SAN naming it.
func (p *testPKI) device(t testing.TB, id string) device {
	t.Helper()
	l := p.Client(t, id, protocol.DeviceURI(id))
	return device{id: id, cert: l.TLS, certFile: l.CertFile, keyFile: l.KeyFile, serial: l.Serial()}
}

// serverTLSConfig is the hub's TLS configuration for p.
func (p *testPKI) serverTLSConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.server}, ClientCAs: p.Pool()}
}

// fakeAuth is an in-memory Auth: revoked serials, enrollment tokens, admin passwords.
type fakeAuth struct {
	mu      sync.Mutex
	revoked map[string]bool          // serial → revoked
	tokens  map[string]string        // device id → token
	refuse  map[string]protocol.Code // device id → the reason a bad token is refused with
	admins  map[string]string        // username → password
	asked   map[string]int           // serial → Certificate calls
}

var errRevoked = errors.New("certificate revoked")

func newFakeAuth() *fakeAuth {
	return &fakeAuth{
		revoked: map[string]bool{},
		tokens:  map[string]string{},
		refuse:  map[string]protocol.Code{},
		admins:  map[string]string{"admin": "admin-secret"},
		asked:   map[string]int{},
	}
}

func (a *fakeAuth) Certificate(_ context.Context, deviceID, serial string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.asked[serial]++
	if a.revoked[serial] {
		return errRevoked
	}
	return nil
}

func (a *fakeAuth) Token(_ context.Context, deviceID, token string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if want, ok := a.tokens[deviceID]; ok && want == token {
		return nil
	}
	if code, ok := a.refuse[deviceID]; ok {
		return fakeRefusal{code}
	}
	return errors.New("unknown token")
}

// fakeRefusal is a Refusal; locked_out asks for 42 s.
type fakeRefusal struct{ code protocol.Code }

func (r fakeRefusal) Error() string { return "refused: " + string(r.code) }

func (r fakeRefusal) Reason() (protocol.Code, time.Duration) {
	if r.code == protocol.CodeLockedOut {
		return r.code, 42 * time.Second
	}
	return r.code, 0
}

func (a *fakeAuth) Admin(_ context.Context, username, password string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	want, ok := a.admins[username]
	return ok && want == password
}

func (a *fakeAuth) revoke(serial string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.revoked[serial] = true
}

func (a *fakeAuth) askedFor(serial string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.asked[serial]
}

// message is one Handler call.
type message struct {
	from    Identity
	topic   protocol.Topic
	payload string
}

// recorder is a Handler that keeps every call.
type recorder struct {
	mu   sync.Mutex
	msgs []message
	ch   chan message
}

func newRecorder() *recorder { return &recorder{ch: make(chan message, 1000)} }

func (r *recorder) handle(_ context.Context, from Identity, topic protocol.Topic, payload []byte) {
	m := message{from: from, topic: topic, payload: string(payload)}
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	r.ch <- m
}

func (r *recorder) all() []message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]message(nil), r.msgs...)
}

// next waits for the next Handler call.
func (r *recorder) next(t *testing.T) message {
	t.Helper()
	select {
	case m := <-r.ch:
		return m
	case <-time.After(waitFor):
		t.Fatal("no message reached the handler")
		return message{}
	}
}

// sessionEvent is one call of the Sessions observer.
type sessionEvent struct {
	id     Identity
	online bool // SessionUp (or Subscribed); false for SessionDown
	sub    bool // Subscribed
}

// presence records the Sessions observer's calls.
type presence struct{ ch chan sessionEvent }

func newPresence() *presence { return &presence{ch: make(chan sessionEvent, 100)} }

func (p *presence) SessionUp(id Identity)   { p.ch <- sessionEvent{id: id, online: true} }
func (p *presence) SessionDown(id Identity) { p.ch <- sessionEvent{id: id} }
func (p *presence) Subscribed(id Identity)  { p.ch <- sessionEvent{id: id, online: true, sub: true} }

func (p *presence) next(t *testing.T) sessionEvent {
	t.Helper()
	select {
	case e := <-p.ch:
		return e
	case <-time.After(waitFor):
		t.Fatal("no session event")
		return sessionEvent{}
	}
}

// env is a running broker with its fakes.
type env struct {
	b     *Broker
	pki   *testPKI
	auth  *fakeAuth
	rec   *recorder
	pres  *presence
	a, b2 device // devices dev-a and dev-b
	topic protocol.Topics
}

// start runs a broker on 127.0.0.1:0 until the test ends; edit may change its Config.
func start(t testing.TB, edit func(*Config)) *env {
	t.Helper()
	pki := newPKI(t)
	e := &env{pki: pki, auth: newFakeAuth(), rec: newRecorder(), pres: newPresence()}
	e.a, e.b2 = pki.device(t, "dev-a"), pki.device(t, "dev-b")
	cfg := Config{Addr: "127.0.0.1:0", TLS: pki.serverTLSConfig(), Sessions: e.pres}
	if edit != nil {
		edit(&cfg)
	}
	e.topic = cfg.Topics
	logger := slog.New(slog.DiscardHandler)
	if *logFlag {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	b, err := New(cfg, e.auth, e.rec.handle, logger)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	e.b = b
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run() = %v", err)
			}
		case <-time.After(waitFor):
			t.Error("Run did not return after its context ended")
		}
	})
	return e
}

// clientOpts returns paho options for the TLS listener, protocol 3.1.1, no reconnects.
func (e *env) clientOpts(clientID string, cert *tls.Certificate) *paho.ClientOptions {
	tc := &tls.Config{RootCAs: e.pki.Pool()}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return paho.NewClientOptions().
		AddBroker("ssl://" + e.b.Addr().String()).
		SetTLSConfig(tc).
		SetClientID(clientID).
		SetProtocolVersion(4).
		SetOrderMatters(false).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(waitFor).
		SetCleanSession(true)
}

// connect connects a paho client; it is disconnected when the test ends.
func connect(t *testing.T, opts *paho.ClientOptions) (paho.Client, error) {
	t.Helper()
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(waitFor) {
		t.Fatal("paho Connect did not finish")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

// mustConnect connects or fails the test.
func mustConnect(t *testing.T, opts *paho.ClientOptions) paho.Client {
	t.Helper()
	c, err := connect(t, opts)
	if err != nil {
		t.Fatalf("Connect(%s) = %v", opts.ClientID, err)
	}
	return c
}

// wait waits for a paho token or fails the test.
func wait(t *testing.T, what string, tok paho.Token) {
	t.Helper()
	if !tok.WaitTimeout(waitFor) {
		t.Fatalf("%s did not finish", what)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s = %v", what, err)
	}
}

// subscribed waits until some client subscribed to topic (mochi's own index).
func (e *env) subscribed(t *testing.T, topic string) {
	t.Helper()
	testkit.Eventually(t, waitFor, func() bool { return len(e.b.srv.Topics.Subscribers(topic).Subscriptions) > 0 },
		"nobody subscribed to %q", topic)
}

// retained returns the payloads retained on topic.
func (e *env) retained(topic string) []string {
	var out []string
	for _, pk := range e.b.srv.Topics.Messages(topic) {
		out = append(out, string(pk.Payload))
	}
	return out
}
