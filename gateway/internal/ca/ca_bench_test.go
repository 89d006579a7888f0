package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"path/filepath"
	"testing"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
)

// BenchmarkSignLeafFromCSR is the CA's share of one issuance: parse a P-256
// CSR, check its signature and sign a leaf with the intermediate.
func BenchmarkSignLeafFromCSR(b *testing.B) {
	c, _ := newTestCA(b)
	der := testkit.NewCSR(b, testkit.NewKey(b), nil).Raw
	for b.Loop() {
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.SignLeaf(csr, "bench-device", leafAt(testNow)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkECDSAP256SignVerify is the raw primitive cost: one P-256 sign
// plus one verify of a 32-byte digest, the floor under SignLeafFromCSR.
func BenchmarkECDSAP256SignVerify(b *testing.B) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("hearth"))
	for b.Loop() {
		sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
		if err != nil {
			b.Fatal(err)
		}
		if !ecdsa.VerifyASN1(&key.PublicKey, digest[:], sig) {
			b.Fatal("VerifyASN1 = false")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkLoadDefaultIterations measures opening a CA with the production
// PBKDF2 count: the hub's start-up cost for the CA.
func BenchmarkLoadDefaultIterations(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "ca")
	if _, err := Init(dir, testPass, testNow); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Load(dir, testPass); err != nil {
			b.Fatal(err)
		}
	}
}
