package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
)

// fingerprintPrefix starts every formatted fingerprint.
const fingerprintPrefix = "SHA256:"

// FingerprintOf returns "SHA256:" plus the lowercase hex SHA-256 of the
// certificate's DER encoding, without separators.
func FingerprintOf(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return fingerprintPrefix + hex.EncodeToString(sum[:])
}

// ParseFingerprint returns the canonical form (see FingerprintOf) of a
// SHA-256 fingerprint written with or without the "SHA256:" prefix (any
// case), in upper or lower case, with or without colons between bytes.
func ParseFingerprint(s string) (string, error) {
	h := strings.TrimSpace(s)
	if len(h) >= len(fingerprintPrefix) && strings.EqualFold(h[:len(fingerprintPrefix)], fingerprintPrefix) {
		h = h[len(fingerprintPrefix):]
	}
	h = strings.ToLower(strings.ReplaceAll(h, ":", ""))
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("fingerprint %q: want SHA256: and %d hex digits", s, 2*sha256.Size)
	}
	return fingerprintPrefix + h, nil
}

// KeyAlgorithm names a public key for people, e.g. "ECDSA P-256",
// "Ed25519" or "RSA 2048".
func KeyAlgorithm(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	default:
		return fmt.Sprintf("unknown (%T)", pub)
	}
}
