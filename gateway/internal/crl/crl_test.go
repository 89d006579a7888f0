package crl

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
	"github.com/hearth-pki/hearth/protocol"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

type fixture struct {
	store *inventory.Store
	ca    *ca.CA
	dir   string
	clock *testkit.Clock

	mu        sync.Mutex
	published [][]byte
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return &fixture{store: hubkitStore(t), ca: hubkitCA(t), dir: t.TempDir(), clock: testkit.NewClock(t0)}
}

func hubkitStore(t testing.TB) *inventory.Store { return hubkit.Store(t) }

func hubkitCA(t testing.TB) *ca.CA { return hubkit.CA(t, t0.Add(-24*time.Hour)) }

func (f *fixture) publisher(t *testing.T, store Store) *Publisher {
	t.Helper()
	p, err := New(Config{Store: store, CA: f.ca, Path: filepath.Join(f.dir, "crl.pem"), Now: f.clock.Now,
		Publish: func(b []byte) error { f.mu.Lock(); f.published = append(f.published, b); f.mu.Unlock(); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// leaf signs a real certificate for device id, valid for lifetime from t0, records it
// committed and writes it to dir/id.pem.
func (f *fixture) leaf(t *testing.T, id string, lifetime time.Duration) *x509.Certificate {
	t.Helper()
	key := testkit.NewKey(t)
	csr := testkit.NewCSR(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: id}})
	cert, err := f.ca.SignLeaf(csr, id, policy.Profile{NotBefore: t0.Add(-time.Minute), NotAfter: t0.Add(lifetime)})
	if err != nil {
		t.Fatal(err)
	}
	f.record(t, id, cert)
	return cert
}

func (f *fixture) record(t *testing.T, id string, cert *x509.Certificate) {
	t.Helper()
	p := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	if err := os.WriteFile(filepath.Join(f.dir, id+".pem"), p, 0o600); err != nil {
		t.Fatal(err)
	}
	serial := cert.SerialNumber.Text(16)
	err := f.store.RecordIssuance(t.Context(), inventory.Issuance{
		Device: inventory.Device{ID: id, Mechanism: inventory.MechanismAgent},
		Cert: inventory.Certificate{Serial: serial, NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, Issuer: cert.Issuer.String(),
			PEM: string(p), CreatedAt: t0},
		Attempt: inventory.Attempt{RequestID: "r-" + id, StartedAt: t0, FinishedAt: t0},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Commit(t.Context(), id, "r-"+id, serial, false, t0); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) revoke(t *testing.T, cert *x509.Certificate, reason protocol.RevocationReason) {
	t.Helper()
	if _, err := f.store.RevokeCertificate(t.Context(), "", cert.SerialNumber.Text(16), inventory.Revocation{Reason: reason}, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) writeCAs(t *testing.T) (root, inter string) {
	t.Helper()
	root, inter = filepath.Join(f.dir, "root.pem"), filepath.Join(f.dir, "inter.pem")
	for path, c := range map[string]*x509.Certificate{root: f.ca.Root(), inter: f.ca.Intermediate()} {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return root, inter
}

// TestCRLWithOpenSSL is issue 12's proof: openssl reads the hub's CRL with its reason codes
// and only the hub's own unexpired serials, and refuses a revoked leaf with -crl_check.
func TestCRLWithOpenSSL(t *testing.T) {
	openssl := testkit.RequirePeer(t, "openssl")
	f := newFixture(t)
	compromised := f.leaf(t, "cam", 30*24*time.Hour)
	superseded := f.leaf(t, "plug", 30*24*time.Hour)
	good := f.leaf(t, "lamp", 30*24*time.Hour)
	expired := f.leaf(t, "old", 2*time.Hour)
	f.revoke(t, compromised, protocol.RevokeKeyCompromise)
	f.revoke(t, superseded, protocol.RevokeSuperseded)
	f.revoke(t, expired, protocol.RevokeCessationOfOperation)
	// An imported device's certificate from its vendor's CA, revoked in the inventory: not
	// the hub's serial to list.
	vendor := testkit.NewCA(t, "Vendor CA")
	foreign := vendor.Client(t, "tv").Cert
	f.record(t, "tv", foreign)
	f.revoke(t, foreign, protocol.RevokeKeyCompromise)

	f.clock.Set(t0.Add(3 * time.Hour)) // "old" has expired
	p := f.publisher(t, f.store)
	if _, err := p.Regenerate(t.Context()); err != nil {
		t.Fatalf("Regenerate() = %v", err)
	}
	crlPath := filepath.Join(f.dir, "crl.pem")
	out, err := exec.Command(openssl, "crl", "-in", crlPath, "-noout", "-text").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl crl: %v\n%s", err, out)
	}
	text := strings.ToUpper(string(out))
	for _, want := range []string{"KEY COMPROMISE", "SUPERSEDED", "X509V3 CRL NUMBER", "NEXT UPDATE",
		upperSerial(compromised), upperSerial(superseded)} {
		if !strings.Contains(text, want) {
			t.Errorf("openssl crl -text lacks %q:\n%s", want, out)
		}
	}
	for name, c := range map[string]*x509.Certificate{"the valid leaf": good, "the expired leaf": expired, "the foreign leaf": foreign} {
		if strings.Contains(text, upperSerial(c)) {
			t.Errorf("openssl crl -text lists %s (%s):\n%s", name, upperSerial(c), out)
		}
	}
	if n := strings.Count(text, "SERIAL NUMBER:"); n != 2 {
		t.Errorf("openssl crl -text lists %d serials, want 2:\n%s", n, out)
	}

	root, inter := f.writeCAs(t)
	// -attime: openssl's clock is the real one; the fixture's CRL is of its own clock.
	at := f.clock.Now().Add(time.Minute).Unix()
	verifyAt := func(id string) (string, error) {
		out, err := exec.Command(openssl, "verify", "-attime", big.NewInt(at).String(), "-crl_check", "-CAfile", root, "-untrusted", inter,
			"-CRLfile", crlPath, filepath.Join(f.dir, id+".pem")).CombinedOutput()
		return string(out), err
	}
	if out, err := verifyAt("cam"); err == nil || !strings.Contains(out, "revoked") {
		t.Errorf("openssl verify -crl_check of the revoked leaf = %v:\n%s\nwant a refusal saying revoked", err, out)
	}
	if out, err := verifyAt("lamp"); err != nil {
		t.Errorf("openssl verify -crl_check of the valid leaf = %v:\n%s", err, out)
	}
}

func upperSerial(c *x509.Certificate) string {
	// openssl prints serials as uppercase hex with an even number of digits.
	s := strings.ToUpper(c.SerialNumber.Text(16))
	if len(s)%2 == 1 {
		s = "0" + s
	}
	return "SERIAL NUMBER: " + s
}

// failingStore is the real inventory with NextCRLNumber failing while fail is set.
type failingStore struct {
	*inventory.Store
	fail bool
}

func (s *failingStore) NextCRLNumber(ctx context.Context) (*big.Int, error) {
	if s.fail {
		return nil, errors.New("disk full")
	}
	return s.Store.NextCRLNumber(ctx)
}

// TestCRLNumbersOnlyGrow: a CRL whose number cannot be reserved is not made (the last one
// stays current), and a CRL that fails after its number was reserved burns it: the next
// CRL's number is higher than any used before.
func TestCRLNumbersOnlyGrow(t *testing.T) {
	f := newFixture(t)
	fs := &failingStore{Store: f.store}
	p := f.publisher(t, fs)
	first, err := p.Regenerate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	fs.fail = true
	if _, err := p.Regenerate(t.Context()); err == nil {
		t.Fatal("Regenerate() with the number's write failing = nil, want an error")
	}
	if got := p.current.Number; got.Cmp(first.Number) != 0 {
		t.Errorf("current CRL number after a failure = %v, want %v still", got, first.Number)
	}
	fs.fail = false
	// A second publisher whose file cannot be written reserves a number and fails.
	broken, err := New(Config{Store: f.store, CA: f.ca, Path: filepath.Join(f.dir, "missing", "dir", "crl.pem"), Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := broken.Regenerate(t.Context()); err == nil {
		t.Fatal("Regenerate() into a missing directory = nil, want an error")
	}
	next, err := p.Regenerate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := new(big.Int).Add(first.Number, big.NewInt(2)); next.Number.Cmp(want) != 0 {
		t.Errorf("CRL number after a burnt one = %v, want %v (first %v, one burnt)", next.Number, want, first.Number)
	}
}

// TestNextUpdateAcrossRestart: a hub that starts while its CRL on disk is current keeps it
// (same number) and schedules the next one before its nextUpdate; one that starts past the
// half of its validity, or with revocations the CRL lacks, makes a new one.
func TestNextUpdateAcrossRestart(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	first := f.publisher(t, f.store)
	if next := first.start(ctx); next != DefaultValidity/2 {
		t.Errorf("first start: next CRL in %v, want %v", next, DefaultValidity/2)
	}
	n1 := first.current.Number

	f.clock.Set(t0.Add(24 * time.Hour)) // restart a day later
	second := f.publisher(t, f.store)
	next := second.start(ctx)
	if got := second.current.Number; got.Cmp(n1) != 0 {
		t.Errorf("restart inside the validity: CRL number %v, want the one on disk %v", got, n1)
	}
	if want := DefaultValidity/2 - 24*time.Hour; next != want {
		t.Errorf("restart inside the validity: next CRL in %v, want %v (before nextUpdate %v)", next, want, second.current.NextUpdate)
	}
	if len(f.published) != 2 || string(f.published[1]) != string(f.published[0]) {
		t.Errorf("restart did not publish the CRL on disk again (%d published)", len(f.published))
	}

	// A revocation the CRL on disk lacks (its regeneration failed before the stop).
	cam := f.leaf(t, "cam", 30*24*time.Hour)
	f.revoke(t, cam, protocol.RevokeKeyCompromise)
	third := f.publisher(t, f.store)
	third.start(ctx)
	if got := third.current.Number; got.Cmp(n1) <= 0 || len(third.current.RevokedCertificateEntries) != 1 {
		t.Errorf("restart with a new revocation: CRL number %v with %d entries, want above %v with 1", got, len(third.current.RevokedCertificateEntries), n1)
	}

	f.clock.Set(t0.Add(DefaultValidity/2 + 25*time.Hour)) // past the half: a new one
	fourth := f.publisher(t, f.store)
	fourth.start(ctx)
	if got := fourth.current.Number; got.Cmp(third.current.Number) <= 0 || !fourth.current.ThisUpdate.Equal(f.clock.Now()) {
		t.Errorf("restart past the half of the validity: CRL number %v of %v, want a new one", got, fourth.current.ThisUpdate)
	}
}

func TestServeHTTP(t *testing.T) {
	f := newFixture(t)
	p := f.publisher(t, f.store)
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/crl", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("GET /crl before the first CRL = %d, want 503", rec.Code)
	}
	l, err := p.Regenerate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path, ctype string
		parse       func([]byte) error
	}{
		{"/crl", "application/pkix-crl", func(b []byte) error { _, err := x509.ParseRevocationList(b); return err }},
		{"/crl.pem", "application/x-pem-file", func(b []byte) error { _, err := parse(b); return err }},
	} {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tt.path, nil))
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != tt.ctype {
			t.Errorf("GET %s = %d %q, want 200 %q", tt.path, rec.Code, rec.Header().Get("Content-Type"), tt.ctype)
		}
		if err := tt.parse(rec.Body.Bytes()); err != nil {
			t.Errorf("GET %s: body does not parse: %v", tt.path, err)
		}
		if got := rec.Header().Get("Expires"); got != l.NextUpdate.UTC().Format(http.TimeFormat) {
			t.Errorf("GET %s: Expires %q, want the nextUpdate %v", tt.path, got, l.NextUpdate)
		}
	}
}
