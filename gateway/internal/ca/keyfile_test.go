package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/hearth-pki/hearth/protocol"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// goldenKeyPass unlocks testdata/intermediate.key.
var goldenKeyPass = []byte("hearth golden passphrase")

// TestGoldenKeyFile locks the at-rest format: a key file written by an
// earlier build must keep decrypting. Regenerate with -update only for a
// deliberate, versioned format change.
func TestGoldenKeyFile(t *testing.T) {
	path := filepath.Join("testdata", "intermediate.key")
	if *update {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		kdf := newKDFParams(testIterations)
		kek, err := deriveKey(goldenKeyPass, kdf)
		if err != nil {
			t.Fatal(err)
		}
		data, err := encryptKey(key, roleIntermediate, kek, kdf)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	key, err := decryptKey(data, roleIntermediate, goldenKeyPass, maxIterations)
	if err != nil {
		t.Fatalf("decryptKey(golden) = %v", err)
	}
	if got := protocol.KeyAlgorithmOf(key.Public()); got != protocol.KeyP256 {
		t.Errorf("golden key algorithm = %q, want %q", got, protocol.KeyP256)
	}
	if _, err := decryptKey(data, roleRoot, goldenKeyPass, maxIterations); !errors.Is(err, ErrCorrupt) {
		t.Errorf("decryptKey(golden, role root) = %v, want ErrCorrupt", err)
	}
	if _, err := decryptKey(data, roleIntermediate, []byte("nope"), maxIterations); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("decryptKey(golden, wrong passphrase) = %v, want ErrWrongPassphrase", err)
	}
	block, _ := pem.Decode(data)
	want := map[string]string{"Version": "1", "Key": "intermediate", "KDF": "PBKDF2-SHA256", "Cipher": "AES-256-GCM", "Iterations": "1000"}
	for k, v := range want {
		if block.Headers[k] != v {
			t.Errorf("golden header %s = %q, want %q", k, block.Headers[k], v)
		}
	}
}

func TestKeyFileRoundTrip(t *testing.T) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tests := []struct {
		name string
		key  crypto.Signer
	}{
		{"ECDSA P-384", ecKey},
		{"Ed25519", edKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kdf := newKDFParams(testIterations)
			kek, err := deriveKey(testPass, kdf)
			if err != nil {
				t.Fatal(err)
			}
			data, err := encryptKey(tt.key, roleRoot, kek, kdf)
			if err != nil {
				t.Fatalf("encryptKey = %v", err)
			}
			der, _ := x509.MarshalPKCS8PrivateKey(tt.key)
			block, _ := pem.Decode(data)
			if bytes.Contains(block.Bytes, der) || len(block.Bytes) != len(der)+16 {
				t.Errorf("ciphertext is %d bytes, want PKCS#8 length %d + 16-byte tag, not containing the plaintext", len(block.Bytes), len(der))
			}
			got, err := decryptKey(data, roleRoot, testPass, maxIterations)
			if err != nil {
				t.Fatalf("decryptKey = %v", err)
			}
			if !got.(interface{ Equal(crypto.PrivateKey) bool }).Equal(tt.key) {
				t.Errorf("decryptKey returned a different %s key", tt.name)
			}
		})
	}
}

// FuzzDecryptKey feeds junk to the key file decoder: it must never panic
// and must return either a key or an error.
func FuzzDecryptKey(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	kdf := newKDFParams(1)
	kek, _ := deriveKey(goldenKeyPass, kdf)
	valid, _ := encryptKey(key, roleRoot, kek, kdf)
	f.Add(valid)
	if golden, err := os.ReadFile(filepath.Join("testdata", "intermediate.key")); err == nil {
		f.Add(golden)
	}
	f.Add([]byte("-----BEGIN HEARTH ENCRYPTED PRIVATE KEY-----\nIterations: -1\n\nAAAA\n-----END HEARTH ENCRYPTED PRIVATE KEY-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, role := range []string{roleRoot, roleIntermediate} {
			k, err := decryptKey(data, role, goldenKeyPass, 1000)
			if (k == nil) == (err == nil) {
				t.Fatalf("decryptKey = %v, %v: want exactly one of key and error", k, err)
			}
		}
	})
}
