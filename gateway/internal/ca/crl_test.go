package ca

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
)

func TestCRL(t *testing.T) {
	c, _ := newTestCA(t)
	now := time.Now()
	key := testkit.NewKey(t)
	csr := testkit.NewCSR(t, key, nil)
	revoked, err := c.SignLeaf(csr, "lost-sensor", leafAt(now))
	if err != nil {
		t.Fatal(err)
	}
	kept, err := c.SignLeaf(csr, "kept-sensor", leafAt(now))
	if err != nil {
		t.Fatal(err)
	}
	other := new(big.Int).Lsh(big.NewInt(1), 127) // top bit set: DER needs a leading zero
	entries := []Revoked{
		{Serial: revoked.SerialNumber, At: now.Add(-time.Hour), Reason: 1},
		{Serial: other, At: now.Add(-2 * time.Hour)},
	}
	data, err := c.CRL(entries, big.NewInt(42), now, 7*24*time.Hour)
	if err != nil {
		t.Fatalf("CRL = %v", err)
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "X509 CRL" || len(rest) != 0 {
		t.Fatalf("CRL() is not one PEM X509 CRL block:\n%s", data)
	}
	crl, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		t.Fatalf("ParseRevocationList = %v", err)
	}
	if err := crl.CheckSignatureFrom(c.Intermediate()); err != nil {
		t.Errorf("CRL.CheckSignatureFrom(intermediate) = %v", err)
	}
	if crl.Number.Int64() != 42 || !crl.NextUpdate.Equal(crl.ThisUpdate.Add(7*24*time.Hour)) || len(crl.RevokedCertificateEntries) != 2 {
		t.Errorf("CRL number %v, this/next %v/%v, %d entries; want 42, 7 days, 2",
			crl.Number, crl.ThisUpdate, crl.NextUpdate, len(crl.RevokedCertificateEntries))
	}
	if e := crl.RevokedCertificateEntries[0]; e.SerialNumber.Cmp(revoked.SerialNumber) != 0 || e.ReasonCode != 1 {
		t.Errorf("entry 0 = serial %x reason %d, want %x reason 1", e.SerialNumber, e.ReasonCode, revoked.SerialNumber)
	}

	tmp := t.TempDir()
	rootPath, interPath := writeChain(t, c, tmp)
	crlPath := filepath.Join(tmp, "crl.pem")
	if err := os.WriteFile(crlPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := openssl(t, "crl", "-in", crlPath, "-noout", "-text")
	if err != nil {
		t.Fatalf("openssl crl = %v\n%s", err, out)
	}
	for _, want := range []string{
		"Serial Number: " + opensslSerial(revoked.SerialNumber) + "\n",
		"Serial Number: " + opensslSerial(other) + "\n",
		"Key Compromise",
		"X509v3 CRL Number: \n                42",
		"Issuer: O = Hearth, CN = Hearth Intermediate CA",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("openssl crl -text lacks %q:\n%s", want, out)
		}
	}
	// openssl applies the CRL: the revoked leaf fails, the other passes.
	for _, tc := range []struct {
		leaf *x509.Certificate
		ok   bool
	}{{revoked, false}, {kept, true}} {
		leafPath := testkit.WritePEM(t, tmp, tc.leaf.Subject.CommonName+".pem", "CERTIFICATE", tc.leaf.Raw)
		out, err := openssl(t, "verify", "-crl_check", "-CRLfile", crlPath, "-CAfile", rootPath, "-untrusted", interPath, leafPath)
		if gotOK := err == nil && strings.Contains(out, ": OK"); gotOK != tc.ok {
			t.Errorf("openssl verify -crl_check %s: ok=%v, want %v\n%s", tc.leaf.Subject.CommonName, gotOK, tc.ok, out)
		}
		if !tc.ok && !strings.Contains(out, "certificate revoked") {
			t.Errorf("openssl verify -crl_check %s does not say revoked:\n%s", tc.leaf.Subject.CommonName, out)
		}
	}
}

func TestCRLRefusesBadInput(t *testing.T) {
	c, _ := newTestCA(t)
	good := Revoked{Serial: big.NewInt(7), At: testNow}
	tests := []struct {
		name     string
		entries  []Revoked
		number   *big.Int
		validity time.Duration
	}{
		{"nil number", nil, nil, time.Hour},
		{"zero number", nil, big.NewInt(0), time.Hour},
		{"21-octet number", nil, new(big.Int).Lsh(big.NewInt(1), 160), time.Hour},
		{"zero validity", nil, big.NewInt(1), 0},
		{"nil serial", []Revoked{good, {At: testNow}}, big.NewInt(1), time.Hour},
		{"no time", []Revoked{{Serial: big.NewInt(1)}}, big.NewInt(1), time.Hour},
		{"reason 7", []Revoked{{Serial: big.NewInt(1), At: testNow, Reason: 7}}, big.NewInt(1), time.Hour},
		{"reason 11", []Revoked{{Serial: big.NewInt(1), At: testNow, Reason: 11}}, big.NewInt(1), time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := c.CRL(tt.entries, tt.number, testNow, tt.validity); err == nil {
				t.Errorf("CRL = %d bytes, nil error; want an error", len(got))
			}
		})
	}
	if _, err := c.CRL(nil, big.NewInt(1), testNow, time.Hour); err != nil {
		t.Errorf("CRL(no entries) = %v, want an empty CRL", err)
	}
}

// opensslSerial formats a serial as openssl crl -text does: upper-case hex
// of whole bytes.
func opensslSerial(n *big.Int) string {
	return fmt.Sprintf("%X", n.Bytes())
}
