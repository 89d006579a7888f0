package natsbroker

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/hearth-pki/hearth/gateway/internal/broker"
	"github.com/hearth-pki/hearth/protocol"
)

// Defaults for the zero values of Config.
const (
	DefaultAccount        = "HEARTH"
	DefaultQueue          = "hearth"
	DefaultConnectTimeout = 10 * time.Second
	// DefaultMaxSessionsPerDevice is the sessions one device may hold; a new one kicks the
	// oldest, as on the embedded broker.
	DefaultMaxSessionsPerDevice = broker.DefaultMaxSessionsPerDevice
)

// ErrConfig is wrapped by every error New returns for a bad Config.
var ErrConfig = errors.New("natsbroker: invalid config")

// Config configures a Broker. Its zero values mean the defaults above.
type Config struct {
	// URLs are the cluster's NATS client URLs (nats://host:4222 or tls://host:4222): the hub
	// answers the auth callout, receives requests and presence events there.
	URLs []string
	// MQTT are the nodes' MQTT listeners as host:port, where the hub publishes as an MQTT
	// client (retained messages are MQTT's). Their certificates must chain to RootCAs.
	MQTT []string
	// RootCAs verifies the nodes' MQTT certificates: the hub's root, since agents pin it.
	RootCAs *x509.CertPool
	// ClientCAs holds the hub's root, which device certificates must chain to.
	ClientCAs *x509.CertPool
	// ClientRoots, if set, returns the hub CA's roots at each auth callout in place of
	// ClientCAs: a root rotation trusts two roots for a while, then the new one alone (issue
	// 12), as the embedded broker's broker.Config.ClientRoots. The pool it returns must not
	// be modified.
	ClientRoots func() *x509.CertPool
	// User and Password are the hub's login, a user of Account listed in the server's
	// auth_callout.auth_users (it bypasses the callout).
	User, Password string
	// SystemUser and SystemPassword log in to the system account, for the connect and
	// disconnect events and to kick sessions.
	SystemUser, SystemPassword string
	// Issuer signs the callout's answers: an account nkey whose public key is the server's
	// auth_callout.issuer.
	Issuer nkeys.KeyPair
	// Account is the account sessions are placed in (the hub's too), default "HEARTH".
	Account string
	// Queue is the queue group the replicas share, default "hearth".
	Queue string
	// Topics builds and parses topic names; the zero value uses the default prefix.
	Topics protocol.Topics
	// ConnectTimeout bounds each Auth call and a refused session's life; default 10 s.
	ConnectTimeout time.Duration
	// MaxSessionsPerDevice: a device's sessions beyond it are kicked, oldest first.
	MaxSessionsPerDevice int
	// Logins, if set, is told of every enrollment login, accepted or refused.
	Logins func(broker.Login)
	// Sessions, if set, is told of every device session, in order; not of recovery sessions.
	Sessions broker.Sessions
	// AcceptExpired lets a device whose certificate expired connect for a recovery session.
	AcceptExpired bool
	// Now returns the current time; default time.Now.
	Now func() time.Time
}

func withDefaults(cfg Config) (Config, error) {
	if cfg.Account == "" {
		cfg.Account = DefaultAccount
	}
	if cfg.Queue == "" {
		cfg.Queue = DefaultQueue
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.MaxSessionsPerDevice == 0 {
		cfg.MaxSessionsPerDevice = DefaultMaxSessionsPerDevice
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	switch {
	case len(cfg.URLs) == 0:
		return cfg, fmt.Errorf("%w: no NATS URLs", ErrConfig)
	case len(cfg.MQTT) == 0:
		return cfg, fmt.Errorf("%w: no MQTT listeners", ErrConfig)
	case cfg.RootCAs == nil || (cfg.ClientCAs == nil && cfg.ClientRoots == nil):
		return cfg, fmt.Errorf("%w: RootCAs and ClientCAs or ClientRoots (the hub's root) are required", ErrConfig)
	case cfg.User == "" || cfg.SystemUser == "":
		return cfg, fmt.Errorf("%w: the hub's user and the system account's user are required", ErrConfig)
	case cfg.Issuer == nil:
		return cfg, fmt.Errorf("%w: the callout issuer's key is required", ErrConfig)
	case cfg.ConnectTimeout < 0 || cfg.MaxSessionsPerDevice < 0:
		return cfg, fmt.Errorf("%w: negative ConnectTimeout or MaxSessionsPerDevice", ErrConfig)
	}
	if pub, err := cfg.Issuer.PublicKey(); err != nil || !nkeys.IsValidPublicAccountKey(pub) {
		return cfg, fmt.Errorf("%w: the callout issuer must be an account nkey", ErrConfig)
	}
	for _, a := range cfg.MQTT {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return cfg, fmt.Errorf("%w: MQTT listener %q: %w", ErrConfig, a, err)
		}
	}
	return cfg, nil
}
