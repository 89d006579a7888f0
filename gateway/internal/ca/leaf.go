package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

// Errors SignLeaf returns for a CSR it refuses; each is wrapped with detail.
var (
	// ErrBadSignature means the CSR's self-signature does not verify, so it
	// proves no possession of the key.
	ErrBadSignature = errors.New("ca: bad CSR signature")
	// ErrWeakKey means the CSR's key is of a supported kind but too weak:
	// RSA under 2048 bits or ECDSA P-224.
	ErrWeakKey = errors.New("ca: weak key")
	// ErrUnsupportedKey means the CSR's key is of a kind the CA does not
	// sign: anything but ECDSA P-256/P-384, Ed25519 and RSA 2048-8192.
	ErrUnsupportedKey = errors.New("ca: unsupported key")
	// ErrBadDeviceID means the device id breaks protocol.ValidateDeviceID, the
	// one device id rule the broker and the agent apply too.
	ErrBadDeviceID = errors.New("ca: bad device id")
)

const (
	// ServerLifetime is the lifetime of ServerCertificate's certificates.
	ServerLifetime = 365 * 24 * time.Hour
	// serverBackdate moves a server certificate's not-before back for clock skew.
	serverBackdate = time.Minute

	minRSABits = 2048
	// maxRSABits bounds verification cost; crypto/x509 rejects larger keys too.
	maxRSABits = 8192
)

// ErrBadProfile means SignLeaf was given a profile with no validity: not-before unset, or
// not-after not after it. A profile comes from policy.Policy.Admit, which always sets both.
var ErrBadProfile = errors.New("ca: profile has no validity")

// SignLeaf issues a device certificate for csr under p, the profile policy admitted it
// with (policy.Policy.Admit). It first checks the CSR's signature (ErrBadSignature) and key
// (ErrWeakKey, ErrUnsupportedKey), the device id (ErrBadDeviceID) and the profile's
// validity (ErrBadProfile). The certificate takes only the public key from the CSR, plus
// the DNS names p allows: CN = deviceID, URI SAN protocol.DeviceURN(deviceID), CA:FALSE,
// keyUsage digitalSignature (and keyEncipherment for RSA), extKeyUsage clientAuth (and
// serverAuth if p says so), AKI of the intermediate, SKI of the key, a random 128-bit
// serial, the CRL distribution points p names (the policy's crl_url), and exactly p's
// NotBefore and NotAfter (UTC, truncated to the second): the
// policy's backdate, 0 included, is already in NotBefore. NotAfter never passes the
// intermediate's.
func (c *CA) SignLeaf(csr *x509.CertificateRequest, deviceID string, p policy.Profile) (*x509.Certificate, error) {
	if csr == nil {
		return nil, fmt.Errorf("%w: no CSR", ErrBadSignature)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if err := CheckKey(csr.PublicKey); err != nil {
		return nil, err
	}
	if err := protocol.ValidateDeviceID(deviceID); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadDeviceID, err)
	}
	notBefore, notAfter := p.NotBefore.UTC().Truncate(time.Second), p.NotAfter.UTC().Truncate(time.Second)
	if p.NotBefore.IsZero() || !notAfter.After(notBefore) {
		return nil, fmt.Errorf("%w: %v to %v", ErrBadProfile, p.NotBefore, p.NotAfter)
	}
	keyUsage := x509.KeyUsageDigitalSignature
	if _, ok := csr.PublicKey.(*rsa.PublicKey); ok {
		keyUsage |= x509.KeyUsageKeyEncipherment
	}
	eku := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if p.ServerAuth {
		eku = append(eku, x509.ExtKeyUsageServerAuth)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{CommonName: deviceID},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              keyUsage,
		ExtKeyUsage:           eku,
		BasicConstraintsValid: true,
		IsCA:                  false,
		SubjectKeyId:          subjectKeyID(csr.PublicKey),
		URIs:                  []*url.URL{protocol.DeviceURI(deviceID)},
		DNSNames:              allowedDNSNames(csr.DNSNames, p.DNSNames),
		CRLDistributionPoints: p.CRLDistributionPoints,
	}
	cert, _, err := c.issue(tmpl, csr.PublicKey)
	return cert, err
}

// issue signs tmpl with the intermediate in force, clamping NotAfter to the
// intermediate's so no leaf outlives its issuer, and returns the leaf and that
// intermediate.
func (c *CA) issue(tmpl *x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, *x509.Certificate, error) {
	s := c.state()
	if tmpl.NotAfter.After(s.inter.NotAfter) {
		tmpl.NotAfter = s.inter.NotAfter
	}
	if !tmpl.NotAfter.After(tmpl.NotBefore) {
		return nil, nil, fmt.Errorf("issue %q: intermediate expires %v, before the leaf would start", tmpl.Subject.CommonName, s.inter.NotAfter)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.inter, pub, s.interKey)
	if err != nil {
		return nil, nil, fmt.Errorf("issue %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("issue %q: parse: %w", tmpl.Subject.CommonName, err)
	}
	return cert, s.inter, nil
}

// allowedDNSNames returns, lowercased and without duplicates, the requested
// names that appear in allowed.
func allowedDNSNames(requested, allowed []string) []string {
	ok := make(map[string]bool, len(allowed))
	for _, a := range allowed {
		ok[strings.ToLower(a)] = true
	}
	var out []string
	seen := map[string]bool{}
	for _, r := range requested {
		r = strings.ToLower(r)
		if ok[r] && !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return out
}

// CheckKey applies the leaf key policy: ECDSA P-256 or P-384, Ed25519, or
// RSA of 2048 to 8192 bits. Others fail with ErrWeakKey or
// ErrUnsupportedKey.
func CheckKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384():
			return nil
		case elliptic.P224():
			return fmt.Errorf("%w: ECDSA P-224; use P-256 or P-384", ErrWeakKey)
		default:
			return fmt.Errorf("%w: ECDSA %s; use P-256 or P-384", ErrUnsupportedKey, k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
		return nil
	case *rsa.PublicKey:
		switch n := k.N.BitLen(); {
		case n < minRSABits:
			return fmt.Errorf("%w: RSA %d bits; need at least %d", ErrWeakKey, n, minRSABits)
		case n > maxRSABits:
			return fmt.Errorf("%w: RSA %d bits; at most %d", ErrUnsupportedKey, n, maxRSABits)
		}
		return nil
	default:
		return fmt.Errorf("%w: %T", ErrUnsupportedKey, pub)
	}
}

// ServerCertificate issues a TLS server certificate for the hub's own
// listeners, with a fresh P-256 key held only in memory. Each host becomes
// an IP or DNS SAN; the first is also the CN. It is valid for
// ServerLifetime (serverAuth only) and its chain carries the intermediate. The hub renews it
// while running (gateway/internal/servercert).
func (c *CA) ServerCertificate(hosts []string, now time.Time) (tls.Certificate, error) {
	if len(hosts) == 0 {
		return tls.Certificate{}, errors.New("server certificate: no host names")
	}
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{CommonName: hosts[0], Organization: []string{Organization}},
		NotBefore:             now.Add(-serverBackdate).UTC().Truncate(time.Second),
		NotAfter:              now.Add(ServerLifetime).UTC().Truncate(time.Second),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			continue
		}
		if !validHostname(h) {
			return tls.Certificate{}, fmt.Errorf("server certificate: %q is neither an IP address nor a DNS name", h)
		}
		tmpl.DNSNames = append(tmpl.DNSNames, strings.ToLower(h))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	tmpl.SubjectKeyId = subjectKeyID(key.Public())
	cert, inter, err := c.issue(tmpl, key.Public())
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{
		Certificate: [][]byte{cert.Raw, inter.Raw},
		PrivateKey:  key,
		Leaf:        cert,
	}, nil
}

// validHostname accepts DNS names of letters, digits, '-' and '.', with an
// optional leading "*." wildcard label.
func validHostname(h string) bool {
	h = strings.TrimPrefix(h, "*.")
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}
