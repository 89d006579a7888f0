package testkit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"testing"
)

// NewKey returns a fresh ECDSA P-256 key, the hub's and the agent's default.
func NewKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	return k
}

// NewCSR returns a parsed certificate signing request built from tmpl (nil: an empty
// subject) and signed by key, which proves possession of it.
func NewCSR(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) *x509.CertificateRequest {
	t.Helper()
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatalf("CreateCertificateRequest: %v", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatalf("ParseCertificateRequest: %v", err)
	}
	return csr
}

// CSRPEM encodes a CSR as the "CERTIFICATE REQUEST" PEM block the protocol's csr message
// carries.
func CSRPEM(csr *x509.CertificateRequest) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr.Raw}))
}

// KeyAndCSR returns a fresh P-256 key and a PEM CSR for it with common name cn, what an agent
// sends to enroll or renew.
func KeyAndCSR(t testing.TB, cn string) (*ecdsa.PrivateKey, string) {
	t.Helper()
	key := NewKey(t)
	return key, CSRPEM(NewCSR(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}))
}
