package config

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// Broker modes.
const (
	// BrokerEmbedded is the hub's own MQTT broker (internal/broker), the default.
	BrokerEmbedded = "embedded"
	// BrokerNATS is an external NATS cluster with MQTT enabled (internal/natsbroker,
	// gateway/README.md, "External clustered broker").
	BrokerNATS = "nats"
)

// Broker chooses the MQTT broker agents connect to. The zero value is the embedded broker;
// every other field is for mode nats.
type Broker struct {
	// Mode is embedded (default) or nats.
	Mode string `yaml:"mode"`
	// URLs are the cluster's NATS client URLs, e.g. nats://nats-1:4222.
	URLs []string `yaml:"urls"`
	// MQTT are the nodes' MQTT-over-TLS listeners as host:port; the hub publishes through
	// them. Their certificates must be issued by the hub's CA (agents pin it).
	MQTT []string `yaml:"mqtt"`
	// User is the hub's NATS user, listed in the server's auth_callout.auth_users.
	User string `yaml:"user"`
	// PasswordFile holds User's password (first line).
	PasswordFile string `yaml:"password_file"`
	// SystemUser is a user of the NATS system account (presence events, kicks).
	SystemUser string `yaml:"system_user"`
	// SystemPasswordFile holds SystemUser's password (first line).
	SystemPasswordFile string `yaml:"system_password_file"`
	// IssuerSeedFile holds the account nkey seed (SA…) whose public key is the server's
	// auth_callout.issuer: the hub signs its answers with it.
	IssuerSeedFile string `yaml:"issuer_seed_file"`
	// Account is the NATS account the sessions and the hub are in. Default HEARTH.
	Account string `yaml:"account"`

	// Password, SystemPassword and IssuerSeed are read from the files above by Load.
	Password       string `yaml:"-"`
	SystemPassword string `yaml:"-"`
	IssuerSeed     string `yaml:"-"`
}

// finish fills the broker's defaults, reads its secret files and returns what is wrong.
func (b *Broker) finish() []error {
	b.Mode = orDefault(b.Mode, BrokerEmbedded)
	switch b.Mode {
	case BrokerEmbedded:
		if len(b.URLs) > 0 || len(b.MQTT) > 0 {
			return []error{fmt.Errorf("urls and mqtt are for mode nats, not %s", b.Mode)}
		}
		return nil
	case BrokerNATS:
	default:
		return []error{fmt.Errorf("mode %q is not embedded or nats", b.Mode)}
	}
	b.Account = orDefault(b.Account, "HEARTH")
	var errs []error
	if len(b.URLs) == 0 {
		errs = append(errs, fmt.Errorf("urls: mode nats needs the cluster's NATS URLs"))
	}
	if len(b.MQTT) == 0 {
		errs = append(errs, fmt.Errorf("mqtt: mode nats needs the nodes' MQTT listeners (host:port)"))
	}
	for _, a := range b.MQTT {
		if _, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("mqtt: %q is not host:port", a))
		}
	}
	if b.User == "" || b.SystemUser == "" {
		errs = append(errs, fmt.Errorf("user and system_user are required in mode nats"))
	}
	read := func(field, path string, dst *string) {
		if path == "" {
			errs = append(errs, fmt.Errorf("%s is required in mode nats", field))
			return
		}
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
			return
		}
		line, _, _ := strings.Cut(string(data), "\n")
		if *dst = strings.TrimSpace(line); *dst == "" {
			errs = append(errs, fmt.Errorf("%s: %s is empty", field, path))
		}
	}
	read("password_file", b.PasswordFile, &b.Password)
	read("system_password_file", b.SystemPasswordFile, &b.SystemPassword)
	read("issuer_seed_file", b.IssuerSeedFile, &b.IssuerSeed)
	return errs
}
