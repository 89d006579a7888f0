package protocol

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"strconv"
	"strings"
)

// KeyAlgorithm names a public key's algorithm and size, the one naming scheme of the hub,
// the agent and this specification: health reports (key_algorithm), the hub's inventory,
// the agent's --key option and, for the family, policy files. Names are lower case without
// separators; an RSA key's name is KeyRSA followed by its modulus size in bits.
type KeyAlgorithm string

// The key names KeyAlgorithmOf returns, besides "rsa<bits>" for other RSA sizes. The hub's CA
// signs P-256, P-384, Ed25519 and RSA keys of 2048 to 8192 bits; the others are named so
// that a refusal can say what it refused.
const (
	KeyP224    KeyAlgorithm = "p224"    // ECDSA on NIST P-224
	KeyP256    KeyAlgorithm = "p256"    // ECDSA on NIST P-256, the agent's default
	KeyP384    KeyAlgorithm = "p384"    // ECDSA on NIST P-384
	KeyP521    KeyAlgorithm = "p521"    // ECDSA on NIST P-521
	KeyEd25519 KeyAlgorithm = "ed25519" // Ed25519 (RFC 8032)
	KeyRSA2048 KeyAlgorithm = "rsa2048" // RSA with a 2048-bit modulus
	KeyRSA3072 KeyAlgorithm = "rsa3072"
	KeyRSA4096 KeyAlgorithm = "rsa4096"
	KeyUnknown KeyAlgorithm = "unknown" // any other key
)

// KeyRSA is the family of every RSA key name (Family).
const KeyRSA = "rsa"

// KeyAlgorithmOf names pub: KeyP256 and the other ECDSA curves, KeyEd25519, RSAKey(bits), or
// KeyUnknown for anything else.
func KeyAlgorithmOf(pub crypto.PublicKey) KeyAlgorithm {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P224():
			return KeyP224
		case elliptic.P256():
			return KeyP256
		case elliptic.P384():
			return KeyP384
		case elliptic.P521():
			return KeyP521
		}
	case ed25519.PublicKey:
		return KeyEd25519
	case *rsa.PublicKey:
		if k.N != nil {
			return RSAKey(k.N.BitLen())
		}
	}
	return KeyUnknown
}

// RSAKey returns the name of an RSA key with a modulus of bits bits, e.g. "rsa2048".
func RSAKey(bits int) KeyAlgorithm { return KeyAlgorithm(KeyRSA + strconv.Itoa(bits)) }

// Family returns the name without an RSA key's size: KeyRSA for every RSA key, the name
// itself for the others. Policy files allow keys by family, with a minimum RSA size.
func (a KeyAlgorithm) Family() string {
	if a.rsaBits() > 0 {
		return KeyRSA
	}
	return string(a)
}

// Bits returns the key's size in bits: the curve's for ECDSA, 256 for Ed25519, the modulus
// size for RSA, and 0 for KeyUnknown or a name this package does not define.
func (a KeyAlgorithm) Bits() int {
	switch a {
	case KeyP224:
		return 224
	case KeyP256, KeyEd25519:
		return 256
	case KeyP384:
		return 384
	case KeyP521:
		return 521
	}
	return a.rsaBits()
}

// rsaBits returns the size in an "rsa<bits>" name, 0 for any other name.
func (a KeyAlgorithm) rsaBits() int {
	digits, ok := strings.CutPrefix(string(a), KeyRSA)
	if !ok || digits == "" || digits[0] == '0' {
		return 0
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n <= 0 {
		return 0
	}
	return n
}
