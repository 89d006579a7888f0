package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/hearth-pki/hearth/protocol"
)

// Defaults for the zero values of Config.
const (
	DefaultAddr           = ":8883"
	DefaultMaxPacketSize  = 256 << 10
	DefaultConnectTimeout = 10 * time.Second
	DefaultPublishRate    = 20 // messages per second per client
	DefaultPublishBurst   = 50
)

// mochi settings that are not configuration.
const (
	clientWritesPending = 64        // queued outbound packets per client (mochi default 8192)
	clientBufferSize    = 1 << 10   // read buffer (pooled, held only while bytes are pending) and write buffer per client (mochi default 2 KiB)
	maxInflight         = 256       // stored QoS 1/2 messages per client (mochi default 8192)
	receiveMaximum      = 64        // concurrent inbound QoS 2 flows per client (mochi default 1024)
	sessionExpiry       = 24 * 3600 // seconds a persistent session outlives its connection (mochi: forever)
	sysTopicInterval    = 24 * 3600 // seconds between $SYS updates, which nobody may read anyway
)

// Config configures a Broker. Its zero values mean the defaults above.
type Config struct {
	// Addr is the TLS listener's address, default ":8883".
	Addr string
	// TLS holds the server certificate and ClientCAs, the hub CA that client certificates
	// must chain to. ClientAuth must be tls.VerifyClientCertIfGiven (set when zero) or
	// tls.RequireAndVerifyClientCert; MinVersion is raised to TLS 1.2.
	TLS *tls.Config
	// PlainAddr, if set, adds a plaintext listener for admins and enrolling agents on the
	// hub itself; it must be a loopback address.
	PlainAddr string
	// Topics builds and parses topic names; the zero value uses the default prefix.
	Topics protocol.Topics
	// MaxPacketSize is the largest MQTT packet accepted, default 256 KiB.
	MaxPacketSize uint32
	// ConnectTimeout bounds the TLS handshake plus the CONNECT packet, and each Auth call;
	// default 10 s.
	ConnectTimeout time.Duration
	// PublishRate and PublishBurst limit each client's publishes (token bucket): default 20
	// per second with bursts of 50. Publishes over the limit are acknowledged and dropped.
	PublishRate  float64
	PublishBurst int
	// Limits caps connections per source and in total, and sessions per device; zero values
	// mean the defaults (DefaultMaxPending…).
	Limits Limits
	// Logins, if set, is told of every enrollment login, accepted or refused with a reason
	// (Refusal). It is called on the client's connect path: it must return fast.
	Logins func(Login)
	// Sessions, if set, is told of every device session (RoleDevice), in order; not of
	// recovery sessions (Identity.Expired).
	Sessions Sessions
	// AcceptExpired lets a device whose certificate expired (and chains to the hub CA)
	// connect for a recovery session: see recovery.go.
	AcceptExpired bool
	// ClientRoots, if set with AcceptExpired, returns the hub CA's roots at each handshake in
	// place of TLS.ClientCAs: a root rotation trusts two roots for a while (issue 12). The pool
	// it returns must not be modified.
	ClientRoots func() *x509.CertPool
	// Now returns the current time, for the rate limiter; default time.Now.
	Now func() time.Time
}

// Broker is the hub's MQTT broker. Create it with New, serve with Run.
type Broker struct {
	cfg     Config
	auth    Auth
	handle  Handler
	log     *slog.Logger
	srv     *mqtt.Server
	tlsLn   *listener
	plainLn *listener // nil without PlainAddr
	reg     *registry
	adm     *admission
	conns   atomic.Uint64   // connections accepted: the last Identity.Conn
	ctx     context.Context // Run's context, for Auth and Handler calls
	running atomic.Bool
}

// New checks cfg, binds the listeners (so Addr is known at once) and prepares the broker.
// It starts no goroutine; Run serves, and closes the listeners when it returns.
func New(cfg Config, auth Auth, handle Handler, logger *slog.Logger) (*Broker, error) {
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
	b := &Broker{cfg: cfg, auth: auth, handle: handle, log: logger, ctx: context.Background(),
		reg: newRegistry(cfg.Sessions, cfg.Limits.MaxSessionsPerDevice), adm: newAdmission(cfg.Limits)}

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = cfg.MaxPacketSize
	caps.MaximumMessageExpiryInterval = 0 // retained state (CA, CRL, renewal, device state) never expires
	caps.MaximumClientWritesPending = clientWritesPending
	caps.MaximumInflight = maxInflight
	caps.ReceiveMaximum = receiveMaximum
	caps.MaximumSessionExpiryInterval = sessionExpiry
	caps.TopicAliasMaximum = 0
	caps.SharedSubAvailable = 0
	b.srv = mqtt.New(&mqtt.Options{
		Capabilities:             caps,
		ClientNetReadBufferSize:  clientBufferSize,
		ClientNetWriteBufferSize: clientBufferSize,
		SysTopicResendInterval:   sysTopicInterval,
		InlineClient:             true,
		Logger:                   slog.New(redactPackets{logger.Handler()}).With("component", "mochi"),
	})
	if err := b.srv.AddHook(&hook{b: b}, nil); err != nil {
		return nil, fmt.Errorf("broker: add hook: %w", err)
	}

	b.tlsLn, err = b.listen("tls", cfg.Addr, cfg.TLS)
	if err != nil {
		return nil, err
	}
	if cfg.PlainAddr != "" {
		b.plainLn, err = b.listen("plain", cfg.PlainAddr, nil)
		if err == nil && !isLoopback(b.plainLn.ln.Addr()) {
			_ = b.plainLn.ln.Close()
			err = fmt.Errorf("%w: PlainAddr %q is bound to %s, not a loopback address", ErrConfig, cfg.PlainAddr, b.plainLn.ln.Addr())
		}
		if err != nil {
			_ = b.tlsLn.ln.Close()
			return nil, err
		}
	}
	return b, nil
}

// withDefaults fills in cfg's zero values and checks it.
func withDefaults(cfg Config) (Config, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.MaxPacketSize == 0 {
		cfg.MaxPacketSize = DefaultMaxPacketSize
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.PublishRate == 0 {
		cfg.PublishRate = DefaultPublishRate
	}
	if cfg.PublishBurst == 0 {
		cfg.PublishBurst = DefaultPublishBurst
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	lim, err := cfg.Limits.withDefaults()
	if err != nil {
		return cfg, err
	}
	cfg.Limits = lim
	switch {
	case cfg.ConnectTimeout < 0 || cfg.PublishRate < 0 || cfg.PublishBurst < 0:
		return cfg, fmt.Errorf("%w: negative ConnectTimeout, PublishRate or PublishBurst", ErrConfig)
	case cfg.MaxPacketSize < protocol.MaxMessageSize:
		return cfg, fmt.Errorf("%w: MaxPacketSize %d is below the protocol's message size %d", ErrConfig, cfg.MaxPacketSize, protocol.MaxMessageSize)
	}
	if cfg.PlainAddr != "" {
		host, _, err := net.SplitHostPort(cfg.PlainAddr)
		if err != nil {
			return cfg, fmt.Errorf("%w: PlainAddr: %w", ErrConfig, err)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return cfg, fmt.Errorf("%w: PlainAddr %q is not a loopback address", ErrConfig, cfg.PlainAddr)
		}
	}
	t, err := serverTLS(cfg.TLS)
	if err != nil {
		return cfg, err
	}
	if cfg.AcceptExpired {
		if t, err = acceptExpired(t, cfg.Now, cfg.ClientRoots); err != nil {
			return cfg, err
		}
	}
	cfg.TLS = t
	return cfg, nil
}

// serverTLS returns a copy of c fit for the listener.
func serverTLS(c *tls.Config) (*tls.Config, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: TLS is required", ErrConfig)
	}
	c = c.Clone()
	switch c.ClientAuth {
	case tls.NoClientCert:
		c.ClientAuth = tls.VerifyClientCertIfGiven
	case tls.VerifyClientCertIfGiven, tls.RequireAndVerifyClientCert:
	default:
		return nil, fmt.Errorf("%w: TLS.ClientAuth %v does not verify client certificates", ErrConfig, c.ClientAuth)
	}
	if c.ClientCAs == nil {
		// Without it crypto/tls would verify client certificates against the system roots.
		return nil, fmt.Errorf("%w: TLS.ClientCAs (the hub CA) is required", ErrConfig)
	}
	if c.GetConfigForClient != nil {
		return nil, fmt.Errorf("%w: TLS.GetConfigForClient could bypass the client certificate policy", ErrConfig)
	}
	if len(c.Certificates) == 0 && c.GetCertificate == nil {
		return nil, fmt.Errorf("%w: TLS has no server certificate", ErrConfig)
	}
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	return c, nil
}

func isLoopback(a net.Addr) bool {
	t, ok := a.(*net.TCPAddr)
	return ok && t.IP.IsLoopback()
}

// listen binds addr and returns a listener registered with mochi.
func (b *Broker) listen(id, addr string, tc *tls.Config) (*listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("broker: listen %s: %w", addr, err)
	}
	l := &listener{id: id, ln: ln, tls: tc, acceptExpired: b.cfg.AcceptExpired, timeout: b.cfg.ConnectTimeout, log: b.log,
		onClose: b.reg.closed, ids: &b.conns, adm: b.adm, limit: b.packetLimit, done: make(chan struct{}), conns: map[*conn]struct{}{}}
	if err := b.srv.AddListener(l); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("broker: add listener %s: %w", id, err)
	}
	return l, nil
}

// packetLimit returns the largest remaining length c's next packet may claim: its CONNECT
// is small (MaxConnectCertificate, MaxConnectPassword), and afterwards a device or enrolling
// session sends messages of at most protocol.MaxMessageSize; an admin may send up to
// MaxPacketSize.
func (b *Broker) packetLimit(c *conn) int {
	if c.packets == 0 {
		if c.leaf != nil {
			return MaxConnectCertificate
		}
		return MaxConnectPassword
	}
	if g := c.grant.Load(); g != nil && g.id.Role == RoleAdmin {
		return int(b.cfg.MaxPacketSize)
	}
	return min(int(b.cfg.MaxPacketSize), protocol.MaxMessageSize+packetOverhead)
}

// Addr returns the TLS listener's bound address.
func (b *Broker) Addr() net.Addr { return b.tlsLn.ln.Addr() }

// PlainAddr returns the plaintext listener's bound address, or nil without one.
func (b *Broker) PlainAddr() net.Addr {
	if b.plainLn == nil {
		return nil
	}
	return b.plainLn.ln.Addr()
}

// Run serves until ctx ends, then closes the listeners and every client connection and
// returns nil once they are all gone. Auth and Handler calls get ctx (with a deadline).
func (b *Broker) Run(ctx context.Context) error {
	if !b.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	b.ctx = ctx
	err := b.srv.Serve()
	if err == nil {
		<-ctx.Done()
	}
	_ = b.srv.Close() // closes the listeners and clients and waits for mochi's client loops
	b.tlsLn.wait()
	if b.plainLn != nil {
		b.plainLn.wait()
	}
	if err != nil {
		return fmt.Errorf("broker: serve: %w", err)
	}
	return nil
}

// Publish publishes payload on topic at QoS 1 as the hub (mochi's inline client, which no
// ACL restricts), retained if retain is set. Retained messages never expire.
func (b *Broker) Publish(topic string, payload []byte, retain bool) error {
	if err := b.srv.Publish(topic, payload, retain, 1); err != nil {
		return fmt.Errorf("broker: publish %q: %w", topic, err)
	}
	return nil
}

// Disconnect closes at once every open session of deviceID, device or enrolling, including
// one still in its CONNECT, and returns how many it closed. Use it after a revocation or
// quarantine: Auth must already refuse the device, or it simply reconnects.
func (b *Broker) Disconnect(deviceID string) int {
	sessions := b.reg.sessions(deviceID)
	for _, c := range sessions {
		_ = c.Close()
	}
	if len(sessions) > 0 {
		b.log.Info("mqtt device disconnected", "device", deviceID, "sessions", len(sessions))
	}
	return len(sessions)
}

// DisconnectAfter is Disconnect with a grace: it returns at once how many sessions of
// deviceID are open, and closes them when grace has passed, so that what the hub published
// to them just before (the CRL that revokes them) reaches them first. Auth must already
// refuse the device.
func (b *Broker) DisconnectAfter(deviceID string, grace time.Duration) int {
	if grace <= 0 {
		return b.Disconnect(deviceID)
	}
	sessions := b.reg.sessions(deviceID)
	if len(sessions) > 0 {
		time.AfterFunc(grace, func() {
			for _, c := range sessions {
				_ = c.Close()
			}
			b.log.Info("mqtt device disconnected", "device", deviceID, "sessions", len(sessions), "grace", grace)
		})
	}
	return len(sessions)
}

// Online reports whether deviceID has an authenticated device (certificate) session.
func (b *Broker) Online(deviceID string) bool { return b.reg.Online(deviceID) }
