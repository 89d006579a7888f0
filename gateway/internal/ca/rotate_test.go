package ca

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
)

// signTestLeaf signs a leaf for device id with c and returns it.
func signTestLeaf(t *testing.T, c *CA, id string, now time.Time) *x509.Certificate {
	t.Helper()
	csr := testkit.NewCSR(t, testkit.NewKey(t), &x509.CertificateRequest{})
	leaf, err := c.SignLeaf(csr, id, leafAt(now))
	if err != nil {
		t.Fatalf("SignLeaf(%q) = %v", id, err)
	}
	return leaf
}

// pemCerts decodes every CERTIFICATE block of b.
func pemCerts(t *testing.T, b []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatalf("bundle certificate: %v", err)
		}
		out = append(out, c)
	}
}

func TestRotateIntermediate(t *testing.T) {
	c, dir := newTestCA(t)
	old := c.Intermediate()
	oldLeaf := signTestLeaf(t, c, "cam-1", testNow)
	now := testNow.Add(24 * time.Hour)

	if _, err := c.RotateIntermediate(dir, []byte("wrong"), now); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("RotateIntermediate(wrong passphrase) = %v, want ErrWrongPassphrase", err)
	}
	if !c.Intermediate().Equal(old) || c.Previous() != nil {
		t.Fatal("a refused rotation changed the intermediate in force")
	}

	inter, err := c.RotateIntermediate(dir, testPass, now)
	if err != nil {
		t.Fatalf("RotateIntermediate = %v", err)
	}
	if !c.Intermediate().Equal(inter) || !c.Previous().Equal(old) {
		t.Fatalf("after the rotation: in force %q, previous %v; want the new one and the old one", c.Intermediate().Subject, c.Previous())
	}
	if inter.Subject.String() == old.Subject.String() {
		t.Errorf("new intermediate subject %q = the old one's: certificates of the two could not be told apart", inter.Subject)
	}
	if err := inter.CheckSignatureFrom(c.Root()); err != nil || !inter.IsCA || !inter.MaxPathLenZero {
		t.Errorf("new intermediate: signed by root %v, CA %v, pathlen 0 %v", err, inter.IsCA, inter.MaxPathLenZero)
	}
	newLeaf := signTestLeaf(t, c, "cam-2", now)
	if err := newLeaf.CheckSignatureFrom(inter); err != nil {
		t.Errorf("a leaf signed after the rotation is not the new intermediate's: %v", err)
	}
	for name, leaf := range map[string]*x509.Certificate{"old": oldLeaf, "new": newLeaf} {
		if err := c.Verify(leaf, now); err != nil {
			t.Errorf("Verify(%s leaf) during the rotation = %v", name, err)
		}
	}
	bundle := pemCerts(t, c.ChainPEM())
	if len(bundle) != 3 || !bundle[0].Equal(inter) || !bundle[1].Equal(old) || !bundle[2].Equal(c.Root()) {
		t.Errorf("ChainPEM during the rotation holds %d certificates, want new, previous, root", len(bundle))
	}
	if _, err := c.RotateIntermediate(dir, testPass, now); !errors.Is(err, ErrRotating) {
		t.Errorf("a second RotateIntermediate before retiring = %v, want ErrRotating", err)
	}
	raw, err := c.PreviousCRL([]Revoked{{Serial: oldLeaf.SerialNumber, At: now, Reason: 1}}, big.NewInt(9), now, time.Hour)
	if err != nil {
		t.Fatalf("PreviousCRL = %v", err)
	}
	blk, _ := pem.Decode(raw)
	l, err := x509.ParseRevocationList(blk.Bytes)
	if err != nil || l.CheckSignatureFrom(old) != nil {
		t.Errorf("PreviousCRL is not signed by the previous intermediate: %v", err)
	}

	loaded, err := Load(dir, testPass)
	if err != nil {
		t.Fatalf("Load after the rotation = %v", err)
	}
	if !loaded.Intermediate().Equal(inter) || loaded.Previous() == nil || !loaded.Previous().Equal(old) {
		t.Fatal("Load after the rotation does not hold the new intermediate in force and the old as previous")
	}

	if got, err := c.RetirePrevious(dir); err != nil || !got.Equal(old) {
		t.Fatalf("RetirePrevious = %v, %v; want the old intermediate", got, err)
	}
	if c.Previous() != nil || len(pemCerts(t, c.ChainPEM())) != 2 {
		t.Errorf("after RetirePrevious the bundle still names the old intermediate")
	}
	if _, err := c.PreviousCRL(nil, big.NewInt(10), now, time.Hour); !errors.Is(err, ErrNoRotation) {
		t.Errorf("PreviousCRL after retiring = %v, want ErrNoRotation", err)
	}
	if _, err := c.RetirePrevious(dir); !errors.Is(err, ErrNoRotation) {
		t.Errorf("RetirePrevious twice = %v, want ErrNoRotation", err)
	}
	loaded, err = Load(dir, testPass)
	if err != nil || loaded.Previous() != nil || !loaded.Intermediate().Equal(inter) {
		t.Fatalf("Load after retiring = %v (previous %v)", err, loaded.Previous())
	}
	if _, err := c.RotateIntermediate(dir, testPass, now.Add(time.Hour)); err != nil {
		t.Errorf("a second rotation after retiring = %v", err)
	}
}

// TestRotateCrashAtEveryStep stops a rotation after each durable step, as a crash would, and
// loads the directory as the restarted hub does: before the commit the old intermediate is
// in force and nothing of the rotation is trusted; from the commit on the new one is, with
// its own key, and the old one is the previous. Never a mix.
func TestRotateCrashAtEveryStep(t *testing.T) {
	errCrash := errors.New("crash")
	tests := []struct {
		at      rotationStep
		rotated bool
	}{
		{stepStaged, false},
		{stepArchived, false},
		{stepCommit, true},
		{stepKeyed, true},
	}
	for _, tt := range tests {
		t.Run(string(tt.at), func(t *testing.T) {
			c, dir := newTestCA(t)
			old := c.Intermediate()
			now := testNow.Add(time.Hour)
			_, err := c.rotate(dir, testPass, now, func(s rotationStep) error {
				if s == tt.at {
					return errCrash
				}
				return nil
			})
			if !errors.Is(err, errCrash) {
				t.Fatalf("rotate stopped at %s = %v", tt.at, err)
			}
			got, err := Load(dir, testPass)
			if err != nil {
				t.Fatalf("Load after a crash at %s = %v", tt.at, err)
			}
			if _, _, err := ReadCertificates(dir); err != nil {
				t.Fatalf("ReadCertificates after a crash at %s = %v", tt.at, err)
			}
			if rotated := !got.Intermediate().Equal(old); rotated != tt.rotated {
				t.Fatalf("after a crash at %s the new intermediate is in force: %v, want %v", tt.at, rotated, tt.rotated)
			}
			leaf := signTestLeaf(t, got, "cam-1", now)
			if err := leaf.CheckSignatureFrom(got.Intermediate()); err != nil {
				t.Fatalf("after a crash at %s the key in force does not match the intermediate: %v", tt.at, err)
			}
			if tt.rotated {
				if got.Previous() == nil || !got.Previous().Equal(old) {
					t.Fatalf("after a crash at %s the old intermediate is not the previous", tt.at)
				}
				return
			}
			if got.Previous() != nil {
				t.Fatalf("after a crash at %s before the commit a previous intermediate is trusted", tt.at)
			}
			// The rotation can simply be run again.
			if _, err := got.RotateIntermediate(dir, testPass, now); err != nil {
				t.Fatalf("RotateIntermediate after a crash at %s = %v", tt.at, err)
			}
			if again, err := Load(dir, testPass); err != nil || !again.Previous().Equal(old) {
				t.Fatalf("Load after the retried rotation = %v", err)
			}
		})
	}
}

func TestLoadRefusesAMismatchedPrevious(t *testing.T) {
	c, dir := newTestCA(t)
	if _, err := c.RotateIntermediate(dir, testPass, testNow); err != nil {
		t.Fatal(err)
	}
	// previous.key replaced by the key in force: it no longer matches previous.pem.
	data, err := os.ReadFile(filepath.Join(dir, interKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, prevKeyFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir, testPass); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Load with a previous.key of another intermediate = %v, want ErrCorrupt", err)
	}
}

func TestRootCRL(t *testing.T) {
	c, dir := newTestCA(t)
	old := c.Intermediate()
	if _, err := c.RotateIntermediate(dir, testPass, testNow); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RootCRL(dir, []byte("wrong"), nil, big.NewInt(1), testNow, time.Hour); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("RootCRL(wrong passphrase) = %v, want ErrWrongPassphrase", err)
	}
	raw, err := c.RootCRL(dir, testPass, []Revoked{{Serial: old.SerialNumber, At: testNow, Reason: 1}}, big.NewInt(1), testNow, time.Hour)
	if err != nil {
		t.Fatalf("RootCRL = %v", err)
	}
	blk, _ := pem.Decode(raw)
	l, err := x509.ParseRevocationList(blk.Bytes)
	if err != nil || l.CheckSignatureFrom(c.Root()) != nil {
		t.Fatalf("RootCRL is not signed by the root: %v", err)
	}
	if len(l.RevokedCertificateEntries) != 1 || l.RevokedCertificateEntries[0].SerialNumber.Cmp(old.SerialNumber) != 0 ||
		l.RevokedCertificateEntries[0].ReasonCode != 1 {
		t.Errorf("RootCRL entries = %+v, want the old intermediate with keyCompromise", l.RevokedCertificateEntries)
	}
}

func TestIssues(t *testing.T) {
	c, dir := newTestCA(t)
	old := c.Intermediate().Subject.String()
	if !c.Issues(old) || c.Issues("CN=other") {
		t.Fatalf("Issues before a rotation: %v for the intermediate, %v for another", c.Issues(old), c.Issues("CN=other"))
	}
	inter, err := c.RotateIntermediate(dir, testPass, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Issues(old) || !c.Issues(inter.Subject.String()) {
		t.Error("during a rotation Issues does not hold both intermediates")
	}
	if _, err := c.RetirePrevious(dir); err != nil {
		t.Fatal(err)
	}
	if c.Issues(old) || !c.Issues(inter.Subject.String()) {
		t.Error("after retiring Issues still holds the old intermediate")
	}
}
