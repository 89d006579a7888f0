package ca

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"
)

func TestRotateRoot(t *testing.T) {
	c, dir := newTestCA(t)
	oldRoot, oldInter := c.Root(), c.Intermediate()
	oldLeaf := signTestLeaf(t, c, "cam-1", testNow)
	now := testNow.Add(24 * time.Hour)
	if _, err := c.RotateRoot(dir, []byte("wrong"), now); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("RotateRoot(wrong passphrase) = %v, want ErrWrongPassphrase", err)
	}
	root, err := c.RotateRoot(dir, testPass, now)
	if err != nil {
		t.Fatalf("RotateRoot = %v", err)
	}
	cross := c.Cross()
	if !c.Root().Equal(root) || !c.PreviousRoot().Equal(oldRoot) || !c.Previous().Equal(oldInter) || cross == nil {
		t.Fatal("after RotateRoot: want the new root in force, the old root and intermediate previous, a cross-certificate")
	}
	if cross.CheckSignatureFrom(oldRoot) != nil || !publicKeyEqual(cross.PublicKey, root.PublicKey) || cross.Subject.String() != root.Subject.String() {
		t.Errorf("cross-certificate does not certify the new root's subject and key under the old root")
	}
	if c.Intermediate().CheckSignatureFrom(root) != nil || c.Fingerprint() == "" {
		t.Errorf("the intermediate in force is not the new root's")
	}
	newLeaf := signTestLeaf(t, c, "cam-2", now)
	if err := c.Verify(oldLeaf, now); err != nil {
		t.Errorf("Verify(old leaf) during the root rotation = %v", err)
	}
	if err := c.Verify(newLeaf, now); err != nil {
		t.Errorf("Verify(new leaf) = %v", err)
	}
	// An agent pinned to the old root alone verifies a new leaf through the cross-certificate.
	if _, err := newLeaf.Verify(x509VerifyOpts(oldRoot, now, c.Intermediate(), cross)); err != nil {
		t.Errorf("new leaf via the cross-certificate to the old root = %v", err)
	}
	bundle := pemCerts(t, c.ChainPEM())
	if len(bundle) != 5 || !bundle[0].Equal(c.Intermediate()) || !bundle[1].Equal(oldInter) || !bundle[2].Equal(cross) ||
		!bundle[3].Equal(root) || !bundle[4].Equal(oldRoot) {
		t.Errorf("ChainPEM during the root rotation holds %d certificates, want new intermediate, old, cross, new root, old root", len(bundle))
	}
	if _, err := c.RotateRoot(dir, testPass, now); !errors.Is(err, ErrRotating) {
		t.Errorf("RotateRoot under way = %v, want ErrRotating", err)
	}
	loaded, err := Load(dir, testPass)
	if err != nil || !loaded.Root().Equal(root) || !loaded.PreviousRoot().Equal(oldRoot) || !loaded.Cross().Equal(cross) || !loaded.Previous().Equal(oldInter) {
		t.Fatalf("Load after RotateRoot = %v; want the same generation", err)
	}
	if err := CheckKeys(dir, testPass); err != nil {
		t.Errorf("CheckKeys after RotateRoot = %v", err)
	}
	if _, err := c.RetirePrevious(dir); err != nil {
		t.Fatal(err)
	}
	if c.PreviousRoot() != nil || c.Cross() != nil || len(pemCerts(t, c.ChainPEM())) != 2 {
		t.Errorf("after RetirePrevious the old root or the cross-certificate is still trusted")
	}
	loaded, err = Load(dir, testPass)
	if err != nil || loaded.PreviousRoot() != nil || !loaded.Root().Equal(root) {
		t.Fatalf("Load after retiring = %v", err)
	}
	// The new root signs the next intermediate.
	if inter, err := c.RotateIntermediate(dir, testPass, now.Add(time.Hour)); err != nil || inter.CheckSignatureFrom(root) != nil {
		t.Fatalf("RotateIntermediate under the new root = %v", err)
	}
}

// TestRotateRootCrashAtEveryStep: a stop after any durable step of a root rotation leaves the
// old root and intermediate in force (before the commit) or the new ones with their keys
// (after it), as the restarted hub loads them.
func TestRotateRootCrashAtEveryStep(t *testing.T) {
	errCrash := errors.New("crash")
	for _, tt := range []struct {
		at      rotationStep
		rotated bool
	}{{stepStaged, false}, {stepArchived, false}, {stepRootCommit, true}, {stepInterMoved, true}, {stepKeyed, true}, {stepRootKeyed, true}} {
		t.Run(string(tt.at), func(t *testing.T) {
			c, dir := newTestCA(t)
			oldRoot := c.Root()
			now := testNow.Add(time.Hour)
			if _, err := c.rotateRoot(dir, testPass, now, func(s rotationStep) error {
				if s == tt.at {
					return errCrash
				}
				return nil
			}); !errors.Is(err, errCrash) {
				t.Fatalf("rotateRoot stopped at %s = %v", tt.at, err)
			}
			got, err := Load(dir, testPass)
			if err != nil {
				t.Fatalf("Load after a crash at %s = %v", tt.at, err)
			}
			root, inter, err := ReadCertificates(dir)
			if err != nil || !root.Equal(got.Root()) || !inter.Equal(got.Intermediate()) {
				t.Fatalf("ReadCertificates after a crash at %s = %v, or not what Load holds", tt.at, err)
			}
			if rotated := !got.Root().Equal(oldRoot); rotated != tt.rotated {
				t.Fatalf("after a crash at %s the new root is in force: %v, want %v", tt.at, rotated, tt.rotated)
			}
			if signTestLeaf(t, got, "cam", now).CheckSignatureFrom(got.Intermediate()) != nil || got.Intermediate().CheckSignatureFrom(got.Root()) != nil {
				t.Fatalf("after a crash at %s the intermediate in force and its key or root do not belong together", tt.at)
			}
			if err := CheckKeys(dir, testPass); err != nil {
				t.Fatalf("CheckKeys after a crash at %s = %v", tt.at, err)
			}
			if tt.rotated != (got.PreviousRoot() != nil && got.PreviousRoot().Equal(oldRoot) && got.Cross() != nil) {
				t.Fatalf("after a crash at %s: previous root %v, cross %v", tt.at, got.PreviousRoot() != nil, got.Cross() != nil)
			}
			if !tt.rotated {
				if _, err := got.RotateRoot(dir, testPass, now); err != nil {
					t.Fatalf("RotateRoot after a crash at %s = %v", tt.at, err)
				}
			}
		})
	}
}

func x509VerifyOpts(root *x509.Certificate, now time.Time, inters ...*x509.Certificate) x509.VerifyOptions {
	roots, pool := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	for _, c := range inters {
		pool.AddCert(c)
	}
	return x509.VerifyOptions{Roots: roots, Intermediates: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
}
