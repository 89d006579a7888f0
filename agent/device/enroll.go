package device

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/clock"
	"github.com/hearth-pki/hearth/agent/internal/hub"
	"github.com/hearth-pki/hearth/agent/internal/keystore"
	"github.com/hearth-pki/hearth/protocol"
)

// Enroll gives the device its first identity (protocol/README.md, "Enrollment"). cfg needs
// Dir, HubURL and DeviceID; token is the one-time enrollment token and caFingerprint the hub
// root's fingerprint as the hub prints it next to the token (read by protocol.ParseFingerprint).
//
// It first learns the hub's CA without trusting anything and without sending the token: the
// root presented in the TLS handshake, or else the retained CA topic read anonymously. If no
// root has the given fingerprint it fails with ErrFingerprintMismatch and writes nothing.
// Then it pins the CA, generates the key on the device, sends the CSR authenticated by
// username = device id and password = token, verifies the reply (chain to the pinned CA, key
// match, identity), installs it, saves the hub settings (config.json), reconnects with mutual
// TLS and commits. An error wrapping ErrNotCommitted means the identity is installed but the
// hub did not acknowledge the commit; Agent.Run sends it again.
func Enroll(ctx context.Context, cfg Config, token, caFingerprint string) error {
	if token == "" {
		return errors.New("device: enroll: empty enrollment token")
	}
	pin, err := protocol.ParseFingerprint(caFingerprint)
	if err != nil {
		return fmt.Errorf("device: %w", err)
	}
	cfg, err = cfg.resolve(false)
	if err != nil {
		return err
	}
	u, _ := hub.ParseURL(cfg.HubURL)
	log := cfg.Logger.With("device", cfg.DeviceID)
	clk := clock.New(cfg.Now, cfg.floor(time.Time{}))

	ca, err := discoverCA(ctx, cfg, u, pin, clk)
	if err != nil {
		return err
	}
	log.Info("hub CA matches the pinned fingerprint", "fingerprint", pin.String(), "root", ca[len(ca)-1].Subject.CommonName)

	ks, release, err := openDir(cfg)
	if err != nil {
		return err
	}
	defer release()
	if err := ks.WriteCA(ca); err != nil {
		return fmt.Errorf("device: enroll: %w", err)
	}
	key, err := keystore.GenerateKey(protocol.KeyAlgorithm(cfg.KeyAlgorithm))
	if err != nil {
		return fmt.Errorf("device: enroll: %w", err)
	}
	csr, err := keystore.NewCSR(key, cfg.DeviceID)
	if err != nil {
		return fmt.Errorf("device: enroll: %w", err)
	}
	reqID := newRequestID()
	sess, err := hub.Dial(ctx, hub.Config{
		URL: cfg.HubURL, DeviceID: cfg.DeviceID, Topics: cfg.Topics, Mode: hub.ModeEnroll,
		Username: cfg.DeviceID, Password: token, Version: cfg.Version,
		TLS:            serverTLS(ca, u.Hostname(), clk, nil, nil),
		ConnectTimeout: cfg.ConnectTimeout, Logger: cfg.Logger,
	})
	if err != nil {
		return fmt.Errorf("device: enroll: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
	reply, err := sess.Request(rctx, &protocol.CSR{
		V: protocol.Version, RequestID: reqID, CSR: string(csr), Reason: protocol.ReasonEnroll, Time: clk.Read().Device,
	})
	cancel()
	sess.Drop()
	if err != nil {
		return fmt.Errorf("device: enroll: %w", noReply(ctx, err))
	}
	clk.Observe(reply.HubTime)
	if reply.Error != nil {
		return fmt.Errorf("device: enroll: %w", hubError(reply.Error))
	}
	chain, err := verifyIssued(reply.Chain, key, cfg.DeviceID, ca, reply.HubTime)
	if err != nil {
		return fmt.Errorf("device: enroll: %w", err)
	}
	if err := ks.Install(key, chain); err != nil && !errors.Is(err, keystore.ErrExport) {
		return fmt.Errorf("device: enroll: %w", err)
	}
	if cfg.Memory == nil {
		if err := saveSettings(cfg.Dir, cfg); err != nil {
			return fmt.Errorf("device: enroll: %w", err)
		}
	}
	st := keystore.State{LastKnownGood: clk.Floor(), Pending: &keystore.Pending{RequestID: reqID}}
	if err := ks.SaveState(st); err != nil {
		return fmt.Errorf("device: enroll: %w", err)
	}
	pair, err := ks.Current()
	if err != nil {
		return fmt.Errorf("device: enroll: %w", err)
	}
	log.Info("certificate installed", "pair", pair)

	tc := pair.TLSCertificate()
	dsess, err := hub.Dial(ctx, hub.Config{
		URL: cfg.HubURL, DeviceID: cfg.DeviceID, Topics: cfg.Topics, Mode: hub.ModeDevice, Version: cfg.Version,
		TLS: serverTLS(ca, u.Hostname(), clk, func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &tc, nil
		}, nil),
		ConnectTimeout: cfg.ConnectTimeout, Logger: cfg.Logger,
	})
	if err != nil {
		return fmt.Errorf("%w: reconnect with the new certificate: %w", ErrNotCommitted, err)
	}
	defer dsess.Close(context.WithoutCancel(ctx))
	actx, cancel := context.WithTimeout(ctx, cfg.AckTimeout)
	defer cancel()
	ack, err := dsess.Commit(actx, &protocol.Commit{
		V: protocol.Version, RequestID: reqID, Serial: pair.Serial(), Outcome: protocol.OutcomeCommitted,
		Time: clk.Read().Device, Attempt: 1,
	})
	if err = checkAck(ctx, ack, err, pair.Serial()); err != nil {
		return err
	}
	clk.Observe(ack.HubTime)
	st = keystore.State{LastKnownGood: clk.Floor(), LastRenewal: clk.Read().Now}
	if err := ks.SaveState(st); err != nil {
		return fmt.Errorf("device: enroll: %w", err)
	}
	log.Info("enrolled", "serial", pair.Serial(), "not_after", pair.Leaf().NotAfter)
	return nil
}

// checkAck turns a commit's outcome into an error wrapping ErrNotCommitted, or nil when the
// hub acknowledged serial.
func checkAck(ctx context.Context, ack *protocol.Ack, err error, serial string) error {
	switch {
	case err != nil:
		return fmt.Errorf("%w: %w", ErrNotCommitted, noReply(ctx, err))
	case ack.Error != nil:
		return fmt.Errorf("%w: %w", ErrNotCommitted, hubError(ack.Error))
	case ack.Serial != serial:
		return fmt.Errorf("%w: the hub acknowledged serial %s, not %s", ErrNotCommitted, ack.Serial, serial)
	}
	return nil
}

// noReply maps a request's deadline to ErrNoReply, keeping other errors (the caller's own
// cancellation, a lost connection) as they are.
func noReply(ctx context.Context, err error) error {
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return fmt.Errorf("%w: %w", ErrNoReply, err)
	}
	return err
}

// hubError converts a protocol error reply.
func hubError(e *protocol.Error) *HubError {
	h := &HubError{Code: string(e.Code), Message: e.Message}
	if after, retry := e.Code.Retry(); retry {
		h.RetryAfter = time.Duration(after) * time.Second
		if e.RetryAfter > 0 {
			h.RetryAfter = time.Duration(e.RetryAfter) * time.Second
		}
	}
	return h
}

// newRequestID returns a fresh random request id (32 hex digits).
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// discoverCA learns the hub's CA chain and checks it against pin, sending no credentials:
// from the TLS handshake if the hub presents its root there, else from the retained CA topic
// read anonymously. It returns the chain to pin (intermediates, then the root) after checking
// that the hub's server certificate verifies against that root for the URL's host name.
func discoverCA(ctx context.Context, cfg Config, u *url.URL, pin protocol.Fingerprint, clk *clock.Clock) ([]*x509.Certificate, error) {
	host := u.Hostname()
	presented, err := presentedChain(ctx, u.Host, host, cfg.ConnectTimeout)
	if err != nil {
		return nil, fmt.Errorf("device: enroll: %w", err)
	}
	var root *x509.Certificate
	var others []string
	candidates := presented
	for _, c := range presented {
		if selfSigned(c) && protocol.FingerprintOf(c) != pin {
			others = append(others, protocol.FingerprintOf(c).String())
		}
	}
	if !hasFingerprint(presented, pin) && len(others) == 0 {
		// The hub did not send its root (servers usually do not): read the CA topic.
		pemChain, err := fetchCATopic(ctx, cfg, u)
		if err != nil {
			return nil, fmt.Errorf("device: enroll: the hub did not present its root CA in the TLS handshake, and reading it from the CA topic failed: %w", err)
		}
		chain, err := parseChain([]byte(pemChain))
		if err != nil {
			return nil, fmt.Errorf("device: enroll: CA topic: %w", err)
		}
		for _, c := range chain {
			if selfSigned(c) && protocol.FingerprintOf(c) != pin {
				others = append(others, protocol.FingerprintOf(c).String())
			}
		}
		candidates = append(candidates, chain...)
	}
	for _, c := range candidates {
		if protocol.FingerprintOf(c) == pin {
			root = c
		}
	}
	if root == nil {
		seen := "no root at all"
		if len(others) > 0 {
			seen = "root " + strings.Join(others, ", ")
		}
		return nil, fmt.Errorf("%w: the hub presents %s, but the pinned fingerprint is %s: check the --ca-fingerprint printed with the enrollment token, or whether something intercepts the connection",
			ErrFingerprintMismatch, seen, pin)
	}
	if !selfSigned(root) || !root.IsCA {
		return nil, fmt.Errorf("%w: the certificate with fingerprint %s (%q) is not a root CA certificate", ErrFingerprintMismatch, pin, root.Subject.CommonName)
	}
	trusted := []*x509.Certificate{root}
	for _, c := range candidates {
		if c.IsCA && !selfSigned(c) {
			trusted = append(trusted, c)
		}
	}
	path, err := verifyChain(presented, trusted, verifyAt(clk.Read(), presented[0]), x509.ExtKeyUsageServerAuth, host)
	if err != nil {
		return nil, fmt.Errorf("device: enroll: the hub's certificate does not verify against the pinned root for %q: %w", host, err)
	}
	return append(path[1:], root), nil
}

func hasFingerprint(chain []*x509.Certificate, pin protocol.Fingerprint) bool {
	for _, c := range chain {
		if protocol.FingerprintOf(c) == pin {
			return true
		}
	}
	return false
}

// presentedChain opens a TLS connection that verifies nothing, only to read the chain the
// server presents, and closes it. Nothing but a ClientHello is sent.
func presentedChain(ctx context.Context, addr, host string, timeout time.Duration) ([]*x509.Certificate, error) {
	d := tls.Dialer{
		NetDialer: &net.Dialer{Timeout: timeout},
		Config: &tls.Config{
			MinVersion:         tls.VersionTLS12,
			ServerName:         host,
			InsecureSkipVerify: true, // the chain is checked against the pinned fingerprint by the caller
		},
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	defer conn.Close()
	chain := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(chain) == 0 {
		return nil, fmt.Errorf("%s presented no certificate", addr)
	}
	return chain, nil
}

// fetchCATopic reads the retained CA topic over an anonymous session that verifies nothing
// and carries no credentials: its content is checked against the pinned fingerprint.
func fetchCATopic(ctx context.Context, cfg Config, u *url.URL) (string, error) {
	sess, err := hub.Dial(ctx, hub.Config{
		URL: cfg.HubURL, DeviceID: cfg.DeviceID, Topics: cfg.Topics, Mode: hub.ModeCA,
		TLS: &tls.Config{
			MinVersion:         tls.VersionTLS12,
			ServerName:         u.Hostname(),
			InsecureSkipVerify: true, // the CA read is checked against the pinned fingerprint
		},
		ConnectTimeout: cfg.ConnectTimeout, Logger: cfg.Logger,
	})
	if err != nil {
		return "", err
	}
	defer sess.Drop()
	timer := time.NewTimer(cfg.ConnectTimeout)
	defer timer.Stop()
	for {
		select {
		case in := <-sess.Inbox():
			if in.CA != "" {
				return in.CA, nil
			}
		case <-sess.Lost():
			return "", sess.Err()
		case <-timer.C:
			return "", fmt.Errorf("no retained message on %s within %s", cfg.Topics.CA(), cfg.ConnectTimeout)
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}
