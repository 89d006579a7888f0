package device

import (
	"crypto/x509"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"

	"github.com/hearth-pki/hearth/agent/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

func TestParseCRL(t *testing.T) {
	ca := testkit.NewCA(t, "Test")
	other := testkit.NewCA(t, "Other")
	pinned := []*x509.Certificate{ca.Intermediate, ca.Root}
	tests := []struct {
		name string
		raw  []byte
		ok   bool
	}{
		{"signed by the pinned intermediate", ca.CRL(t, 1, big.NewInt(7)), true},
		{"signed by another CA", other.CRL(t, 1, big.NewInt(7)), false},
		{"a certificate, not a CRL", testkit.PEM(ca.Root), false},
		{"junk", []byte("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"), false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := parseCRL(tt.raw, pinned)
			if (err == nil) != tt.ok {
				t.Fatalf("parseCRL() = %v, want ok %v", err, tt.ok)
			}
			if !tt.ok {
				return
			}
			if r, ok := revokedIn(l, "7"); !ok || r.Reason != protocol.RevokeKeyCompromise {
				t.Errorf("revokedIn(7) = %+v, %v, want keyCompromise", r, ok)
			}
			if _, ok := revokedIn(l, "8"); ok {
				t.Error("revokedIn(8) = true for a serial the CRL does not list")
			}
		})
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

// FuzzParseCRL: junk on the CRL topic never panics, and whatever parseCRL accepts was signed
// by the pinned intermediate.
func FuzzParseCRL(f *testing.F) {
	ca := testkit.NewCA(f, "Fuzz")
	pinned := []*x509.Certificate{ca.Intermediate, ca.Root}
	f.Add(ca.CRL(f, 1, big.NewInt(7)))
	f.Add(testkit.NewCA(f, "Other").CRL(f, 1))
	f.Add([]byte("-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		l, err := parseCRL(raw, pinned)
		if err != nil {
			return
		}
		if err := l.CheckSignatureFrom(ca.Intermediate); err != nil {
			t.Errorf("parseCRL accepted a CRL the intermediate did not sign: %v", err)
		}
		revokedIn(l, "7")
	})
}
