package testkit

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/hearth-pki/hearth/protocol"
)

// Behaviour is how the Responder answers.
type Behaviour int

// The behaviours.
const (
	Normal         Behaviour = iota // answer CSRs with a good chain and commits with an ack
	BadChain                        // answer CSRs with a chain from another CA
	NoReply                         // never answer CSRs
	ErrorReply                      // answer CSRs with an error (ErrorCode)
	DropOnce                        // on the first CSR, kick the device off (session takeover) without answering; then Normal
	NoAck                           // answer CSRs, never acknowledge commits
	AckError                        // answer CSRs, refuse commits with not_presented
	DropCommitOnce                  // on the first commit, kick the device off without acknowledging it; then Normal
)

// Responder plays the hub on a Broker: it answers every device's CSRs (idempotently per
// request id) and commits, and records everything it receives on buffered channels.
type Responder struct {
	// CSRs, Commits, Healths and States receive what devices publish.
	CSRs    chan protocol.CSR
	Commits chan protocol.Commit
	Healths chan protocol.Health
	States  chan protocol.State

	t      testing.TB
	broker *Broker
	ca     *CA
	other  *CA
	client mqtt.Client
	topics protocol.Topics

	wg sync.WaitGroup // answers in flight

	// life guards stopped: handlers hold it shared while they run, the test's cleanup
	// exclusively, so no handler touches t once the test ended.
	life    sync.RWMutex
	stopped bool
	done    chan struct{} // closed first at cleanup: unblocks a handler waiting to record

	mu        sync.Mutex
	behaviour Behaviour
	errorCode protocol.Code
	lifetime  time.Duration
	hubNow    func() time.Time
	issued    map[string]*protocol.Cert
	dropped   bool              // DropOnce or DropCommitOnce did
	clientIDs map[string]string // device id → client id of its latest session (from mosquitto's log)
}

// connectedLine is mosquitto's notice of a new session, published on $SYS/broker/log/N.
var connectedLine = regexp.MustCompile(`New client connected from \S+ as (\S+) \(`)

// StartResponder connects a responder to b. Certificates it issues live for an hour unless
// SetLifetime says otherwise.
func StartResponder(t testing.TB, b *Broker) *Responder {
	t.Helper()
	r := &Responder{
		CSRs: make(chan protocol.CSR, 64), Commits: make(chan protocol.Commit, 64),
		Healths: make(chan protocol.Health, 256), States: make(chan protocol.State, 256),
		t: t, broker: b, ca: b.CA, other: NewCA(t, "Rogue"),
		lifetime: time.Hour, hubNow: time.Now, issued: map[string]*protocol.Cert{}, clientIDs: map[string]string{},
		errorCode: protocol.CodeRateLimited, done: make(chan struct{}),
	}
	r.client = r.connect("hearth-test-hub")
	tok := r.client.SubscribeMultiple(map[string]byte{
		r.topics.AllDevices(protocol.KindCSR): 1, r.topics.AllDevices(protocol.KindCommit): 1,
		r.topics.AllDevices(protocol.KindHealth): 1, r.topics.AllDevices(protocol.KindState): 1,
	}, nil)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("responder subscribe: %v", tok.Error())
	}
	// Agents connect as "<device id>:<random>"; the broker's log says which, so DropOnce can
	// take the device's current session over.
	tok = r.client.Subscribe("$SYS/broker/log/N", 1, func(_ mqtt.Client, m mqtt.Message) {
		if g := connectedLine.FindStringSubmatch(string(m.Payload())); g != nil {
			dev, _, _ := strings.Cut(g[1], ":")
			r.mu.Lock()
			r.clientIDs[dev] = g[1]
			r.mu.Unlock()
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("responder subscribe to the broker log: %v", tok.Error())
	}
	t.Cleanup(func() {
		close(r.done)
		r.life.Lock()
		r.stopped = true
		r.life.Unlock()
		r.client.Disconnect(0)
		r.wg.Wait()
	})
	return r
}

// connect opens a paho session to the broker, authenticated by nothing, as clientID.
func (r *Responder) connect(clientID string) mqtt.Client {
	pool := x509.NewCertPool()
	pool.AddCert(r.ca.Root)
	opts := mqtt.NewClientOptions().AddBroker(r.broker.URL).SetClientID(clientID).
		SetProtocolVersion(4).SetOrderMatters(false).SetAutoReconnect(false).SetCleanSession(true).
		SetTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}).
		SetConnectTimeout(10 * time.Second).SetDefaultPublishHandler(r.handle)
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		r.t.Fatalf("responder connect: %v", tok.Error())
	}
	return c
}

// SetBehaviour changes how the responder answers from now on.
func (r *Responder) SetBehaviour(b Behaviour) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.behaviour, r.dropped = b, false
}

// SetErrorCode sets the code of ErrorReply answers.
func (r *Responder) SetErrorCode(c protocol.Code) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errorCode = c
}

// SetLifetime sets the lifetime of the certificates issued from now on.
func (r *Responder) SetLifetime(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lifetime = d
}

// SetHubNow sets the hub's clock.
func (r *Responder) SetHubNow(now func() time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hubNow = now
}

// HubNow reads the hub's clock.
func (r *Responder) HubNow() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hubNow().UTC()
}

// Publish publishes m (JSON) on topic with QoS 1.
func (r *Responder) Publish(topic string, retained bool, m protocol.Message) {
	r.t.Helper()
	b, err := protocol.Encode(m)
	if err != nil {
		r.t.Fatalf("responder publish %s: %v", topic, err)
	}
	r.PublishRaw(topic, retained, b)
}

// PublishRaw publishes payload on topic with QoS 1.
func (r *Responder) PublishRaw(topic string, retained bool, payload []byte) {
	r.t.Helper()
	if tok := r.client.Publish(topic, 1, retained, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		r.t.Fatalf("responder publish %s: %v", topic, tok.Error())
	}
}

// Command sends a command to device id.
func (r *Responder) Command(id, commandID string, action protocol.Action) {
	r.t.Helper()
	now := r.HubNow()
	r.Publish(r.topics.Device(id, protocol.KindCmd), false, &protocol.Command{
		V: protocol.Version, CommandID: commandID, Action: action, Deadline: now.Add(10 * time.Minute), HubTime: now,
	})
}

// PublishCA publishes the CA chain retained on the CA topic.
func (r *Responder) PublishCA() {
	r.t.Helper()
	r.PublishRaw(r.topics.CA(), true, r.ca.ChainPEM())
}

func (r *Responder) handle(_ mqtt.Client, m mqtt.Message) {
	r.life.RLock()
	defer r.life.RUnlock()
	if r.stopped {
		return // a message that arrived as the test ended
	}
	t, err := r.topics.Parse(m.Topic())
	if err != nil {
		return
	}
	switch t.Kind {
	case protocol.KindCSR:
		var c protocol.CSR
		if err := protocol.Decode(m.Payload(), &c); err != nil {
			r.t.Errorf("responder: invalid CSR from %s: %v", t.DeviceID, err)
			return
		}
		select {
		case r.CSRs <- c:
		case <-r.done:
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.answerCSR(t.DeviceID, c)
		}()
	case protocol.KindCommit:
		var c protocol.Commit
		if err := protocol.Decode(m.Payload(), &c); err != nil {
			r.t.Errorf("responder: invalid commit from %s: %v", t.DeviceID, err)
			return
		}
		select {
		case r.Commits <- c:
		case <-r.done:
			return
		}
		if c.Outcome == protocol.OutcomeCommitted {
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				r.answerCommit(t.DeviceID, c)
			}()
		}
	case protocol.KindHealth:
		var h protocol.Health
		if err := protocol.Decode(m.Payload(), &h); err != nil {
			r.t.Errorf("responder: invalid health from %s: %v", t.DeviceID, err)
			return
		}
		select {
		case r.Healths <- h:
		default:
		}
	case protocol.KindState:
		var s protocol.State
		if len(m.Payload()) == 0 {
			return
		}
		if err := protocol.Decode(m.Payload(), &s); err != nil {
			r.t.Errorf("responder: invalid state from %s: %v", t.DeviceID, err)
			return
		}
		select {
		case r.States <- s:
		default:
		}
	}
}

func (r *Responder) answerCSR(id string, c protocol.CSR) {
	r.mu.Lock()
	b, code, life, now := r.behaviour, r.errorCode, r.lifetime, r.hubNow().UTC()
	cached := r.issued[c.RequestID]
	drop := b == DropOnce && !r.dropped
	if drop {
		r.dropped = true
	}
	session := r.clientIDs[id]
	r.mu.Unlock()
	switch {
	case b == NoReply:
		return
	case drop:
		r.kick(id, session)
		return
	}
	reply := cached
	if reply == nil {
		reply = &protocol.Cert{V: protocol.Version, RequestID: c.RequestID, HubTime: now}
		if b == ErrorReply {
			reply.Error = &protocol.Error{Code: code, Message: "test hub refuses", RetryAfter: 1}
		} else {
			block, _ := pem.Decode([]byte(c.CSR))
			csr, err := x509.ParseCertificateRequest(block.Bytes)
			if err != nil || csr.CheckSignature() != nil {
				r.t.Errorf("responder: bad CSR from %s: %v", id, err)
				return
			}
			ca := r.ca
			if b == BadChain {
				ca = r.other
			}
			leaf := ca.Issue(r.t, csr.PublicKey, id, now.Add(-time.Minute), now.Add(life))
			reply.Chain = string(PEM(leaf, ca.Intermediate))
			reply.Serial = strings.ToLower(leaf.SerialNumber.Text(16))
		}
		r.mu.Lock()
		r.issued[c.RequestID] = reply
		r.mu.Unlock()
	}
	out := *reply
	out.HubTime = now
	r.send(r.topics.Device(id, protocol.KindCert), &out)
}

// kick ends the device's session (the client id of its latest one, or its id) by taking it
// over.
func (r *Responder) kick(id, session string) {
	if session == "" {
		session = id
	}
	kicker := r.connect(session)
	kicker.Disconnect(0)
}

func (r *Responder) answerCommit(id string, c protocol.Commit) {
	r.mu.Lock()
	b, now := r.behaviour, r.hubNow().UTC()
	drop := b == DropCommitOnce && !r.dropped
	if drop {
		r.dropped = true
	}
	session := r.clientIDs[id]
	r.mu.Unlock()
	ack := &protocol.Ack{V: protocol.Version, RequestID: c.RequestID, Serial: c.Serial, HubTime: now}
	switch {
	case drop:
		r.kick(id, session)
		return
	case b == NoAck:
		return
	case b == AckError:
		ack.Serial = ""
		ack.Error = &protocol.Error{Code: protocol.CodeNotPresented, Message: "the TLS session presents another serial", RetryAfter: 5}
	}
	r.send(r.topics.Device(id, protocol.KindAck), ack)
}

// send publishes a reply from a handler goroutine, where the test may no longer be running
// its own goroutine: failures are logged, not fatal.
func (r *Responder) send(topic string, m protocol.Message) {
	b, err := protocol.Encode(m)
	if err != nil {
		r.t.Errorf("responder: encode %s: %v", topic, err)
		return
	}
	if tok := r.client.Publish(topic, 1, false, b); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		r.t.Logf("responder: publish %s: %v", topic, tok.Error())
	}
}
