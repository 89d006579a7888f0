package hub

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/hearth-pki/hearth/protocol"
)

// Mode selects what a Session authenticates with and subscribes to.
type Mode int

// The session modes.
const (
	// ModeDevice is an enrolled device's mutual-TLS session: Will and online state, and
	// subscriptions to its cert, ack, cmd and renewal topics and to the CA topic.
	ModeDevice Mode = iota
	// ModeEnroll is an enrolling device's session: username (the device id) and password (the
	// enrollment token), subscribed to its cert topic only, no Will.
	ModeEnroll
	// ModeCA is an anonymous session that only reads the retained CA topic.
	ModeCA
)

// Defaults of Config's zero fields.
const (
	DefaultConnectTimeout = 20 * time.Second
	DefaultKeepAlive      = 60 * time.Second
	DefaultInboxSize      = 16
	DefaultPort           = "8883"
)

// MaxWaiters bounds the requests and commits awaiting a reply on one Session.
const MaxWaiters = 4

// Config describes one Session.
type Config struct {
	// URL is the hub's address, "mqtts://host:port" ("ssl", "tls" and "tcps" are synonyms);
	// the port defaults to 8883.
	URL string
	// DeviceID is the device's id, also its MQTT client id.
	DeviceID string
	// Topics builds the topic names; the zero value uses the default prefix.
	Topics protocol.Topics
	// TLS is the TLS configuration: the verification of the hub (pinned CA) and, in
	// ModeDevice, GetClientCertificate returning the pair to present. Required.
	TLS *tls.Config
	// Mode selects credentials and subscriptions.
	Mode Mode
	// Username and Password authenticate a ModeEnroll session.
	Username, Password string
	// Version is the agent version carried in the state messages.
	Version string
	// ConnectTimeout bounds the TCP dial, the TLS handshake and CONNECT/CONNACK, and each
	// subscription; zero means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// KeepAlive is the MQTT keep-alive; zero means DefaultKeepAlive.
	KeepAlive time.Duration
	// InboxSize is the capacity of the Inbox channel; zero means DefaultInboxSize.
	InboxSize int
	// Logger receives the session's diagnostics; nil means slog.Default().
	Logger *slog.Logger
}

// ErrConnectionLost means the connection ended while an operation waited on it.
var ErrConnectionLost = errors.New("hub: connection lost")

// ErrTooManyRequests means MaxWaiters requests already await a reply.
var ErrTooManyRequests = errors.New("hub: too many requests awaiting a reply")

// ErrDuplicateRequest means a request with the same id already awaits a reply.
var ErrDuplicateRequest = errors.New("hub: request id already awaiting a reply")

// ErrSubscribeRefused means the hub refused a subscription (SUBACK failure code).
var ErrSubscribeRefused = errors.New("hub: subscription refused")

// RefusedError means the hub answered CONNECT with a refusal (MQTT 3.1.1 CONNACK return code).
type RefusedError struct {
	Code byte
}

// Error names the refusal.
func (e *RefusedError) Error() string {
	if reason, ok := packets.ConnackReturnCodes[e.Code]; ok {
		return fmt.Sprintf("hub refused the connection: %s (code %d)", strings.ToLower(reason), e.Code)
	}
	return fmt.Sprintf("hub refused the connection: code %d", e.Code)
}

// DialError means the connection could not be opened (network, TLS handshake, timeout).
type DialError struct {
	Err error
}

// Error describes the failure.
func (e *DialError) Error() string { return "hub: connect: " + e.Err.Error() }

// Unwrap returns the cause.
func (e *DialError) Unwrap() error { return e.Err }

// Inbound is a push from the hub. Exactly one of Command, Renewal and CA is set.
type Inbound struct {
	Command *protocol.Command
	Renewal *protocol.RenewalInfo
	// CA is the PEM content of the retained CA topic.
	CA string
	// Retained reports that the message was the broker's retained copy (its hub time may be
	// old), not a live publication.
	Retained bool
}

// Session is one connection to the hub. Create it with Dial.
type Session struct {
	cfg    Config
	log    *slog.Logger
	client mqtt.Client
	inbox  chan Inbound

	lost     chan struct{}
	lostOnce sync.Once

	mu      sync.Mutex
	lostErr error
	certs   map[string]chan *protocol.Cert
	acks    map[string]chan *protocol.Ack
}

// ParseURL checks a hub URL and returns it normalized to "mqtts://host:port".
func ParseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("hub url %q: %w", raw, err)
	}
	switch u.Scheme {
	case "mqtts", "ssl", "tls", "tcps":
	default:
		return nil, fmt.Errorf("hub url %q: scheme must be mqtts (TLS is required)", raw)
	}
	if u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("hub url %q: want mqtts://host:port", raw)
	}
	port := u.Port()
	if port == "" {
		port = DefaultPort
	}
	return &url.URL{Scheme: "mqtts", Host: net.JoinHostPort(u.Hostname(), port)}, nil
}

// Dial connects to the hub and subscribes according to cfg.Mode. The returned error is a
// *RefusedError when the hub refused CONNECT, a *DialError when the connection or the TLS
// handshake failed, or ctx's error.
func Dial(ctx context.Context, cfg Config) (*Session, error) {
	u, err := ParseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.TLS == nil {
		return nil, errors.New("hub: dial: no TLS configuration")
	}
	if err := protocol.ValidateDeviceID(cfg.DeviceID); err != nil && cfg.Mode != ModeCA {
		return nil, fmt.Errorf("hub: dial: %w", err)
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.InboxSize <= 0 {
		cfg.InboxSize = DefaultInboxSize
	}
	s := &Session{
		cfg:   cfg,
		log:   cfg.Logger,
		inbox: make(chan Inbound, cfg.InboxSize),
		lost:  make(chan struct{}),
		certs: make(map[string]chan *protocol.Cert),
		acks:  make(map[string]chan *protocol.Ack),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("hub", u.Host)

	opts := mqtt.NewClientOptions().
		AddBroker(u.String()).
		SetProtocolVersion(4).
		SetClientID(s.clientID()).
		SetCleanSession(true).
		SetOrderMatters(false).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetResumeSubs(false).
		SetConnectTimeout(cfg.ConnectTimeout).
		SetWriteTimeout(cfg.ConnectTimeout).
		SetKeepAlive(cfg.KeepAlive).
		SetPingTimeout(cfg.ConnectTimeout).
		SetTLSConfig(cfg.TLS).
		SetStore(mqtt.NewMemoryStore()).
		SetMessageChannelDepth(uint(cfg.InboxSize)).
		SetDefaultPublishHandler(s.route).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) { s.markLost(err) })
	switch cfg.Mode {
	case ModeDevice:
		offline, err := protocol.Encode(&protocol.State{V: protocol.Version, State: protocol.Offline, AgentVersion: cfg.Version})
		if err != nil {
			return nil, fmt.Errorf("hub: dial: %w", err)
		}
		opts.SetBinaryWill(cfg.Topics.Device(cfg.DeviceID, protocol.KindState), offline, 1, true)
	case ModeEnroll:
		opts.SetUsername(cfg.Username).SetPassword(cfg.Password)
	}
	s.client = mqtt.NewClient(opts)

	tok := s.client.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		// Paho finishes (or times out) the attempt on its own goroutine; close what it opened.
		go func() {
			<-tok.Done()
			s.client.Disconnect(0)
		}()
		return nil, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		if ct, ok := tok.(*mqtt.ConnectToken); ok {
			if rc := ct.ReturnCode(); rc != packets.Accepted && rc != packets.ErrNetworkError {
				return nil, &RefusedError{Code: rc}
			}
		}
		return nil, &DialError{Err: err}
	}
	if err := s.subscribe(ctx); err != nil {
		s.client.Disconnect(0)
		return nil, err
	}
	if cfg.Mode == ModeDevice {
		if err := s.publishState(ctx, protocol.Online); err != nil {
			s.client.Disconnect(0)
			return nil, err
		}
	}
	s.log.Debug("connected to hub", "mode", cfg.Mode)
	return s, nil
}

// clientID is the MQTT client id: the device id and a random suffix per connection
// ("<id>:<8 hex>", which the hub's broker accepts for the device). A reconnection — with a
// new certificate, after a renewal — is then a new session, never a takeover of the old one:
// mochi can tear a taken-over session down after the new one subscribed and take the new
// session's subscriptions with it, and the commit's acknowledgment would never arrive. The
// anonymous CA session uses another prefix so it never competes with the device's session.
func (s *Session) clientID() string {
	b := make([]byte, 4)
	rand.Read(b)
	if s.cfg.Mode == ModeCA {
		return "hearth-ca-" + s.cfg.DeviceID + ":" + hex.EncodeToString(b)
	}
	return s.cfg.DeviceID + ":" + hex.EncodeToString(b)
}

// subscribe makes the subscriptions of the session's mode, QoS 1.
func (s *Session) subscribe(ctx context.Context) error {
	t := s.cfg.Topics
	filters := map[string]byte{}
	switch s.cfg.Mode {
	case ModeDevice:
		for _, k := range []protocol.Kind{protocol.KindCert, protocol.KindAck, protocol.KindCmd, protocol.KindRenewal} {
			filters[t.Device(s.cfg.DeviceID, k)] = 1
		}
		filters[t.CA()] = 1
	case ModeEnroll:
		filters[t.Device(s.cfg.DeviceID, protocol.KindCert)] = 1
	case ModeCA:
		filters[t.CA()] = 1
	}
	tok := s.client.SubscribeMultiple(filters, nil)
	if err := s.wait(ctx, tok); err != nil {
		return fmt.Errorf("hub: subscribe: %w", err)
	}
	if st, ok := tok.(*mqtt.SubscribeToken); ok {
		for topic, qos := range st.Result() {
			if qos != 0x80 { // SUBACK failure (MQTT 3.1.1 §3.9.3)
				continue
			}
			if topic == t.CA() && s.cfg.Mode == ModeDevice {
				// Only CA rotation needs it; the session is useful without.
				s.log.Warn("hub refused the subscription to its CA topic", "topic", topic)
				continue
			}
			return fmt.Errorf("%w: %s", ErrSubscribeRefused, topic)
		}
	}
	return nil
}

// publishState publishes the device's retained presence.
func (s *Session) publishState(ctx context.Context, p protocol.Presence) error {
	b, err := protocol.Encode(&protocol.State{V: protocol.Version, State: p, AgentVersion: s.cfg.Version})
	if err != nil {
		return fmt.Errorf("hub: state: %w", err)
	}
	if err := s.publish(ctx, s.cfg.Topics.Device(s.cfg.DeviceID, protocol.KindState), true, b); err != nil {
		return fmt.Errorf("hub: state: %w", err)
	}
	return nil
}

// Inbox returns the hub's pushes. Messages that arrive while it is full are dropped (and
// logged): a retained message comes again on the next connection and the hub repeats
// commands that had no effect.
func (s *Session) Inbox() <-chan Inbound { return s.inbox }

// Lost returns a channel closed when the connection is lost or closed.
func (s *Session) Lost() <-chan struct{} { return s.lost }

// Err returns why the connection was lost, or nil while it is up.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lostErr
}

func (s *Session) markLost(err error) {
	if err == nil {
		err = ErrConnectionLost
	}
	s.mu.Lock()
	if s.lostErr == nil {
		s.lostErr = err
	}
	s.mu.Unlock()
	s.lostOnce.Do(func() { close(s.lost) })
}

// Close announces the device offline (ModeDevice), disconnects and waits at most a moment for
// the disconnection to be sent. It is safe to call more than once.
func (s *Session) Close(ctx context.Context) {
	if s.cfg.Mode == ModeDevice && s.client.IsConnectionOpen() {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := s.publishState(ctx, protocol.Offline); err != nil {
			s.log.Debug("could not announce offline state", "err", err)
		}
		cancel()
	}
	s.Drop()
}

// Drop disconnects without announcing anything: the Will is discarded, as after any clean
// disconnection. It is used to reconnect at once with another certificate.
func (s *Session) Drop() {
	s.client.Disconnect(250)
	s.markLost(fmt.Errorf("%w: closed by the agent", ErrConnectionLost))
}

// wait waits for tok, ctx or the loss of the connection.
func (s *Session) wait(ctx context.Context, tok mqtt.Token) error {
	timer := time.NewTimer(s.cfg.ConnectTimeout)
	defer timer.Stop()
	select {
	case <-tok.Done():
		err := tok.Error()
		if err != nil && !s.client.IsConnectionOpen() {
			// Paho fails the tokens of a lost connection ("connection lost before Publish
			// completed", or not connected) before it reports the loss: the caller must
			// see a lost connection, which it may try again on a new session.
			return fmt.Errorf("%w: %w", ErrConnectionLost, err)
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-s.lost:
		return s.lostError()
	case <-timer.C:
		return fmt.Errorf("no answer from the hub within %s", s.cfg.ConnectTimeout)
	}
}

func (s *Session) lostError() error {
	if err := s.Err(); err != nil && !errors.Is(err, ErrConnectionLost) {
		return fmt.Errorf("%w: %w", ErrConnectionLost, err)
	}
	return ErrConnectionLost
}

// publish sends a QoS 1 message and waits for the hub's PUBACK.
func (s *Session) publish(ctx context.Context, topic string, retained bool, payload []byte) error {
	return s.wait(ctx, s.client.Publish(topic, 1, retained, payload))
}
