package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Recovery after expiry (issue 12, item 7). A device whose certificate expired while it
// could not reach the hub still holds its key, and the hub still knows the certificate: with
// Config.AcceptExpired, the TLS listener accepts a client certificate that chains to the hub
// CA and was valid at its own not-after (so it is the hub's, and only time has passed), and
// the session gets the recovery grant: it reads what a device session reads (its cert topic
// for the answer among them) and publishes nothing but its CSR (the issuer accepts only reason
// recovery, replacing the certificate the session presents, and the policy's grace decides:
// within it a new certificate, past it the code expired, which tells the agent to enroll
// again; single flight holds it to one request). No commit, health or state; the session is
// not the device being online, and its Will is not retained. Auth still refuses revoked,
// superseded and quarantined certificates as for any device.

// verifyClient returns the VerifyConnection of a listener that accepts expired client
// certificates: a presented chain must verify against the roots for client authentication at
// now, or, for a certificate past its not-after, at its not-after.
func verifyClient(roots func() *x509.CertPool, now func() time.Time) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil // no certificate: a token or password login
		}
		leaf := cs.PeerCertificates[0]
		inters := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inters.AddCert(c)
		}
		at := now()
		if at.After(leaf.NotAfter) {
			at = leaf.NotAfter
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots(), Intermediates: inters, CurrentTime: at,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			return fmt.Errorf("client certificate: %w", err)
		}
		return nil
	}
}

// acceptExpired adapts the listener's TLS configuration c to Config.AcceptExpired: crypto/tls
// would refuse an expired certificate itself, so it only requests one and verifyClient
// verifies it, against roots() when roots is set, else TLS.ClientCAs.
func acceptExpired(c *tls.Config, now func() time.Time, roots func() *x509.CertPool) (*tls.Config, error) {
	if c.VerifyConnection != nil || c.VerifyPeerCertificate != nil {
		return nil, errors.Join(ErrConfig, errors.New("AcceptExpired replaces TLS.VerifyConnection; leave it unset"))
	}
	if c.ClientAuth == tls.RequireAndVerifyClientCert {
		c.ClientAuth = tls.RequireAnyClientCert
	} else {
		c.ClientAuth = tls.RequestClientCert
	}
	if roots == nil {
		pool := c.ClientCAs
		roots = func() *x509.CertPool { return pool }
	}
	c.VerifyConnection = verifyClient(roots, now)
	return c, nil
}

// peerLeaf returns the client certificate of a finished handshake: the verified chain's
// leaf, or with AcceptExpired (chains verified by verifyClient) the presented leaf.
func peerLeaf(cs tls.ConnectionState, acceptExpired bool) *x509.Certificate {
	if len(cs.VerifiedChains) > 0 && len(cs.VerifiedChains[0]) > 0 {
		return cs.VerifiedChains[0][0]
	}
	if acceptExpired && len(cs.PeerCertificates) > 0 {
		return cs.PeerCertificates[0]
	}
	return nil
}
