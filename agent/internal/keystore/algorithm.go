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
	"slices"
	"strings"

	"github.com/hearth-pki/hearth/protocol"
)

// generated lists the key algorithms GenerateKey supports, by the protocol's names (the names
// of the agent's configuration and health reports). P-256 is the default (fast on small
// MIPS/ARM boards); RSA 2048 is for legacy device classes only.
var generated = []protocol.KeyAlgorithm{protocol.KeyP256, protocol.KeyP384, protocol.KeyEd25519, protocol.KeyRSA2048}

// ParseAlgorithm returns the key algorithm named by s, one GenerateKey supports. It ignores
// case and dashes, so "P-256" and "RSA-2048" are accepted; anything else is an error wrapping
// ErrUnsupportedAlgorithm.
func ParseAlgorithm(s string) (protocol.KeyAlgorithm, error) {
	a := protocol.KeyAlgorithm(strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), "-", ""))
	if slices.Contains(generated, a) {
		return a, nil
	}
	return "", fmt.Errorf("%w: %q (want one of %v)", ErrUnsupportedAlgorithm, s, generated)
}

// GenerateKey returns a fresh private key of the given algorithm from crypto/rand.
func GenerateKey(alg protocol.KeyAlgorithm) (crypto.Signer, error) {
	switch alg {
	case protocol.KeyP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case protocol.KeyP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case protocol.KeyEd25519:
		_, key, err := ed25519.GenerateKey(rand.Reader)
		return key, err
	case protocol.KeyRSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, fmt.Errorf("%w: %q", ErrUnsupportedAlgorithm, alg)
}

// algorithmOf returns the algorithm of a public key, or "" if GenerateKey makes no such key.
func algorithmOf(pub crypto.PublicKey) protocol.KeyAlgorithm {
	if a := protocol.KeyAlgorithmOf(pub); slices.Contains(generated, a) {
		return a
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
