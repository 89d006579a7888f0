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

	"github.com/hearth-pki/hearth/protocol"
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

// NewCSR returns a PEM "CERTIFICATE REQUEST" signed by key, with subject CN = deviceID and the
// URI SAN protocol.DeviceURN(deviceID). The hub takes only the public key and the names its
// policy allows from it. deviceID must pass protocol.ValidateDeviceID, the rule the hub's CA
// and broker apply.
func NewCSR(key crypto.Signer, deviceID string) ([]byte, error) {
	if err := protocol.ValidateDeviceID(deviceID); err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	tmpl := &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: deviceID},
		URIs:    []*url.URL{protocol.DeviceURI(deviceID)},
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("keystore: create CSR: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}
