package keystore

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/hearth-pki/hearth/agent/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

func TestParseAlgorithm(t *testing.T) {
	tests := []struct {
		in   string
		want protocol.KeyAlgorithm
		err  error
	}{
		{in: "p256", want: protocol.KeyP256},
		{in: "P-256", want: protocol.KeyP256},
		{in: " p384 ", want: protocol.KeyP384},
		{in: "Ed25519", want: protocol.KeyEd25519},
		{in: "RSA-2048", want: protocol.KeyRSA2048},
		{in: "rsa1024", err: ErrUnsupportedAlgorithm},
		{in: "p521", err: ErrUnsupportedAlgorithm},
		{in: "", err: ErrUnsupportedAlgorithm},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseAlgorithm(tt.in)
			if got != tt.want || !errors.Is(err, tt.err) || (err != nil) != (tt.err != nil) {
				t.Errorf("ParseAlgorithm(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.err)
			}
		})
	}
}

func TestGenerateKeyAndCSR(t *testing.T) {
	ca := newTestCA(t)
	tests := []struct {
		alg     protocol.KeyAlgorithm
		sigAlg  x509.SignatureAlgorithm
		pubAlgo x509.PublicKeyAlgorithm
	}{
		{protocol.KeyP256, x509.ECDSAWithSHA256, x509.ECDSA},
		{protocol.KeyP384, x509.ECDSAWithSHA384, x509.ECDSA},
		{protocol.KeyEd25519, x509.PureEd25519, x509.Ed25519},
		{protocol.KeyRSA2048, x509.SHA256WithRSA, x509.RSA},
	}
	for _, tt := range tests {
		t.Run(string(tt.alg), func(t *testing.T) {
			key, err := GenerateKey(tt.alg)
			if err != nil {
				t.Fatalf("GenerateKey(%q) = %v", tt.alg, err)
			}
			pemCSR, err := NewCSR(key, "kitchen-sensor_01")
			if err != nil {
				t.Fatalf("NewCSR(%q) = %v", tt.alg, err)
			}
			block, rest := pem.Decode(pemCSR)
			if block == nil || block.Type != "CERTIFICATE REQUEST" || len(rest) != 0 {
				t.Fatalf("NewCSR(%q) is not one CERTIFICATE REQUEST block: %q", tt.alg, pemCSR)
			}
			csr, err := x509.ParseCertificateRequest(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if err := csr.CheckSignature(); err != nil {
				t.Errorf("CSR signature: %v", err)
			}
			if csr.SignatureAlgorithm != tt.sigAlg || csr.PublicKeyAlgorithm != tt.pubAlgo {
				t.Errorf("CSR algorithms = %v/%v, want %v/%v", csr.SignatureAlgorithm, csr.PublicKeyAlgorithm, tt.sigAlg, tt.pubAlgo)
			}
			if csr.Subject.CommonName != "kitchen-sensor_01" {
				t.Errorf("CSR CN = %q, want %q", csr.Subject.CommonName, "kitchen-sensor_01")
			}
			if len(csr.URIs) != 1 || csr.URIs[0].String() != "urn:hearth:device:kitchen-sensor_01" {
				t.Errorf("CSR URIs = %v, want [urn:hearth:device:kitchen-sensor_01]", csr.URIs)
			}
			if len(csr.DNSNames)+len(csr.EmailAddresses)+len(csr.IPAddresses) != 0 {
				t.Errorf("CSR has unexpected SANs: %v %v %v", csr.DNSNames, csr.EmailAddresses, csr.IPAddresses)
			}
			pub, _ := key.Public().(interface{ Equal(crypto.PublicKey) bool })
			if pub == nil || !pub.Equal(csr.PublicKey) {
				t.Errorf("CSR public key does not match the key")
			}
			// The key must survive a round trip through the directory with its algorithm.
			d := mustOpen(t, t.TempDir(), Options{})
			if err := d.Install(key, issue(t, ca, key, 7)); err != nil {
				t.Fatalf("Install(%q key) = %v", tt.alg, err)
			}
			p, err := mustOpen(t, d.path, Options{}).Current()
			if err != nil {
				t.Fatal(err)
			}
			if p.Algorithm() != tt.alg {
				t.Errorf("Pair.Algorithm() = %q, want %q", p.Algorithm(), tt.alg)
			}
		})
	}
}

func TestGenerateKeyUnknown(t *testing.T) {
	if k, err := GenerateKey("dsa"); !errors.Is(err, ErrUnsupportedAlgorithm) {
		t.Errorf("GenerateKey(%q) = %T, %v; want ErrUnsupportedAlgorithm", "dsa", k, err)
	}
}

func TestNewCSRRejectsBadDeviceID(t *testing.T) {
	key := testkit.NewKey(t)
	// The full table of ids is checked in the device package (TestDeviceIDRule); these are
	// the ids an older rule of this package wrongly accepted.
	for _, id := range []string{"Kitchen", "_x", ".a", "-a", "A-1"} {
		if csr, err := NewCSR(key, id); err == nil || !errors.Is(err, protocol.ErrInvalid) {
			t.Errorf("NewCSR(key, %q) = %q, %v; want protocol.ErrInvalid", id, csr, err)
		}
	}
}

// BenchmarkKeyAndCSR measures what a renewal costs the device before the network: a fresh key
// and a signed CSR.
func BenchmarkKeyAndCSR(b *testing.B) {
	for _, alg := range generated {
		b.Run(string(alg), func(b *testing.B) {
			for b.Loop() {
				key, err := GenerateKey(alg)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := NewCSR(key, "bench-device"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
