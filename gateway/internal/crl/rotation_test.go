package crl

import (
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
	"github.com/hearth-pki/hearth/protocol"
)

// TestCRLDuringRotation: during an intermediate rotation each intermediate signs the CRL of
// the certificates it issued (openssl -crl_check refuses a revoked leaf of either with its
// own issuer's CRL); at retirement the previous one's last CRL is valid until that
// intermediate expires and is still served after a restart; the root's CRL is served too.
func TestCRLDuringRotation(t *testing.T) {
	openssl := testkit.RequirePeer(t, "openssl")
	f := newFixture(t)
	caDir := filepath.Join(t.TempDir(), "ca")
	c, err := ca.InitWithIterations(caDir, []byte(hubkit.Passphrase), t0.Add(-24*time.Hour), ca.MinIterations)
	if err != nil {
		t.Fatal(err)
	}
	f.ca = c
	old := c.Intermediate()
	oldLeaf := f.leaf(t, "cam", 30*24*time.Hour)
	if _, err := c.RotateIntermediate(caDir, []byte(hubkit.Passphrase), t0); err != nil {
		t.Fatal(err)
	}
	newLeaf := f.leaf(t, "plug", 30*24*time.Hour)
	f.revoke(t, oldLeaf, protocol.RevokeKeyCompromise)
	f.revoke(t, newLeaf, protocol.RevokeKeyCompromise)

	var topic []byte // the retained crl topic's payload
	newP := func() *Publisher {
		p, err := New(Config{Store: f.store, CA: c, Path: filepath.Join(f.dir, "crl.pem"), PreviousPath: filepath.Join(f.dir, "crl-previous.pem"),
			RootPath: filepath.Join(f.dir, "crl-root.pem"), Now: f.clock.Now, Publish: func(b []byte) error { topic = b; return nil }})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := newP()
	if _, err := p.Regenerate(t.Context()); err != nil {
		t.Fatalf("Regenerate() = %v", err)
	}
	// The crl topic carries the current intermediate's CRL first, then the previous one's.
	signedBy(t, topic, c.Intermediate(), old)
	root := testkit.WritePEM(t, f.dir, "root-ca.pem", "CERTIFICATE", c.Root().Raw)
	for _, tc := range []struct {
		leaf, issuer *x509.Certificate
		crl          string
	}{
		{oldLeaf, old, "crl-previous.pem"},
		{newLeaf, c.Intermediate(), "crl.pem"},
	} {
		leafPath := filepath.Join(f.dir, tc.leaf.Subject.CommonName+".pem")
		inter := testkit.WritePEM(t, f.dir, "issuer.pem", "CERTIFICATE", tc.issuer.Raw)
		out, err := exec.Command(openssl, "verify", "-crl_check", "-CAfile", root, "-untrusted", inter,
			"-CRLfile", filepath.Join(f.dir, tc.crl), leafPath).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "revoked") {
			t.Errorf("openssl verify -crl_check %s with %s = %v\n%s; want revoked", tc.leaf.Subject.CommonName, tc.crl, err, out)
		}
	}

	if err := p.FinalPrevious(t.Context()); err != nil {
		t.Fatalf("FinalPrevious() = %v", err)
	}
	if _, err := c.RetirePrevious(caDir); err != nil {
		t.Fatal(err)
	}
	last := parsePEMCRL(t, p.Previous())
	if !last.NextUpdate.Equal(old.NotAfter.UTC().Truncate(time.Second)) || last.CheckSignatureFrom(old) != nil {
		t.Errorf("last CRL of the previous intermediate: next update %v (want %v, its expiry), signature %v",
			last.NextUpdate, old.NotAfter, last.CheckSignatureFrom(old))
	}
	if _, err := p.RootCRL(t.Context(), func(n *big.Int, now time.Time) ([]byte, error) {
		return c.RootCRL(caDir, []byte(hubkit.Passphrase), []ca.Revoked{{Serial: old.SerialNumber, At: now, Reason: 1}}, n, now, 24*time.Hour)
	}); err != nil {
		t.Fatalf("RootCRL() = %v", err)
	}
	// Retired and revoked: the previous intermediate's last CRL and the root's are published
	// with the current one.
	if l := signedBy(t, topic, c.Intermediate(), old, c.Root())[2]; len(l.RevokedCertificateEntries) != 1 ||
		l.RevokedCertificateEntries[0].SerialNumber.Cmp(old.SerialNumber) != 0 {
		t.Errorf("the root's CRL on the topic lists %v, want the previous intermediate", l.RevokedCertificateEntries)
	}

	// After a restart the kept CRLs are served over HTTP until they expire.
	p = newP()
	p.start(t.Context())
	for path, signer := range map[string]*x509.Certificate{"/crl-previous": old, "/crl-root": c.Root()} {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/pkix-crl" {
			t.Fatalf("GET %s = %d %q", path, rec.Code, rec.Header().Get("Content-Type"))
		}
		l, err := x509.ParseRevocationList(rec.Body.Bytes())
		if err != nil || l.CheckSignatureFrom(signer) != nil {
			t.Errorf("GET %s: not a CRL signed by %s: %v", path, signer.Subject.CommonName, err)
		}
	}
	f.clock.Set(t0.Add(48 * time.Hour)) // the root CRL's next update passed, not the previous one's
	p = newP()
	p.start(t.Context())
	signedBy(t, topic, c.Intermediate(), old) // the expired root CRL is published no more
	for path, want := range map[string]int{"/crl-root.pem": 404, "/crl-previous.pem": 200} {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != want {
			t.Errorf("GET %s after the root CRL expired = %d, want %d", path, rec.Code, want)
		}
	}
}

func parsePEMCRL(t *testing.T, raw []byte) *x509.RevocationList {
	t.Helper()
	b, _ := pem.Decode(raw)
	if b == nil {
		t.Fatal("no PEM CRL")
	}
	l, err := x509.ParseRevocationList(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// signedBy decodes the crl topic's payload and checks that its CRLs are signed, in order,
// by signers.
func signedBy(t *testing.T, raw []byte, signers ...*x509.Certificate) []*x509.RevocationList {
	t.Helper()
	var ls []*x509.RevocationList
	for rest := raw; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		l, err := x509.ParseRevocationList(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	if len(ls) != len(signers) {
		t.Fatalf("the crl topic carries %d CRLs, want %d", len(ls), len(signers))
	}
	for i, l := range ls {
		if err := l.CheckSignatureFrom(signers[i]); err != nil {
			t.Errorf("CRL %d on the crl topic is not signed by %s: %v", i, signers[i].Subject.CommonName, err)
		}
	}
	return ls
}
