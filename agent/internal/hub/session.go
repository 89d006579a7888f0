package hub

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/log"
	"github.com/hearth-pki/hearth/agent/internal/mqtt"
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
	// Logger receives the session's diagnostics; nil means log.Default().
	Logger *log.Logger
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
	msg := (&mqtt.RefusedError{Code: e.Code}).Error()
	return "hub refused the connection: " + strings.TrimPrefix(msg, "mqtt: connection refused: ")
}

// DialError means the connection could not be opened (network, TLS handshake, timeout).
type DialError struct {
	Err error
	// Alert is set when the hub answered the TLS handshake with an alert: it turned this
	// client down, as a hub does with a certificate it does not trust. Unset when the address
	// could not be reached or the connection broke (a hub restarting, the network down).
	Alert bool
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
	// CRL is the PEM content of the retained CRL topic.
	CRL string
	// Retained reports that the message was the broker's retained copy (its hub time may be
	// old), not a live publication.
	Retained bool
}

// Session is one connection to the hub. Create it with Dial.
type Session struct {
	cfg   Config
	log   *log.Logger
	conn  *mqtt.Conn
	inbox chan Inbound

	mu    sync.Mutex
	certs map[string]chan *protocol.Cert
	acks  map[string]chan *protocol.Ack
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
// handshake failed (DialError.Alert when the hub refused the handshake), or ctx's error.
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
		certs: make(map[string]chan *protocol.Cert),
		acks:  make(map[string]chan *protocol.Ack),
	}
	if s.log == nil {
		s.log = log.Default()
	}
	s.log = s.log.With("hub", u.Host)

	mc := mqtt.Config{
		ClientID:  s.clientID(),
		KeepAlive: cfg.KeepAlive,
		Timeout:   cfg.ConnectTimeout,
		OnMessage: s.route,
	}
	switch cfg.Mode {
	case ModeDevice:
		offline, err := protocol.Encode(&protocol.State{V: protocol.Version, State: protocol.Offline, AgentVersion: cfg.Version})
		if err != nil {
			return nil, fmt.Errorf("hub: dial: %w", err)
		}
		mc.Will = &mqtt.Message{Topic: cfg.Topics.Device(cfg.DeviceID, protocol.KindState), Payload: offline, QoS: 1, Retained: true}
	case ModeEnroll:
		mc.Username, mc.Password = cfg.Username, cfg.Password
	}

	// One deadline for the TCP dial, the TLS handshake and CONNECT/CONNACK.
	dctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	var nd net.Dialer
	raw, err := nd.DialContext(dctx, "tcp", u.Host)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &DialError{Err: err}
	}
	tc := cfg.TLS
	if tc.ServerName == "" {
		tc = tc.Clone()
		tc.ServerName = u.Hostname()
	}
	nc := tls.Client(raw, tc)
	err = nc.HandshakeContext(dctx)
	if err == nil {
		s.conn, err = mqtt.Connect(dctx, nc, mc)
	}
	if err != nil {
		_ = raw.Close()
		var refused *mqtt.RefusedError
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.As(err, &refused):
			return nil, &RefusedError{Code: refused.Code}
		}
		return nil, &DialError{Err: err, Alert: isAlert(err)}
	}
	if err := s.subscribe(ctx); err != nil {
		s.conn.Disconnect()
		return nil, err
	}
	if cfg.Mode == ModeDevice {
		if err := s.publishState(ctx, protocol.Online); err != nil {
			s.conn.Disconnect()
			return nil, err
		}
	}
	s.log.Debug("connected to hub", "mode", cfg.Mode)
	return s, nil
}

// isAlert reports whether err is a TLS alert the peer sent: crypto/tls reports one as a
// *net.OpError whose Op is "remote error" (an alert of our own side is a tls.AlertError).
func isAlert(err error) bool {
	var oe *net.OpError
	var ae tls.AlertError
	return (errors.As(err, &oe) && oe.Op == "remote error") || errors.As(err, &ae)
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

// subscribe makes the subscriptions of the session's mode, QoS 1, in one SUBSCRIBE.
func (s *Session) subscribe(ctx context.Context) error {
	t := s.cfg.Topics
	var subs []mqtt.Subscription
	switch s.cfg.Mode {
	case ModeDevice:
		for _, k := range []protocol.Kind{protocol.KindCert, protocol.KindAck, protocol.KindCmd, protocol.KindRenewal} {
			subs = append(subs, mqtt.Subscription{Filter: t.Device(s.cfg.DeviceID, k), QoS: 1})
		}
		subs = append(subs, mqtt.Subscription{Filter: t.CA(), QoS: 1}, mqtt.Subscription{Filter: t.CRL(), QoS: 1})
	case ModeEnroll:
		subs = append(subs, mqtt.Subscription{Filter: t.Device(s.cfg.DeviceID, protocol.KindCert), QoS: 1})
	case ModeCA:
		subs = append(subs, mqtt.Subscription{Filter: t.CA(), QoS: 1})
	}
	codes, err := wait(ctx, s, func(ctx context.Context) ([]byte, error) { return s.conn.Subscribe(ctx, subs...) })
	if err != nil {
		return fmt.Errorf("hub: subscribe: %w", err)
	}
	for i, code := range codes {
		if code != mqtt.SubackFailure {
			continue
		}
		if topic := subs[i].Filter; (topic == t.CA() || topic == t.CRL()) && s.cfg.Mode == ModeDevice {
			// Only CA rotation and revocation checks need them; the session is useful without.
			s.log.Warn("hub refused the subscription to one of its CA topics", "topic", topic)
			continue
		}
		return fmt.Errorf("%w: %s", ErrSubscribeRefused, subs[i].Filter)
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
func (s *Session) Lost() <-chan struct{} { return s.conn.Done() }

// Err returns why the connection was lost, or nil while it is up.
func (s *Session) Err() error {
	err := s.conn.Err()
	if errors.Is(err, mqtt.ErrClosed) {
		return fmt.Errorf("%w: closed by the agent", ErrConnectionLost)
	}
	return err
}

// Close announces the device offline (ModeDevice), disconnects and waits at most a moment for
// the disconnection to be sent. It is safe to call more than once.
func (s *Session) Close(ctx context.Context) {
	if s.cfg.Mode == ModeDevice && s.conn.Err() == nil {
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
func (s *Session) Drop() { s.conn.Disconnect() }

// wait runs op with a deadline of ConnectTimeout, and reports the loss of the connection as
// ErrConnectionLost (wrapping its cause) and the deadline as no answer from the hub.
func wait[T any](ctx context.Context, s *Session, op func(context.Context) (T, error)) (T, error) {
	octx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	v, err := op(octx)
	switch {
	case err == nil:
		return v, nil
	case ctx.Err() != nil:
		return v, ctx.Err()
	case octx.Err() != nil:
		return v, fmt.Errorf("no answer from the hub within %s", s.cfg.ConnectTimeout)
	case s.conn.Err() != nil:
		return v, s.lostError()
	}
	return v, err
}

func (s *Session) lostError() error {
	if err := s.Err(); err != nil && !errors.Is(err, ErrConnectionLost) {
		return fmt.Errorf("%w: %w", ErrConnectionLost, err)
	}
	return ErrConnectionLost
}

// publish sends a QoS 1 message and waits for the hub's PUBACK.
func (s *Session) publish(ctx context.Context, topic string, retained bool, payload []byte) error {
	_, err := wait(ctx, s, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.conn.Publish(ctx, mqtt.Message{Topic: topic, Payload: payload, QoS: 1, Retained: retained})
	})
	return err
}
