package protocol

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"math/big"
	"testing"
)

func TestKeyAlgorithmOf(t *testing.T) {
	ec := func(c elliptic.Curve) crypto.PublicKey {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k.Public()
	}
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	rsaPub := func(bits int) crypto.PublicKey {
		// Only the modulus size matters here: a number of that length, not a real key.
		return &rsa.PublicKey{N: new(big.Int).Lsh(big.NewInt(1), uint(bits-1)), E: 65537}
	}
	tests := []struct {
		name   string
		pub    crypto.PublicKey
		want   KeyAlgorithm
		family string
		bits   int
	}{
		{"P-224", ec(elliptic.P224()), KeyP224, "p224", 224},
		{"P-256", ec(elliptic.P256()), KeyP256, "p256", 256},
		{"P-384", ec(elliptic.P384()), KeyP384, "p384", 384},
		{"P-521", ec(elliptic.P521()), KeyP521, "p521", 521},
		{"Ed25519", edPub, KeyEd25519, "ed25519", 256},
		{"RSA 1024", rsaPub(1024), "rsa1024", KeyRSA, 1024},
		{"RSA 2048", rsaPub(2048), KeyRSA2048, KeyRSA, 2048},
		{"RSA 3072", rsaPub(3072), KeyRSA3072, KeyRSA, 3072},
		{"RSA 4096", rsaPub(4096), KeyRSA4096, KeyRSA, 4096},
		{"RSA without modulus", &rsa.PublicKey{}, KeyUnknown, "unknown", 0},
		{"nil", nil, KeyUnknown, "unknown", 0},
		{"a string", "not a key", KeyUnknown, "unknown", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := KeyAlgorithmOf(tt.pub)
			if got != tt.want || got.Family() != tt.family || got.Bits() != tt.bits {
				t.Errorf("KeyAlgorithmOf(%s) = %q (family %q, %d bits), want %q (%q, %d)",
					tt.name, got, got.Family(), got.Bits(), tt.want, tt.family, tt.bits)
			}
		})
	}
	for _, name := range []KeyAlgorithm{"rsa", "rsa0", "rsa02048", "rsa-1", "rsax", "RSA2048", ""} {
		if name.Family() != string(name) || name.Bits() != 0 {
			t.Errorf("%q: Family() = %q, Bits() = %d; want itself and 0", name, name.Family(), name.Bits())
		}
	}
}
