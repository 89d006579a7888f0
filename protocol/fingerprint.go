package protocol

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
)

// fingerprintPrefix starts the written form of a fingerprint. It is the only spelling of the
// format in Hearth.
const fingerprintPrefix = "SHA256:"

// Fingerprint is the SHA-256 digest of a certificate's DER encoding. An agent pins the hub's
// root CA by it at enrollment (BridgeInfo.CAFingerprint, the enrollment command). It is
// written "SHA256:" followed by the 64 lowercase hexadecimal digits of the digest, without
// separators (String); the zero value is no fingerprint.
type Fingerprint [sha256.Size]byte

// FingerprintOf returns the fingerprint of cert.
func FingerprintOf(cert *x509.Certificate) Fingerprint { return sha256.Sum256(cert.Raw) }

// ParseFingerprint reads a fingerprint written as String writes it, and also without the
// "SHA256:" prefix, with the prefix in any case, in upper case and with colons between the
// bytes (as openssl x509 -fingerprint -sha256 prints it). Surrounding white space is ignored.
func ParseFingerprint(s string) (Fingerprint, error) {
	h := strings.TrimSpace(s)
	if len(h) >= len(fingerprintPrefix) && strings.EqualFold(h[:len(fingerprintPrefix)], fingerprintPrefix) {
		h = h[len(fingerprintPrefix):]
	}
	var f Fingerprint
	b, err := hex.DecodeString(strings.ReplaceAll(h, ":", ""))
	if err != nil || len(b) != len(f) {
		return Fingerprint{}, fmt.Errorf("fingerprint %q: want %s and %d hex digits", s, fingerprintPrefix, 2*len(f))
	}
	copy(f[:], b)
	return f, nil
}

// String returns the written form: "SHA256:" and 64 lowercase hex digits.
func (f Fingerprint) String() string { return fingerprintPrefix + f.Hex() }

// Hex returns the 64 lowercase hex digits of the digest alone, the form the hub's inventory
// stores.
func (f Fingerprint) Hex() string { return hex.EncodeToString(f[:]) }

// MarshalText writes the fingerprint as String does.
func (f Fingerprint) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText reads a fingerprint as ParseFingerprint does.
func (f *Fingerprint) UnmarshalText(b []byte) error {
	v, err := ParseFingerprint(string(b))
	if err != nil {
		return err
	}
	*f = v
	return nil
}
