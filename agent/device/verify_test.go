package device

import (
	"crypto"
	"crypto/x509"
	"errors"
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
