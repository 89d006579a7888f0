package natsbroker

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/hearth-pki/hearth/gateway/internal/broker"
	"github.com/hearth-pki/hearth/protocol"
)

// mqttInternal is the subject space NATS delivers an MQTT client's QoS 1 subscriptions and
// retained messages on: every MQTT session needs to subscribe to it. An MQTT client cannot
// name it in a SUBSCRIBE (the server refuses filters under $MQTT/).
const mqttInternal = "$MQTT.sub.>"

// decision is the callout's answer for one CONNECT: who the session is and what it may do.
type decision struct {
	s       session
	pub     []string      // NATS subjects the session may publish to
	sub     []string      // NATS subjects the session may subscribe to
	expires time.Duration // a refused session lasts this long; 0: as long as it stays
}

// authorize decides the CONNECT req describes, as the embedded broker's authenticate does:
// a client certificate that chains to the hub's root makes a device session, else a user
// name and password make an admin or an enrolling session. conn numbers the session.
func (b *Broker) authorize(ctx context.Context, req *jwt.AuthorizationRequest, conn uint64) (decision, error) {
	opts, info := req.ConnectOptions, req.ClientInformation
	id := broker.Identity{Username: opts.Username, Remote: info.Host, Conn: conn}
	ctx = broker.WithSource(ctx, source(info.Host))
	if info.Type != "mqtt" {
		return decision{}, fmt.Errorf("%w: a %s client (only MQTT clients log in through the callout)", broker.ErrRefused, info.Type)
	}
	leaf, err := b.verifyChain(req.TLS)
	if err != nil {
		return decision{}, err
	}
	switch {
	case leaf != nil:
		dev, err := protocol.DeviceIDFromCert(leaf)
		if err != nil {
			return decision{}, fmt.Errorf("%w: %w", broker.ErrRefused, err)
		}
		if opts.Username != "" && opts.Username != dev {
			return decision{}, fmt.Errorf("%w: username %q differs from the certificate's device %q", broker.ErrRefused, opts.Username, dev)
		}
		id.Role, id.DeviceID, id.Serial = broker.RoleDevice, dev, leaf.SerialNumber.Text(16)
		id.Expired = b.cfg.Now().After(leaf.NotAfter)
	case opts.Username == "" || opts.Password == "":
		return decision{}, fmt.Errorf("%w: no client certificate and no username and password", broker.ErrRefused)
	case b.auth.Admin(ctx, opts.Username, opts.Password):
		id.Role = broker.RoleAdmin
	default:
		if err := protocol.ValidateDeviceID(opts.Username); err != nil {
			return decision{}, fmt.Errorf("%w: username is neither an admin nor a device id: %w", broker.ErrRefused, err)
		}
		id.Role, id.DeviceID = broker.RoleEnrolling, opts.Username
	}
	if err := checkClientID(id, info.MQTT); err != nil {
		return decision{}, err
	}
	switch id.Role {
	case broker.RoleAdmin:
		return b.grant(session{id: id}), nil
	case broker.RoleDevice:
		if err := b.auth.Certificate(ctx, id.DeviceID, id.Serial); err != nil {
			return decision{}, fmt.Errorf("%w: device %q: %w", broker.ErrRefused, id.DeviceID, err)
		}
		return b.grant(session{id: id}), nil
	}
	err = b.auth.Token(ctx, id.DeviceID, opts.Password)
	var refusal broker.Refusal
	if err != nil && errors.As(err, &refusal) {
		code, retry := refusal.Reason()
		id.Role = broker.RoleRefused
		if b.cfg.Logins != nil {
			b.cfg.Logins(broker.Login{DeviceID: id.DeviceID, Source: source(info.Host), Refused: code, Err: err})
		}
		d := b.grant(session{id: id, refusal: code, retry: retry})
		d.expires = b.cfg.ConnectTimeout
		return d, nil
	}
	if err != nil {
		return decision{}, fmt.Errorf("%w: enrolling %q: %w", broker.ErrRefused, id.DeviceID, err)
	}
	if b.cfg.Logins != nil {
		b.cfg.Logins(broker.Login{DeviceID: id.DeviceID, Source: source(info.Host)})
	}
	return b.grant(session{id: id}), nil
}

// grant returns the permissions of s in NATS subjects: the embedded broker's ACL
// (internal/broker/acl.go), exact topics for devices and enrolling sessions.
func (b *Broker) grant(s session) decision {
	t, id := b.cfg.Topics, s.id
	d := decision{s: s, sub: []string{mqttInternal}}
	dev := func(kinds ...protocol.Kind) []string {
		var out []string
		for _, k := range kinds {
			out = append(out, subject(t.Device(id.DeviceID, k)))
		}
		return out
	}
	switch id.Role {
	case broker.RoleDevice:
		d.sub = append(d.sub, dev(protocol.KindCert, protocol.KindAck, protocol.KindCmd, protocol.KindRenewal)...)
		d.sub = append(d.sub, subject(t.CA()), subject(t.CRL()))
		d.pub = dev(protocol.KindCSR)
		if !id.Expired { // a recovery session sends one CSR and reads its answer
			d.pub = dev(protocol.KindCSR, protocol.KindCommit, protocol.KindHealth, protocol.KindState)
		}
	case broker.RoleEnrolling, broker.RoleRefused:
		d.sub = append(d.sub, dev(protocol.KindCert)[0], subject(t.CA()))
		d.pub = dev(protocol.KindCSR)
	case broker.RoleAdmin:
		d.sub = append(d.sub, subject(t.Prefix())+".>")
		d.pub = []string{subject(t.BridgeRequest("")) + ">"}
	}
	return d
}

// verifyChain checks the certificates the client presented (hearth-nats asks for them and
// verifies none) against the hub's roots as they are now (ClientRoots), and returns the leaf; nil when the client
// presented none. An expired leaf passes with Config.AcceptExpired (a recovery session).
func (b *Broker) verifyChain(t *jwt.ClientTLS) (*x509.Certificate, error) {
	if t == nil {
		return nil, nil
	}
	pems := []string(t.Certs)
	if len(pems) == 0 && len(t.VerifiedChains) > 0 {
		pems = t.VerifiedChains[0] // a node with tls.verify: the chain it verified, leaf first
	}
	if len(pems) == 0 {
		return nil, nil
	}
	var certs []*x509.Certificate
	for _, p := range pems {
		blk, _ := pem.Decode([]byte(p))
		if blk == nil || blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%w: the callout's client certificate is not PEM", broker.ErrRefused)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: client certificate: %w", broker.ErrRefused, err)
		}
		certs = append(certs, c)
	}
	leaf := certs[0]
	if leaf.IsCA {
		return nil, fmt.Errorf("%w: client certificate %q is a CA's", broker.ErrRefused, leaf.Subject)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	now := b.cfg.Now()
	at := now
	if b.cfg.AcceptExpired && now.After(leaf.NotAfter) {
		at = leaf.NotAfter // verify as of its last valid second; the hub decides what it may do
	}
	roots := b.cfg.ClientCAs
	if b.cfg.ClientRoots != nil {
		roots = b.cfg.ClientRoots()
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("%w: client certificate: %w", broker.ErrRefused, err)
	}
	return leaf, nil
}

// checkClientID refuses MQTT client ids that are not the device's (internal/broker/acl.go):
// a device or enrolling session uses its device id or "<device id>:<anything>". NATS hands
// a session to whoever reuses its client id, as mochi does.
func checkClientID(id broker.Identity, clientID string) error {
	if id.Role == broker.RoleAdmin {
		return nil
	}
	if clientID == id.DeviceID || strings.HasPrefix(clientID, id.DeviceID+":") {
		return nil
	}
	return fmt.Errorf("%w: client id %q does not belong to device %q (use %q or %q)",
		broker.ErrRefused, clientID, id.DeviceID, id.DeviceID, id.DeviceID+":<suffix>")
}

// source returns the lockout key of a client address: an IPv4 address, or an IPv6 /64.
func source(host string) string {
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	return (&net.IPNet{IP: ip.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
}
