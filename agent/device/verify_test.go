package device

import (
	"crypto"
	"crypto/x509"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/keystore"
	"github.com/hearth-pki/hearth/agent/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

func TestVerifyIssued(t *testing.T) {
	ca := testkit.NewCA(t, "Test")
	rogue := testkit.NewCA(t, "Rogue")
	pinned := []*x509.Certificate{ca.Intermediate, ca.Root}
	key, _ := keystore.GenerateKey(protocol.KeyP256)
	otherKey, _ := keystore.GenerateKey(protocol.KeyP256)
	now := time.Now()
	good := ca.Issue(t, key.Public(), "dev-1", now.Add(-time.Minute), now.Add(time.Hour))
	for _, tc := range []struct {
		name  string
		chain []byte
		at    time.Time
		ok    bool
	}{
		{"good", testkit.PEM(good, ca.Intermediate), now, true},
		{"leaf only, intermediate pinned", testkit.PEM(good), now, true},
		{"other CA", testkit.PEM(rogue.Issue(t, key.Public(), "dev-1", now, now.Add(time.Hour)), rogue.Intermediate), now, false},
		{"other key", testkit.PEM(ca.Issue(t, otherKey.Public(), "dev-1", now, now.Add(time.Hour)), ca.Intermediate), now, false},
		{"other device", testkit.PEM(ca.Issue(t, key.Public(), "dev-2", now, now.Add(time.Hour)), ca.Intermediate), now, false},
		{"expired at the hub's time", testkit.PEM(good, ca.Intermediate), now.Add(2 * time.Hour), false},
		{"not PEM", []byte("junk"), now, false},
		{"trailing junk", append(testkit.PEM(good, ca.Intermediate), "junk"...), now, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chain, err := verifyIssued(string(tc.chain), key, "dev-1", pinned, tc.at)
			if tc.ok != (err == nil) {
				t.Fatalf("verifyIssued(%s) = %v, want ok %t", tc.name, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrBadChain) {
				t.Errorf("verifyIssued(%s) = %v, want ErrBadChain", tc.name, err)
			}
			if err == nil && (len(chain) != 2 || !chain[0].Equal(good) || !chain[1].Equal(ca.Intermediate)) {
				t.Errorf("verifyIssued(%s) returned %d certificates, want leaf and intermediate", tc.name, len(chain))
			}
		})
	}
}

// FuzzVerifyIssued feeds arbitrary chains from "the hub": never a panic, and nothing accepted
// that is not for the agent's key.
func FuzzVerifyIssued(f *testing.F) {
	ca := testkit.NewCA(f, "Test")
	key, _ := keystore.GenerateKey(protocol.KeyP256)
	now := time.Now()
	f.Add(testkit.PEM(ca.Issue(f, key.Public(), "dev-1", now.Add(-time.Minute), now.Add(time.Hour)), ca.Intermediate))
	f.Add(ca.ChainPEM())
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	pinned := []*x509.Certificate{ca.Intermediate, ca.Root}
	f.Fuzz(func(t *testing.T, chain []byte) {
		got, err := verifyIssued(string(chain), key, "dev-1", pinned, now)
		if err != nil {
			return
		}
		if !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(got[0].PublicKey) {
			t.Errorf("verifyIssued accepted a chain for another key")
		}
	})
}

// TestNameMismatch checks that a hub certificate without the dialled name says which names
// it has and how to add one (issue 16).
func TestNameMismatch(t *testing.T) {
	ca := testkit.NewCA(t, "Test")
	leaf, _ := ca.ServerCert(t, "hub.local", "192.168.1.10")
	_, err := verifyChain([]*x509.Certificate{leaf, ca.Intermediate}, []*x509.Certificate{ca.Root}, time.Now(),
		x509.ExtKeyUsageServerAuth, "10.0.0.7")
	var nm *NameMismatchError
	if !errors.As(err, &nm) {
		t.Fatalf("verifyChain for a name the certificate lacks = %v, want a *NameMismatchError", err)
	}
	if nm.Host != "10.0.0.7" || !slices.Contains(nm.Names, "hub.local") || !slices.Contains(nm.Names, "192.168.1.10") {
		t.Errorf("NameMismatchError = %+v, want host 10.0.0.7 and names hub.local, 192.168.1.10", nm)
	}
	for _, want := range []string{"hub.local, 192.168.1.10", "--hostnames hub.local,192.168.1.10,10.0.0.7", "hearth-gateway serve"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
