package keystore

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net/url"
	"strings"
)

// Algorithm names a key algorithm the agent can generate. Its values are the names used in
// configuration and in health reports.
type Algorithm string

// The algorithms GenerateKey supports. P256 is the default (fast on small MIPS/ARM boards);
// RSA2048 is for legacy device classes only.
const (
	P256    Algorithm = "p256"
	P384    Algorithm = "p384"
	Ed25519 Algorithm = "ed25519"
	RSA2048 Algorithm = "rsa2048"
)

// ParseAlgorithm returns the Algorithm named by s. It ignores case and dashes, so "P-256" and
// "RSA-2048" are accepted; anything else is an error wrapping ErrUnsupportedAlgorithm.
func ParseAlgorithm(s string) (Algorithm, error) {
	switch a := Algorithm(strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), "-", "")); a {
	case P256, P384, Ed25519, RSA2048:
		return a, nil
	}
	return "", fmt.Errorf("%w: %q (want p256, p384, ed25519 or rsa2048)", ErrUnsupportedAlgorithm, s)
}

// GenerateKey returns a fresh private key of the given algorithm from crypto/rand.
func GenerateKey(alg Algorithm) (crypto.Signer, error) {
	switch alg {
	case P256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case P384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case Ed25519:
		_, key, err := ed25519.GenerateKey(rand.Reader)
		return key, err
	case RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, fmt.Errorf("%w: %q", ErrUnsupportedAlgorithm, alg)
}

// algorithmOf returns the Algorithm of a public key, or "" if it is none of the supported ones.
func algorithmOf(pub crypto.PublicKey) Algorithm {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return P256
		case elliptic.P384():
			return P384
		}
	case ed25519.PublicKey:
		return Ed25519
	case *rsa.PublicKey:
		if k.N.BitLen() == 2048 {
			return RSA2048
		}
	}
	return ""
}

// maxDeviceID bounds a device id: it appears in MQTT topics, the CN (at most 64 characters,
// RFC 5280 ub-common-name) and a URI SAN.
const maxDeviceID = 64

// checkDeviceID accepts ids made of ASCII letters, digits, '.', '_' and '-': safe in an MQTT
// topic level, a URN and a file name.
func checkDeviceID(id string) error {
	if id == "" || len(id) > maxDeviceID {
		return fmt.Errorf("keystore: device id must be 1 to %d characters, got %d", maxDeviceID, len(id))
	}
	for i, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return fmt.Errorf("keystore: device id %q: character %q at %d not allowed (letters, digits, '.', '_', '-')", id, r, i)
		}
	}
	return nil
}

// deviceURI returns the URI SAN that names a device: urn:hearth:device:<id>.
func deviceURI(deviceID string) *url.URL {
	return &url.URL{Scheme: "urn", Opaque: "hearth:device:" + deviceID}
}

// NewCSR returns a PEM "CERTIFICATE REQUEST" signed by key, with subject CN = deviceID and the
// URI SAN urn:hearth:device:<deviceID>. The hub takes only the public key and the names its
// policy allows from it.
func NewCSR(key crypto.Signer, deviceID string) ([]byte, error) {
	if err := checkDeviceID(deviceID); err != nil {
		return nil, err
	}
	tmpl := &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: deviceID},
		URIs:    []*url.URL{deviceURI(deviceID)},
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("keystore: create CSR: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}
