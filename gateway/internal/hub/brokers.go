package hub

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/hearth-pki/hearth/gateway/internal/broker"
	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/gateway/internal/natsbroker"
)

// mqttBroker is what the hub needs of the MQTT broker agents connect to: the embedded one
// (broker.Broker, the default) or an external NATS cluster (natsbroker.Broker), chosen by
// the broker.mode setting.
type mqttBroker interface {
	Publish(topic string, payload []byte, retain bool) error
	Disconnect(deviceID string) int
	DisconnectAfter(deviceID string, grace time.Duration) int
	Online(deviceID string) bool
	Addr() net.Addr
	Run(ctx context.Context) error
}

// openBroker prepares the broker the configuration names. bc is the embedded broker's
// configuration; the external one takes from it what applies to it (topics, sessions,
// logins, timeouts, the recovery of expired devices).
func (h *Hub) openBroker(bc broker.Config, auth broker.Auth, root *x509.CertPool) (mqttBroker, error) {
	log := h.log.With("part", "broker")
	cfg := h.cfg.Broker
	if cfg.Mode != config.BrokerNATS {
		return broker.New(bc, auth, h.handle, log)
	}
	issuer, err := nkeys.FromSeed([]byte(cfg.IssuerSeed))
	if err != nil {
		return nil, fmt.Errorf("issuer_seed_file: %w", err)
	}
	return natsbroker.New(natsbroker.Config{URLs: cfg.URLs, MQTT: cfg.MQTT, RootCAs: root, ClientCAs: root,
		User: cfg.User, Password: cfg.Password, SystemUser: cfg.SystemUser, SystemPassword: cfg.SystemPassword,
		Issuer: issuer, Account: cfg.Account, Topics: bc.Topics, ConnectTimeout: bc.ConnectTimeout,
		MaxSessionsPerDevice: bc.Limits.MaxSessionsPerDevice, Logins: bc.Logins, Sessions: bc.Sessions,
		AcceptExpired: bc.AcceptExpired, ClientRoots: bc.ClientRoots, Now: bc.Now}, auth, h.handle, log)
}
