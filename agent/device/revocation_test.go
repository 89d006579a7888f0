package device

import (
	"bytes"
	"crypto/x509"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

func TestParseCRLs(t *testing.T) {
	ca := testkit.NewCA(t, "Test")
	other := testkit.NewCA(t, "Other")
	pinned := []*x509.Certificate{ca.Intermediate, ca.Root}
	tests := []struct {
		name    string
		raw     []byte
		took    int  // CRLs returned
		partial bool // an error naming a CRL left out
		fails   bool // nothing returned, an error
	}{
		{"signed by the pinned intermediate", ca.CRL(t, 1, big.NewInt(7)), 1, false, false},
		{"signed by the pinned root", ca.RootCRL(t, 1, big.NewInt(7)), 1, false, false},
		{"intermediate's and root's", cat(ca.CRL(t, 1, big.NewInt(7)), ca.RootCRL(t, 2)), 2, false, false},
		{"signed by another CA", other.CRL(t, 1, big.NewInt(7)), 0, true, false},
		{"a forged root", testkit.Impostor(t, ca).RootCRL(t, 1, big.NewInt(7)), 0, true, false},
		{"one good, one forged", cat(ca.CRL(t, 1, big.NewInt(7)), other.CRL(t, 2)), 1, true, false},
		{"a certificate, not a CRL", testkit.PEM(ca.Root), 0, false, true},
		{"a CRL then a certificate", cat(ca.CRL(t, 1), testkit.PEM(ca.Root)), 0, false, true},
		{"junk", []byte("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"), 0, true, false},
		{"empty", nil, 0, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ls, err := parseCRLs(tt.raw, pinned)
			if len(ls) != tt.took || (err != nil) != (tt.partial || tt.fails) {
				t.Fatalf("parseCRLs() = %d CRLs, %v; want %d, error %v", len(ls), err, tt.took, tt.partial || tt.fails)
			}
			for _, l := range ls {
				if signerOf(l, pinned) == nil {
					t.Errorf("parseCRLs() took a CRL of %s no pinned certificate signed", l.Issuer)
				}
			}
		})
	}
}

func cat(b ...[]byte) []byte { return bytes.Join(b, nil) }

// parsed returns the CRLs of raw, failing the test on any error.
func parsed(t *testing.T, raw []byte, signers []*x509.Certificate) []*x509.RevocationList {
	t.Helper()
	ls, err := parseCRLs(raw, signers)
	if err != nil {
		t.Fatalf("parseCRLs() = %v", err)
	}
	return ls
}

// TestMergeCRLs: per issuer, only a higher CRL number replaces the one held; a stale one, a
// rolled-back one, one without a number and one signed by an intermediate the root's CRL
// revoked are refused and change nothing.
func TestMergeCRLs(t *testing.T) {
	ca := testkit.NewCA(t, "Test")
	next := ca.Rotated(t, "Test Intermediate CA 2")
	signers := []*x509.Certificate{next.Intermediate, ca.Intermediate, ca.Root}
	leaf := ca.Issue(t, testkit.NewKey(t).Public(), "dev-1", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	held := func(raw ...[]byte) *crlSet {
		s, _, err := (*crlSet)(nil).merge(parsed(t, cat(raw...), signers), signers, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	base := held(ca.CRL(t, 5), ca.RootCRL(t, 6))
	tests := []struct {
		name    string
		s       *crlSet
		in      []byte
		changed bool
		refused bool
		revoked bool // leaf revoked after
		inter   bool // ca.Intermediate revoked after
	}{
		{"first CRL", nil, ca.CRL(t, 1, leaf.SerialNumber), true, false, true, false},
		{"newer", base, ca.CRL(t, 7, leaf.SerialNumber), true, false, true, false},
		{"the same number again", base, ca.CRL(t, 5, leaf.SerialNumber), false, false, false, false},
		{"rolled back", base, ca.CRL(t, 4, leaf.SerialNumber), false, true, false, false},
		{"stale", base, ca.CRLUntil(t, 9, time.Now().Add(-time.Minute), leaf.SerialNumber), false, true, false, false},
		{"the root's, newer", base, ca.RootCRL(t, 8, ca.Intermediate.SerialNumber), true, false, false, true},
		{"the root's, rolled back", base, ca.RootCRL(t, 2, ca.Intermediate.SerialNumber), false, true, false, false},
		{"another issuer's is kept beside", base, next.CRL(t, 3, leaf.SerialNumber), true, false, false, false},
		{"signed by a revoked intermediate", held(ca.RootCRL(t, 6, ca.Intermediate.SerialNumber)), ca.CRL(t, 9, leaf.SerialNumber), false, true, false, true},
		{"one message: the root's revokes the intermediate that signed the other", nil,
			cat(ca.CRL(t, 9, leaf.SerialNumber), ca.RootCRL(t, 10, ca.Intermediate.SerialNumber)), true, true, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed, err := tt.s.merge(parsed(t, tt.in, signers), signers, time.Now())
			if changed != tt.changed || (err != nil) != tt.refused {
				t.Fatalf("merge() = changed %v, %v; want changed %v, refused %v", changed, err, tt.changed, tt.refused)
			}
			if _, ok := got.revoked(leaf); ok != tt.revoked {
				t.Errorf("revoked(leaf) = %v, want %v", ok, tt.revoked)
			}
			if _, ok := got.revoked(ca.Intermediate); ok != tt.inter {
				t.Errorf("revoked(intermediate) = %v, want %v", ok, tt.inter)
			}
			if !changed && tt.s != nil && !bytes.Equal(got.encode(), tt.s.encode()) {
				t.Error("merge() changed the set without saying so")
			}
		})
	}
	// A serial of the leaf's issuer listed by another issuer's CRL does not revoke the leaf.
	s := held(next.CRL(t, 1, leaf.SerialNumber))
	if _, ok := s.revoked(leaf); ok {
		t.Error("revoked(leaf) = true from the CRL of an intermediate that did not issue it")
	}
}

// TestRevokedByCRL: the agent takes the hub's retained CRL, keeps it, and once it lists the
// agent's certificate, status says revoked; a CRL listing the hub's own broker certificate
// makes the agent refuse the hub.
func TestRevokedByCRL(t *testing.T) {
	e := newEnv(t, true)
	cfg := e.config("meter-1")
	e.enroll(cfg)
	serial := onDisk(t, cfg.Dir).Leaf().SerialNumber
	topics := protocol.Topics{}

	// A CRL of another device first: not revoked.
	e.hub.PublishRaw(topics.CRL(), true, e.ca.CRL(t, 1, big.NewInt(12345)))
	r := e.start(cfg)
	if ev := r.waitFor(t, EventCRLUpdated); ev.Detail != "" {
		t.Errorf("CRL without this device: event detail %q, want none", ev.Detail)
	}
	if st, err := ReadStatus(Config{Dir: cfg.Dir}); err != nil || st.Revoked || !st.ChainOK {
		t.Errorf("ReadStatus() before the revocation = revoked %v chain %v, %v", st.Revoked, st.ChainOK, err)
	}
	// A forged CRL (another CA) listing this device is ignored; the hub's is taken.
	e.hub.PublishRaw(topics.CRL(), true, testkit.NewCA(t, "Forger").CRL(t, 99, serial))
	e.hub.PublishRaw(topics.CRL(), true, e.ca.CRL(t, 2, serial))
	if ev := r.waitFor(t, EventCRLUpdated); ev.Detail != "revoked" {
		t.Errorf("CRL listing this device: event detail %q, want revoked", ev.Detail)
	}
	st, err := ReadStatus(Config{Dir: cfg.Dir})
	if err != nil || !st.Revoked || st.RevocationReason != protocol.RevokeKeyCompromise || st.RevokedAt.IsZero() {
		t.Errorf("ReadStatus() after the revocation = revoked %v (%s at %v), %v; want revoked keyCompromise", st.Revoked, st.RevocationReason, st.RevokedAt, err)
	}
	r.stop(t)

	// The hub's CRL lists its own broker certificate: the agent refuses that hub.
	if err := os.WriteFile(filepath.Join(cfg.Dir, crlName), e.ca.CRL(t, 3, e.broker.Cert.SerialNumber), 0o600); err != nil {
		t.Fatal(err)
	}
	r = e.start(cfg)
	ev := r.waitFor(t, EventUnreachable)
	if !errors.Is(ev.Err, ErrHubRevoked) {
		t.Errorf("connecting to a hub whose certificate is revoked: %v, want ErrHubRevoked", ev.Err)
	}
	r.stop(t)
}

// FuzzParseCRLs: junk on the CRL topic never panics, whatever parseCRLs accepts was
// signed by a pinned certificate, and what the agent keeps (crl.pem) reads back the same.
func FuzzParseCRLs(f *testing.F) {
	ca := testkit.NewCA(f, "Fuzz")
	pinned := []*x509.Certificate{ca.Intermediate, ca.Root}
	f.Add(ca.CRL(f, 1, big.NewInt(7)))
	f.Add(cat(ca.CRL(f, 2, big.NewInt(7)), ca.RootCRL(f, 3, ca.Intermediate.SerialNumber)))
	f.Add(testkit.NewCA(f, "Other").CRL(f, 1))
	f.Add([]byte("-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ls, _ := parseCRLs(raw, pinned)
		for _, l := range ls {
			if signerOf(l, pinned) == nil {
				t.Errorf("parseCRLs accepted a CRL of %s no pinned certificate signed", l.Issuer)
			}
		}
		s, _, _ := (*crlSet)(nil).merge(ls, pinned, time.Time{})
		again, err := parseCRLs(s.encode(), pinned)
		if len(s.lists) > 0 && err != nil {
			t.Fatalf("parseCRLs(encode()) = %v", err)
		}
		s2, _, _ := (*crlSet)(nil).merge(again, pinned, time.Time{})
		if !bytes.Equal(s.encode(), s2.encode()) {
			t.Error("crl.pem does not read back as written")
		}
		s.revoked(ca.Intermediate)
	})
}

// TestRevokedIntermediate: the root's CRL on the CRL topic, listing the intermediate of the
// hub's chain (an intermediate revoked after a compromise), makes the agent refuse that hub
// from then on, across a restart, and status says the certificate's issuer is revoked; a
// root CRL the pinned root did not sign changes nothing.
func TestRevokedIntermediate(t *testing.T) {
	e := newEnv(t, true)
	cfg := e.config("meter-1")
	e.enroll(cfg)
	topics := protocol.Topics{}
	r := e.start(cfg)
	r.waitFor(t, EventConnected)

	e.hub.PublishRaw(topics.CRL(), true, cat(e.ca.CRL(t, 1), testkit.Impostor(t, e.ca).RootCRL(t, 2, e.ca.Intermediate.SerialNumber)))
	if ev := r.waitFor(t, EventCRLUpdated); ev.Detail != "" {
		t.Errorf("a forged root CRL: event detail %q, want none", ev.Detail)
	}
	if st, err := ReadStatus(Config{Dir: cfg.Dir}); err != nil || st.IssuerRevoked != "" {
		t.Fatalf("ReadStatus() after a forged root CRL = issuer revoked %+v, %v; want not", st.IssuerRevoked, err)
	}
	e.hub.PublishRaw(topics.CRL(), true, cat(e.ca.CRL(t, 3), e.ca.RootCRL(t, 4, e.ca.Intermediate.SerialNumber)))
	if ev := r.waitFor(t, EventCRLUpdated); ev.Detail != "issuer_revoked" {
		t.Errorf("the root's CRL listing the intermediate: event detail %q, want issuer_revoked", ev.Detail)
	}
	st, err := ReadStatus(Config{Dir: cfg.Dir})
	if err != nil || st.IssuerRevoked != e.ca.Intermediate.Subject.String()+" (keyCompromise)" || st.IssuerRevokedAt.IsZero() {
		t.Fatalf("ReadStatus() = issuer revoked %+v, %v; want the intermediate, keyCompromise", st.IssuerRevoked, err)
	}
	r.stop(t)

	// Restarted, the agent holds the root's CRL from crl.pem and refuses the hub whose chain
	// runs through the revoked intermediate.
	r = e.start(cfg)
	ev := r.waitFor(t, EventUnreachable)
	if !errors.Is(ev.Err, ErrHubRevoked) {
		t.Errorf("connecting to a hub under a revoked intermediate: %v, want ErrHubRevoked", ev.Err)
	}
	r.stop(t)
}

// TestPreviousIntermediateCRL: during an intermediate rotation the CRL topic carries the new
// intermediate's CRL and the previous one's; a device still on the previous intermediate
// reads the one that covers its certificate, even once that intermediate left the pinned
// chain, and status says revoked.
func TestPreviousIntermediateCRL(t *testing.T) {
	e := newEnv(t, true)
	cfg := e.config("meter-1")
	e.enroll(cfg)
	serial := onDisk(t, cfg.Dir).Leaf().SerialNumber
	next := e.ca.Rotated(t, "Test Intermediate CA 2")
	topics := protocol.Topics{}
	r := e.start(cfg)
	r.waitFor(t, EventConnected)

	e.hub.PublishRaw(topics.CA(), true, testkit.PEM(next.Intermediate, e.ca.Root))
	r.waitFor(t, EventCAUpdated)
	e.hub.PublishRaw(topics.CRL(), true, cat(next.CRL(t, 5), e.ca.CRL(t, 6, serial)))
	if ev := r.waitFor(t, EventCRLUpdated); ev.Detail != "revoked" {
		t.Errorf("the previous intermediate's CRL listing this device: event detail %q, want revoked", ev.Detail)
	}
	r.stop(t)
	st, err := ReadStatus(Config{Dir: cfg.Dir})
	if err != nil || !st.Revoked {
		t.Fatalf("ReadStatus() = revoked %v, %v; want revoked", st.Revoked, err)
	}
	raw, err := os.ReadFile(filepath.Join(cfg.Dir, crlName))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(raw, []byte("BEGIN X509 CRL")); n != 2 {
		t.Errorf("crl.pem holds %d CRLs, want both intermediates'", n)
	}
}
