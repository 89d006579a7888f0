package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrBadDeviceID means a device id does not follow the syntax, or a
// certificate does not name exactly one well-formed device.
var ErrBadDeviceID = errors.New("ca: bad device id")

// MaxDeviceIDLen is the longest device id accepted.
const MaxDeviceIDLen = 64

// deviceURNPrefix starts the URI SAN naming a device: urn:hearth:device:<id>.
const deviceURNPrefix = "hearth:device:"

// ValidDeviceID checks the device id syntax: 1 to 64 characters among
// lowercase letters, digits, '-', '_' and '.', not starting with '.' or '-'.
// The syntax keeps ids safe in MQTT topics, file names and URNs.
func ValidDeviceID(id string) error {
	if id == "" || len(id) > MaxDeviceIDLen {
		return fmt.Errorf("%w: %q must be 1 to %d characters", ErrBadDeviceID, id, MaxDeviceIDLen)
	}
	if id[0] == '.' || id[0] == '-' {
		return fmt.Errorf("%w: %q must not start with '.' or '-'", ErrBadDeviceID, id)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("%w: %q contains %q; allowed are a-z, 0-9, '-', '_', '.'", ErrBadDeviceID, id, r)
		}
	}
	return nil
}

// DeviceURI returns the URI SAN that names a device in its certificate,
// urn:hearth:device:<id>.
func DeviceURI(id string) *url.URL {
	return &url.URL{Scheme: "urn", Opaque: deviceURNPrefix + id}
}

// DeviceIDFromCert returns the device a certificate names: the id of its
// only urn:hearth:device: URI SAN, which must be valid and equal to the
// subject CN. It does not verify the certificate; do that first.
func DeviceIDFromCert(cert *x509.Certificate) (string, error) {
	var ids []string
	for _, u := range cert.URIs {
		if u.Scheme == "urn" && strings.HasPrefix(u.Opaque, deviceURNPrefix) {
			ids = append(ids, strings.TrimPrefix(u.Opaque, deviceURNPrefix))
		}
	}
	if len(ids) != 1 {
		return "", fmt.Errorf("%w: certificate has %d urn:hearth:device URIs, want 1", ErrBadDeviceID, len(ids))
	}
	id := ids[0]
	if err := ValidDeviceID(id); err != nil {
		return "", err
	}
	if cert.Subject.CommonName != id {
		return "", fmt.Errorf("%w: CN %q differs from URI SAN device %q", ErrBadDeviceID, cert.Subject.CommonName, id)
	}
	return id, nil
}

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
