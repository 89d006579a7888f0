package natsbroker

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"

	"github.com/hearth-pki/hearth/gateway/internal/broker"
	"github.com/hearth-pki/hearth/protocol"
)

// Settings that are not configuration.
const (
	calloutSubject   = "$SYS.REQ.USER.AUTH"
	maxCallouts      = 64              // callouts answered at once by one replica
	maxEarly         = 4096            // publishes kept until the hub's MQTT session is up
	inboxSize        = 8192            // requests and events queued between NATS and the hub
	pingInterval     = time.Second     // how often the replica asks which nodes are alive
	pingWait         = 2 * time.Second // a node busy with JetStream answers late, not never
	pendingPromotion = 2 * time.Second // a callout this recent may be the sender of a message
)

// missesToGone is how many pings in a row a node must leave unanswered for its sessions to be
// counted down. A node that is only slow keeps its sessions, and once they are counted down
// nothing brings them back (no new connect event comes), so the messages of its devices would
// be dropped. On two cores at a load average of 30 (issue 17's storm test) a busy node left
// two pings in a row unanswered within 500 ms, and ten.
const missesToGone = 10

// ErrRunning is returned by a second call of Run.
var ErrRunning = errors.New("natsbroker: Run called twice")

// Broker connects the hub to the NATS cluster. Create it with New, run it with Run.
type Broker struct {
	cfg    Config
	auth   broker.Auth
	handle broker.Handler
	log    *slog.Logger
	reg    *registry
	seq    atomic.Uint64
	addr   net.Addr
	issuer string // the issuer's public key

	running atomic.Bool
	ctx     context.Context

	mu      sync.Mutex
	pub     paho.Client // nil until Run connected it
	early   []early
	sys     *nats.Conn
	pending map[string]pending // device → its latest callout not yet reported connected
	dropped map[string]cutoff  // device → sessions older than this are kicked on arrival
	// stated is when each device's last state message arrived here (see mark): its
	// session's connect event may come after it.
	stated map[string]time.Time
}

type early struct {
	topic   string
	payload []byte
	retain  bool
}

type pending struct {
	s  session
	at time.Time
}

type cutoff struct {
	conn  uint64
	until time.Time
}

// New checks cfg and prepares the broker. It connects to nothing and starts no goroutine.
func New(cfg Config, auth broker.Auth, handle broker.Handler, logger *slog.Logger) (*Broker, error) {
	if auth == nil || handle == nil {
		return nil, fmt.Errorf("%w: Auth and Handler are required", ErrConfig)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	addr, err := net.ResolveTCPAddr("tcp", cfg.MQTT[0])
	if err != nil {
		return nil, fmt.Errorf("%w: MQTT listener %q: %w", ErrConfig, cfg.MQTT[0], err)
	}
	issuer, _ := cfg.Issuer.PublicKey()
	return &Broker{cfg: cfg, auth: auth, handle: handle, log: logger, reg: newRegistry(cfg.Sessions), addr: addr,
		issuer: issuer, ctx: context.Background(), pending: map[string]pending{}, dropped: map[string]cutoff{},
		stated: map[string]time.Time{}}, nil
}

// Addr returns the first node's MQTT listener, where the hub checks that agents can connect.
func (b *Broker) Addr() net.Addr { return b.addr }

// nextConn numbers a session. Numbers grow with time across replicas (they start from the
// clock in nanoseconds), so a larger one is a newer session wherever it was numbered.
func (b *Broker) nextConn() uint64 {
	now := uint64(b.cfg.Now().UnixNano())
	for {
		last := b.seq.Load()
		n := max(last+1, now)
		if b.seq.CompareAndSwap(last, n) {
			return n
		}
	}
}

// Run connects to the cluster and serves until ctx ends: it answers the auth callout, hands
// requests to the Handler, follows presence, and publishes for the hub. It returns once
// its connections are closed.
func (b *Broker) Run(ctx context.Context) error {
	if !b.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	b.ctx = ctx
	servers := strings.Join(b.cfg.URLs, ",")
	connOpts := func(name string) []nats.Option {
		return []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
			nats.RetryOnFailedConnect(true), nats.Timeout(b.cfg.ConnectTimeout),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { b.log.Warn("nats connection lost", "conn", name, "err", err) }),
			nats.ReconnectHandler(func(c *nats.Conn) { b.log.Info("nats reconnected", "conn", name, "server", c.ConnectedUrl()) })}
	}
	nc, err := nats.Connect(servers, append(connOpts("hearth-hub"), nats.UserInfo(b.cfg.User, b.cfg.Password))...)
	if err != nil {
		return fmt.Errorf("natsbroker: connect: %w", err)
	}
	defer nc.Close()
	sys, err := nats.Connect(servers, append(connOpts("hearth-hub-system"), nats.UserInfo(b.cfg.SystemUser, b.cfg.SystemPassword))...)
	if err != nil {
		return fmt.Errorf("natsbroker: connect to the system account: %w", err)
	}
	defer sys.Close()
	b.mu.Lock()
	b.sys = sys
	b.mu.Unlock()

	in := make(chan *nats.Msg, inboxSize)
	events := make(chan *nats.Msg, inboxSize)
	t := b.cfg.Topics
	for _, k := range []protocol.Kind{protocol.KindCSR, protocol.KindCommit, protocol.KindHealth, protocol.KindState} {
		if _, err := nc.ChanQueueSubscribe(subject(t.Device("*", k)), b.cfg.Queue, in); err != nil {
			return fmt.Errorf("natsbroker: subscribe: %w", err)
		}
	}
	if _, err := nc.ChanQueueSubscribe(subject(t.BridgeRequest(""))+">", b.cfg.Queue, in); err != nil {
		return fmt.Errorf("natsbroker: subscribe: %w", err)
	}
	// Every replica also sees every state message, outside the queue group, only to mark
	// the session subscribed: the leader sends a campaign's commands, whichever replica
	// handled the device's first state.
	marks := make(chan *nats.Msg, inboxSize)
	if _, err := nc.ChanSubscribe(subject(t.Device("*", protocol.KindState)), marks); err != nil {
		return fmt.Errorf("natsbroker: subscribe: %w", err)
	}
	sem := make(chan struct{}, maxCallouts)
	var wg sync.WaitGroup
	// Unwinds in order: the hub's MQTT session, then no more callouts or events (the
	// connections close), then the goroutines they started are waited for.
	defer wg.Wait()
	defer nc.Close()
	defer sys.Close()
	if _, err := nc.QueueSubscribe(calloutSubject, b.cfg.Queue, func(m *nats.Msg) {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			b.callout(ctx, m)
		}()
	}); err != nil {
		return fmt.Errorf("natsbroker: subscribe to the auth callout: %w", err)
	}
	for _, ev := range []string{"CONNECT", "DISCONNECT"} {
		if _, err := sys.ChanSubscribe("$SYS.ACCOUNT."+b.cfg.Account+"."+ev, events); err != nil {
			return fmt.Errorf("natsbroker: subscribe to presence: %w", err)
		}
	}
	if _, err := sys.ChanSubscribe("$SYS.SERVER.*.SHUTDOWN", events); err != nil {
		return fmt.Errorf("natsbroker: subscribe to node shutdowns: %w", err)
	}
	if err := errors.Join(nc.Flush(), sys.Flush()); err != nil {
		b.log.Warn("nats subscriptions not confirmed yet", "err", err)
	}

	pub, err := b.connectMQTT(ctx)
	if err != nil {
		return err
	}
	defer pub.Disconnect(250)

	wg.Add(2)
	go func() { defer wg.Done(); b.watchNodes(ctx, sys) }()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-events:
				b.event(m)
			}
		}
	}()
	b.log.Info("connected to the NATS cluster", "nats", nc.ConnectedUrl(), "account", b.cfg.Account, "queue", b.cfg.Queue)
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-in:
			b.receive(ctx, m)
		case m := <-marks:
			b.mark(m)
		}
	}
}

// connectMQTT opens the hub's own MQTT session, through which it publishes, and sends what
// was published before.
func (b *Broker) connectMQTT(ctx context.Context) (paho.Client, error) {
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	o := paho.NewClientOptions().SetClientID("hearth-hub-" + hex.EncodeToString(suffix)).
		SetUsername(b.cfg.User).SetPassword(b.cfg.Password).SetCleanSession(true).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(250 * time.Millisecond).
		SetMaxReconnectInterval(2 * time.Second).SetConnectTimeout(b.cfg.ConnectTimeout).SetOrderMatters(false).
		SetTLSConfig(&tls.Config{RootCAs: b.cfg.RootCAs, MinVersion: tls.VersionTLS12})
	for _, a := range b.cfg.MQTT {
		o.AddBroker("tls://" + a)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return nil, fmt.Errorf("natsbroker: mqtt connect: %w", err)
		}
	case <-ctx.Done():
		c.Disconnect(0)
		return nil, ctx.Err()
	}
	b.mu.Lock()
	b.pub = c
	queued := b.early
	b.early = nil
	b.mu.Unlock()
	for _, e := range queued {
		if err := b.Publish(e.topic, e.payload, e.retain); err != nil {
			b.log.Warn("publish", "topic", e.topic, "err", err)
		}
	}
	return c, nil
}

// Publish publishes payload on topic at QoS 1 as the hub, retained if retain is set, and
// waits for the node's acknowledgement. Before Run connected, it keeps the message (the
// latest for a retained topic) and sends it once connected.
func (b *Broker) Publish(topic string, payload []byte, retain bool) error {
	b.mu.Lock()
	c := b.pub
	if c == nil {
		defer b.mu.Unlock()
		if retain {
			for i, e := range b.early {
				if e.retain && e.topic == topic {
					b.early[i].payload = payload
					return nil
				}
			}
		}
		if len(b.early) >= maxEarly {
			return fmt.Errorf("natsbroker: publish %q: not connected yet and %d messages are waiting", topic, maxEarly)
		}
		b.early = append(b.early, early{topic: topic, payload: payload, retain: retain})
		return nil
	}
	b.mu.Unlock()
	tok := c.Publish(topic, 1, retain, payload)
	if !tok.WaitTimeout(b.cfg.ConnectTimeout) {
		return fmt.Errorf("natsbroker: publish %q: no acknowledgement within %s", topic, b.cfg.ConnectTimeout)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("natsbroker: publish %q: %w", topic, err)
	}
	return nil
}

// Online reports whether deviceID has a device session on any node.
func (b *Broker) Online(deviceID string) bool { return b.reg.online(deviceID) }

// Disconnect kicks every session of deviceID the cluster reported, on the node that holds
// it, and returns how many. A session whose callout was answered before and whose connect
// event comes after is kicked when that event arrives. Auth must already refuse the device.
func (b *Broker) Disconnect(deviceID string) int {
	all, _ := b.reg.sessions(deviceID, 0)
	b.mu.Lock()
	b.dropped[deviceID] = cutoff{conn: b.nextConn(), until: b.cfg.Now().Add(2 * b.cfg.ConnectTimeout)}
	delete(b.pending, deviceID)
	for d, c := range b.dropped {
		if b.cfg.Now().After(c.until) {
			delete(b.dropped, d)
		}
	}
	b.mu.Unlock()
	for _, w := range all {
		b.kick(w)
	}
	if len(all) > 0 {
		b.log.Info("mqtt device disconnected", "device", deviceID, "sessions", len(all))
	}
	return len(all)
}

// DisconnectAfter is Disconnect with a grace: it returns at once how many sessions of
// deviceID are open and kicks them when grace has passed, so that the CRL published just
// before reaches them first.
func (b *Broker) DisconnectAfter(deviceID string, grace time.Duration) int {
	if grace <= 0 {
		return b.Disconnect(deviceID)
	}
	all, _ := b.reg.sessions(deviceID, 0)
	if len(all) > 0 {
		time.AfterFunc(grace, func() { b.Disconnect(deviceID) })
	}
	return len(all)
}

// kick asks the node that holds a session to close it.
func (b *Broker) kick(w where) {
	b.mu.Lock()
	sys := b.sys
	b.mu.Unlock()
	if sys == nil || w.server == "" {
		return
	}
	// The server acts only on a request with a reply subject; the answer is read off the
	// caller's path.
	body := fmt.Appendf(nil, `{"cid":%d}`, w.cid)
	go func() {
		m, err := sys.Request("$SYS.REQ.SERVER."+w.server+".KICK", body, b.cfg.ConnectTimeout)
		var resp struct {
			Error *struct {
				Description string `json:"description"`
			} `json:"error"`
		}
		if err == nil && json.Unmarshal(m.Data, &resp) == nil && resp.Error != nil {
			err = errors.New(resp.Error.Description)
		}
		if err != nil {
			b.log.Warn("kick a session", "server", w.server, "cid", w.cid, "err", err)
		}
	}()
}

// receive hands one request to the Handler, attributed to its sender's session.
func (b *Broker) receive(ctx context.Context, m *nats.Msg) {
	t, err := b.cfg.Topics.Parse(topicOf(m.Subject))
	if err != nil {
		return
	}
	if t.Kind == protocol.KindBridgeRequest {
		s, ok := b.reg.onlyAdmin()
		if !ok {
			b.log.Warn("bridge request dropped: the sender is not known (not exactly one admin session online)", "op", t.Op)
			return
		}
		b.handle(ctx, s.id, t, m.Data)
		return
	}
	b.promote(t.DeviceID)
	s, _, ok := b.reg.newest(t.DeviceID, t.Kind == protocol.KindState)
	if !ok {
		b.log.Info("mqtt message dropped: no session of the device is known", "device", t.DeviceID, "topic", t.Kind)
		return
	}
	switch {
	case s.id.Role == broker.RoleRefused:
		if t.Kind == protocol.KindCSR {
			b.answerRefused(s, m.Data)
		}
		return
	case s.id.Role == broker.RoleEnrolling && t.Kind != protocol.KindCSR,
		s.id.Expired && t.Kind != protocol.KindCSR:
		return // the permissions already refuse these; a message of an older session
	}
	b.handle(ctx, s.id, t, m.Data)
}

// mark marks the newest session of a state message's device subscribed, as receive does on
// the replica the queue group gave the message to; the Handler is not called.
func (b *Broker) mark(m *nats.Msg) {
	t, err := b.cfg.Topics.Parse(topicOf(m.Subject))
	if err != nil || t.Kind != protocol.KindState {
		return
	}
	b.promote(t.DeviceID)
	b.reg.newest(t.DeviceID, true)
	// The session that sent it may not be known here yet (its connect event comes over the
	// system account's connection, the message over the hub's): a session of the device that
	// connects within pendingPromotion is counted subscribed too (event).
	b.mu.Lock()
	b.stated[t.DeviceID] = b.cfg.Now()
	b.mu.Unlock()
}

// markLate marks the device's newest session subscribed when a state message of the device
// arrived shortly before (mark), and forgets that message.
func (b *Broker) markLate(deviceID string) {
	b.mu.Lock()
	at, ok := b.stated[deviceID]
	delete(b.stated, deviceID)
	b.mu.Unlock()
	if ok && b.cfg.Now().Sub(at) < pendingPromotion {
		b.reg.newest(deviceID, true)
	}
}

// promote registers the device's latest callout answered here whose connect event has not
// arrived yet: a message of the device may come before it (another connection).
func (b *Broker) promote(deviceID string) {
	b.mu.Lock()
	p, ok := b.pending[deviceID]
	if ok {
		delete(b.pending, deviceID)
	}
	b.mu.Unlock()
	if ok && b.cfg.Now().Sub(p.at) < pendingPromotion {
		b.reg.up(p.s, where{})
	}
}

// answerRefused answers a refused session's CSR with the refusal's code on its cert topic.
func (b *Broker) answerRefused(s session, payload []byte) {
	var csr protocol.CSR
	if protocol.Decode(payload, &csr) != nil {
		return
	}
	info, _ := s.refusal.Info()
	msg := info.Description
	if s.retry > 0 {
		msg += "; retry in " + s.retry.String()
	}
	reply := protocol.Cert{V: protocol.Version, RequestID: csr.RequestID, HubTime: b.cfg.Now().UTC(),
		Error: &protocol.Error{Code: s.refusal, Message: protocol.Clip(msg, protocol.MaxTextLen), RetryAfter: int(s.retry / time.Second)}}
	body, err := protocol.Encode(&reply)
	if err == nil {
		err = b.Publish(b.cfg.Topics.Device(s.id.DeviceID, protocol.KindCert), body, false)
	}
	if err != nil {
		b.log.Warn("mqtt refusal not delivered", "device", s.id.DeviceID, "err", err)
	}
}
