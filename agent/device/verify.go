package device

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/clock"
	"github.com/hearth-pki/hearth/protocol"
)

// parseChain parses PEM "CERTIFICATE" blocks, refusing anything else.
func parseChain(data []byte) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(chain), err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("trailing data after the certificates")
	}
	return chain, nil
}

// selfSigned reports whether c is a root: its own issuer, signed by its own key.
func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

// pools splits a pinned CA chain into roots (self-signed) and intermediates.
func pools(ca []*x509.Certificate) (roots, inters *x509.CertPool) {
	roots, inters = x509.NewCertPool(), x509.NewCertPool()
	for _, c := range ca {
		if selfSigned(c) {
			roots.AddCert(c)
		} else {
			inters.AddCert(c)
		}
	}
	return roots, inters
}

// verifyAt returns the time at which to check a certificate's validity given a clock reading:
// the hub's time when seen, else the device's when trusted. When only a lower bound is known,
// it can prove expiry but not "not yet valid", so the time is raised to the leaf's not-before.
func verifyAt(r clock.Reading, leaf *x509.Certificate) time.Time {
	t := r.Best()
	if !r.Known && t.Before(leaf.NotBefore) {
		t = leaf.NotBefore
	}
	return t
}

// verifyChain verifies chain (leaf first) against the pinned CA at time at, for usage, and
// returns the verified path without its root.
func verifyChain(chain, ca []*x509.Certificate, at time.Time, usage x509.ExtKeyUsage, dnsName string) ([]*x509.Certificate, error) {
	roots, inters := pools(ca)
	for _, c := range chain[1:] {
		inters.AddCert(c)
	}
	paths, err := chain[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inters, CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{usage}, DNSName: dnsName,
	})
	if err != nil {
		var he x509.HostnameError
		if errors.As(err, &he) && dnsName != "" {
			return nil, &NameMismatchError{Host: dnsName, Names: certNames(chain[0])}
		}
		return nil, err
	}
	p := paths[0]
	return p[:len(p)-1], nil
}

// NameMismatchError is a hub certificate that does not name the host the agent dialled:
// most often a hub reached by an address or name its broker certificate lacks.
type NameMismatchError struct {
	Host  string   // what the agent dialled, from --hub
	Names []string // the DNS names and IP addresses the certificate holds
}

func (e *NameMismatchError) Error() string {
	return fmt.Sprintf("the hub's certificate is valid for %s, not %q: use one of those in --hub, "+
		"or add %q to the hub's broker certificate (hearth-gateway serve --hostnames %s,%s, or hostnames in its config file) and restart the hub",
		strings.Join(e.Names, ", "), e.Host, e.Host, strings.Join(e.Names, ","), e.Host)
}

// certNames lists the DNS names and IP addresses of c.
func certNames(c *x509.Certificate) []string {
	names := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

// checkIdentity requires leaf to name exactly device id, as the hub's broker reads it:
// CN = id and one URI SAN protocol.DeviceURN(id) (protocol.DeviceIDFromCert).
func checkIdentity(leaf *x509.Certificate, id string) error {
	got, err := protocol.DeviceIDFromCert(leaf)
	if err != nil {
		return err
	}
	if got != id {
		return fmt.Errorf("certificate names device %q, want %q", got, id)
	}
	return nil
}

// verifyIssued checks a chain the hub issued for key and device id against the pinned CA at
// time at. It returns the chain to install (leaf, then intermediates). Every failure wraps
// ErrBadChain.
func verifyIssued(chainPEM string, key crypto.Signer, id string, ca []*x509.Certificate, at time.Time) ([]*x509.Certificate, error) {
	chain, err := parseChain([]byte(chainPEM))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadChain, err)
	}
	leaf := chain[0]
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("%w: the certificate is not for the key this agent generated", ErrBadChain)
	}
	if err := checkIdentity(leaf, id); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadChain, err)
	}
	path, err := verifyChain(chain, ca, at, x509.ExtKeyUsageClientAuth, "")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadChain, err)
	}
	return path, nil
}

// serverTLS returns the TLS configuration that authenticates the hub by the pinned CA:
// host must be among the server certificate's names, and validity is checked at the time the
// clock trusts (see verifyAt), which is why Go's own verification is replaced.
// getCert, if not nil, supplies the client certificate at each handshake; revoked, if not
// nil, refuses a hub whose verified chain (leaf first, without its root) the hub's CRLs
// list.
func serverTLS(ca []*x509.Certificate, host string, clk *clock.Clock, getCert func(*tls.CertificateRequestInfo) (*tls.Certificate, error),
	revoked func(path []*x509.Certificate) error) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		ServerName:           host,
		InsecureSkipVerify:   true, // replaced by VerifyConnection below, never skipped
		GetClientCertificate: getCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("hub presented no certificate")
			}
			at := verifyAt(clk.Read(), cs.PeerCertificates[0])
			path, err := verifyChain(cs.PeerCertificates, ca, at, x509.ExtKeyUsageServerAuth, host)
			if err != nil {
				return fmt.Errorf("hub certificate: %w", err)
			}
			if revoked != nil {
				return revoked(path)
			}
			return nil
		},
	}
}
