package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/atomicfile"
)

// Intermediate rotation (issue 12). RotateIntermediate makes a new intermediate under the
// root and puts it in force; the one it replaces stays trusted, as the previous
// intermediate, until RetirePrevious. On disk:
//
//	next.pem, next.key          the new intermediate, staged (never in force by themselves)
//	previous.pem, previous.key  the replaced intermediate, while it is still trusted
//
// The steps, each durable before the next: stage next.*; copy intermediate.* to
// previous.*; rename next.pem over intermediate.pem (the commit); rename next.key over
// intermediate.key. A crash before the commit leaves the old intermediate in force
// (previous.pem then equals intermediate.pem and is ignored, the staged files too); a crash
// after it leaves the new one in force: Load pairs the new intermediate.pem with next.key
// when intermediate.key still holds the old key. Never a mix.

// Files of a rotation, inside the CA directory.
const (
	nextCertFile = "next.pem"
	nextKeyFile  = "next.key"
	prevCertFile = "previous.pem"
	prevKeyFile  = "previous.key"
)

// Errors of rotation.
var (
	// ErrRotating means a rotation is under way: the previous intermediate is not retired.
	ErrRotating = errors.New("ca: an intermediate rotation is under way")
	// ErrNoRotation means no rotation is under way: there is no previous intermediate.
	ErrNoRotation = errors.New("ca: no intermediate rotation under way")
)

// rotationStep names the points a crash can hit during RotateIntermediate, for tests.
type rotationStep string

const (
	stepStaged   rotationStep = "staged"   // next.* written
	stepArchived rotationStep = "archived" // previous.* written
	stepCommit   rotationStep = "commit"   // intermediate.pem is the new one
	stepKeyed    rotationStep = "keyed"    // intermediate.key is the new one
)

// RotateIntermediate creates a new intermediate signed by the root (whose key it decrypts
// with passphrase and drops), writes it into dir crash-safely and puts it in force: from
// its return on, leaves and CRLs are signed by the new intermediate, and the old one is
// Previous until RetirePrevious. It fails with ErrRotating while a previous intermediate is
// still trusted and with ErrWrongPassphrase if the root key does not open; then nothing in
// force changed. The new intermediate is named IntermediateCommonName plus its creation
// time, so certificates and CRLs of the two are told apart by issuer name.
func (c *CA) RotateIntermediate(dir string, passphrase []byte, now time.Time) (*x509.Certificate, error) {
	return c.rotate(dir, passphrase, now, func(rotationStep) error { return nil })
}

// rotate is RotateIntermediate with after called after each durable step; an error from it
// stops the rotation there, as a crash would.
func (c *CA) rotate(dir string, passphrase []byte, now time.Time, after func(rotationStep) error) (*x509.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.state()
	if s.prev != nil {
		return nil, fmt.Errorf("%w: retire %s first", ErrRotating, s.prev.Subject.CommonName)
	}
	rootKey, kdf, kek, err := openRootKey(dir, passphrase, s.root)
	if err != nil {
		return nil, err
	}
	if err := removeStale(dir); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate intermediate key: %w", err)
	}
	notBefore := now.Add(-caBackdate).UTC().Truncate(time.Second)
	cn := IntermediateCommonName + " " + now.UTC().Format("2006-01-02 15:04:05Z")
	inter, err := signIntermediate(cn, key, notBefore, s.root, rootKey)
	if err != nil {
		return nil, err
	}
	keyPEM, err := encryptKey(key, roleIntermediate, kek, kdf)
	if err != nil {
		return nil, err
	}
	certPEM := pemCert(inter)
	oldKey, err := readCAFile(dir, interKeyFile)
	if err != nil {
		return nil, err
	}
	steps := []struct {
		step rotationStep
		do   func() error
	}{
		{stepStaged, func() error {
			if err := writeFile(dir, nextKeyFile, keyPEM); err != nil {
				return err
			}
			return writeFile(dir, nextCertFile, certPEM)
		}},
		{stepArchived, func() error {
			if err := writeFile(dir, prevKeyFile, oldKey); err != nil {
				return err
			}
			return writeFile(dir, prevCertFile, s.interPEM)
		}},
		{stepCommit, func() error { return renameSynced(dir, nextCertFile, interCertFile) }},
		{stepKeyed, func() error { return renameSynced(dir, nextKeyFile, interKeyFile) }},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			return nil, fmt.Errorf("rotate the intermediate (%s): %w", st.step, err)
		}
		if err := after(st.step); err != nil {
			return nil, err
		}
	}
	c.st.Store(newState(s.root, inter, key, s.inter, s.interKey))
	return inter, nil
}

// RetirePrevious stops trusting the previous intermediate, and after a root rotation the
// previous root: their files are removed from dir (each key and the cross-certificate before
// the certificate they make trusted, so a crash part way leaves them retired) and the bundle
// (ChainPEM) no longer names them. Sign its last CRL with PreviousCRL before. It fails
// with ErrNoRotation when there is none.
func (c *CA) RetirePrevious(dir string) (*x509.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.state()
	if s.prev == nil {
		return nil, ErrNoRotation
	}
	for _, name := range []string{prevKeyFile, prevCertFile, crossCertFile, prevRootCertFile} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("retire the previous intermediate: %w", err)
		}
		if err := atomicfile.SyncDir(dir); err != nil {
			return nil, err
		}
	}
	c.st.Store(newState(s.root, s.inter, s.interKey, nil, nil))
	return s.prev, nil
}

// RootCRL returns a PEM CRL signed by the root, listing revoked intermediates (by serial),
// with nextUpdate now + validity. The root key is decrypted with passphrase for this one
// signature and dropped, as for RotateIntermediate.
func (c *CA) RootCRL(dir string, passphrase []byte, entries []Revoked, number *big.Int, now time.Time, validity time.Duration) ([]byte, error) {
	s := c.state()
	rootKey, _, _, err := openRootKey(dir, passphrase, s.root)
	if err != nil {
		return nil, err
	}
	return signCRL(s.root, rootKey, entries, number, now, validity)
}

// openRootKey decrypts root.key with passphrase and checks it belongs to root. It returns
// the key and the derived key-encryption key with its parameters, which the CA's other key
// files share.
func openRootKey(dir string, passphrase []byte, root *x509.Certificate) (crypto.Signer, kdfParams, []byte, error) {
	if len(passphrase) == 0 {
		return nil, kdfParams{}, nil, ErrNoPassphrase
	}
	key, kdf, kek, err := openKeyFile(dir, rootKeyFile, passphrase)
	if err != nil {
		return nil, kdfParams{}, nil, err
	}
	if !publicKeyEqual(key.Public(), root.PublicKey) {
		// A root rotation stopped before its last rename: the new root's key is still
		// next-root.key (see rootrotate.go).
		if nk, nkdf, nkek, err := openKeyFile(dir, nextRootKeyFile, passphrase); err == nil && publicKeyEqual(nk.Public(), root.PublicKey) {
			return nk, nkdf, nkek, nil
		}
		return nil, kdfParams{}, nil, fmt.Errorf("%w: root.key does not match root.pem", ErrCorrupt)
	}
	return key, kdf, kek, nil
}

// openKeyFile decrypts the root key file name in dir.
func openKeyFile(dir, name string, passphrase []byte) (crypto.Signer, kdfParams, []byte, error) {
	data, err := readCAFile(dir, name)
	if err != nil {
		return nil, kdfParams{}, nil, err
	}
	rk, err := parseKeyFile(data, roleRoot)
	if err != nil {
		return nil, kdfParams{}, nil, err
	}
	kek, err := deriveKey(passphrase, rk.kdf)
	if err != nil {
		return nil, kdfParams{}, nil, err
	}
	key, err := rk.decrypt(kek, roleRoot)
	if err != nil {
		return nil, kdfParams{}, nil, err
	}
	return key, rk.kdf, kek, nil
}

// signIntermediate issues an intermediate named cn for key under root: five years (never
// past the root), path length 0, clientAuth and serverAuth only (see the package
// documentation).
func signIntermediate(cn string, key crypto.Signer, notBefore time.Time, root *x509.Certificate, rootKey crypto.Signer) (*x509.Certificate, error) {
	notAfter := notBefore.AddDate(interYears, 0, 0)
	if notAfter.After(root.NotAfter) {
		notAfter = root.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{Organization}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		// Everything the intermediate signs is a TLS client (devices) or server (the broker,
		// devices whose profile allows serverAuth): constraining it to those two purposes
		// keeps a stolen intermediate key from minting code-signing or e-mail certificates
		// that a verifier checking EKU nesting would accept (issue 15).
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		SubjectKeyId: subjectKeyID(key.Public()),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root, key.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("create intermediate certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse intermediate certificate: %w", err)
	}
	return cert, nil
}

// loadRotation completes what Load reads of a rotation: the key of intermediate.pem when a
// crash hit between the commit's two renames (it is then still next.key), and the previous
// intermediate when one is still trusted (signed by root, or by prevRoot during a root
// rotation). open decrypts an intermediate key file.
func loadRotation(dir string, root, prevRoot, inter *x509.Certificate, interKey crypto.Signer, open func([]byte) (crypto.Signer, error)) (crypto.Signer, *x509.Certificate, crypto.Signer, error) {
	if !publicKeyEqual(interKey.Public(), inter.PublicKey) {
		data, err := os.ReadFile(filepath.Join(dir, nextKeyFile))
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%w: intermediate.key does not match intermediate.pem", ErrCorrupt)
		}
		k, err := open(data)
		if err != nil {
			return nil, nil, nil, err
		}
		if !publicKeyEqual(k.Public(), inter.PublicKey) {
			return nil, nil, nil, fmt.Errorf("%w: intermediate.key does not match intermediate.pem", ErrCorrupt)
		}
		interKey = k
	}
	if _, err := os.Stat(filepath.Join(dir, prevKeyFile)); errors.Is(err, fs.ErrNotExist) {
		return interKey, nil, nil, nil // no rotation, or a retired one
	}
	if _, err := os.Stat(filepath.Join(dir, prevCertFile)); errors.Is(err, fs.ErrNotExist) {
		return interKey, nil, nil, nil
	}
	prev, err := readCertFile(dir, prevCertFile)
	if err != nil {
		return nil, nil, nil, err
	}
	if prev.Equal(inter) {
		return interKey, nil, nil, nil // a rotation that crashed before its commit
	}
	signed := prev.CheckSignatureFrom(root) == nil || (prevRoot != nil && prev.CheckSignatureFrom(prevRoot) == nil)
	if !prev.IsCA || !signed {
		return nil, nil, nil, fmt.Errorf("%w: %s is not a CA certificate signed by the root", ErrCorrupt, prevCertFile)
	}
	data, err := readCAFile(dir, prevKeyFile)
	if err != nil {
		return nil, nil, nil, err
	}
	prevKey, err := open(data)
	if err != nil {
		return nil, nil, nil, err
	}
	if !publicKeyEqual(prevKey.Public(), prev.PublicKey) {
		return nil, nil, nil, fmt.Errorf("%w: %s does not match %s", ErrCorrupt, prevKeyFile, prevCertFile)
	}
	return interKey, prev, prevKey, nil
}

// renameSynced renames dir/from to dir/to and syncs dir.
func renameSynced(dir, from, to string) error {
	if err := os.Rename(filepath.Join(dir, from), filepath.Join(dir, to)); err != nil {
		return err
	}
	return atomicfile.SyncDir(dir)
}

// pemCert encodes a certificate as PEM.
func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// removeStale removes the leftovers of a rotation that crashed before its commit, or of a
// retirement, before a new rotation writes its files.
func removeStale(dir string) error {
	for _, name := range []string{nextCertFile, nextKeyFile, prevCertFile, prevKeyFile, nextRootCertFile, nextRootKeyFile, crossCertFile, prevRootCertFile} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove stale %s: %w", name, err)
		}
	}
	return nil
}
