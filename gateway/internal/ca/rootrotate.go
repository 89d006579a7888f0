package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Root rotation (issue 12). RotateRoot makes a new root, a cross-certificate by which the old
// root vouches for it (the new root's subject and key, signed by the old root), and a new
// intermediate under the new root, and puts them in force; the old root and intermediate stay
// trusted, as PreviousRoot and Previous, until RetirePrevious. Agents move their pin to the new
// root only when the cross-certificate verifies under the root they pinned. On disk, besides
// the intermediate rotation's files:
//
//	next-root.pem, next-root.key  the new root, staged
//	cross.pem                     the cross-certificate
//	previous-root.pem             the old root, while it is still trusted
//
// The steps: stage next-root.*, next.* and cross.pem; copy intermediate.* to previous.* and
// root.pem to previous-root.pem; rename next-root.pem over root.pem (the commit), then next.pem
// over intermediate.pem, next.key over intermediate.key, next-root.key over root.key. Before
// the commit the old root and intermediate are in force (the copies equal them and are
// ignored); from it on the new ones are: ReadCertificates takes next.pem while
// intermediate.pem is still the old root's, Load pairs keys with next.key, and the root key is
// read from next-root.key while root.key is still the old one.

// Files of a root rotation, inside the CA directory.
const (
	nextRootCertFile = "next-root.pem"
	nextRootKeyFile  = "next-root.key"
	crossCertFile    = "cross.pem"
	prevRootCertFile = "previous-root.pem"
)

// Steps a crash can hit during RotateRoot, for tests (after the intermediate's own).
const (
	stepRootCommit rotationStep = "root-commit" // root.pem is the new root
	stepInterMoved rotationStep = "inter-moved" // intermediate.pem is the new intermediate
	stepRootKeyed  rotationStep = "root-keyed"  // root.key is the new root's key
)

// RotateRoot creates a new root (named RootCommonName plus its creation time), its
// cross-certificate signed by the current root, and a new intermediate under it, writes them
// into dir crash-safely and puts them in force. The old root key is decrypted with passphrase
// for the cross-signature and dropped. It fails with ErrRotating while a previous intermediate
// or root is still trusted.
func (c *CA) RotateRoot(dir string, passphrase []byte, now time.Time) (*x509.Certificate, error) {
	return c.rotateRoot(dir, passphrase, now, func(rotationStep) error { return nil })
}

func (c *CA) rotateRoot(dir string, passphrase []byte, now time.Time, after func(rotationStep) error) (*x509.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.state()
	if s.prev != nil || s.prevRoot != nil {
		return nil, fmt.Errorf("%w: retire the previous intermediate first", ErrRotating)
	}
	oldKey, kdf, kek, err := openRootKey(dir, passphrase, s.root)
	if err != nil {
		return nil, err
	}
	if err := removeStale(dir); err != nil {
		return nil, err
	}
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate root key: %w", err)
	}
	interKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate intermediate key: %w", err)
	}
	notBefore := now.Add(-caBackdate).UTC().Truncate(time.Second)
	at := " " + now.UTC().Format("2006-01-02 15:04:05Z")
	tmpl := rootTemplate(RootCommonName+at, rootKey, notBefore)
	root, err := createCert(tmpl, tmpl, rootKey.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("create root certificate: %w", err)
	}
	// The cross-certificate: the new root's subject and key under the old root, no longer
	// than the old root lives.
	crossTmpl := *tmpl
	crossTmpl.SerialNumber = newSerial()
	if crossTmpl.NotAfter.After(s.root.NotAfter) {
		crossTmpl.NotAfter = s.root.NotAfter
	}
	cross, err := createCert(&crossTmpl, s.root, rootKey.Public(), oldKey)
	if err != nil {
		return nil, fmt.Errorf("create cross-certificate: %w", err)
	}
	inter, err := signIntermediate(IntermediateCommonName+at, interKey, notBefore, root, rootKey)
	if err != nil {
		return nil, err
	}
	rootKeyPEM, err := encryptKey(rootKey, roleRoot, kek, kdf)
	if err != nil {
		return nil, err
	}
	interKeyPEM, err := encryptKey(interKey, roleIntermediate, kek, kdf)
	if err != nil {
		return nil, err
	}
	oldInterKey, err := readCAFile(dir, interKeyFile)
	if err != nil {
		return nil, err
	}
	steps := []struct {
		step rotationStep
		do   func() error
	}{
		{stepStaged, func() error {
			for _, f := range []struct {
				name string
				data []byte
			}{{nextRootKeyFile, rootKeyPEM}, {nextKeyFile, interKeyPEM}, {nextCertFile, pemCert(inter)},
				{crossCertFile, pemCert(cross)}, {nextRootCertFile, pemCert(root)}} {
				if err := writeFile(dir, f.name, f.data); err != nil {
					return err
				}
			}
			return nil
		}},
		{stepArchived, func() error {
			if err := writeFile(dir, prevKeyFile, oldInterKey); err != nil {
				return err
			}
			if err := writeFile(dir, prevCertFile, s.interPEM); err != nil {
				return err
			}
			return writeFile(dir, prevRootCertFile, s.rootPEM)
		}},
		{stepRootCommit, func() error { return renameSynced(dir, nextRootCertFile, rootCertFile) }},
		{stepInterMoved, func() error { return renameSynced(dir, nextCertFile, interCertFile) }},
		{stepKeyed, func() error { return renameSynced(dir, nextKeyFile, interKeyFile) }},
		{stepRootKeyed, func() error { return renameSynced(dir, nextRootKeyFile, rootKeyFile) }},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			return nil, fmt.Errorf("rotate the root (%s): %w", st.step, err)
		}
		if err := after(st.step); err != nil {
			return nil, err
		}
	}
	c.st.Store((&state{root: root, inter: inter, interKey: interKey, prev: s.inter, prevKey: s.interKey, prevRoot: s.root, cross: cross}).finish())
	return root, nil
}

// createCert signs tmpl as parent with key and parses the result.
func createCert(tmpl, parent *x509.Certificate, pub any, key any) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// loadPreviousRoot reads the previous root and its cross-certificate for the root in force,
// when a root rotation keeps them trusted: both files present, the previous root another
// self-signed CA, the cross-certificate naming root's subject and key under it.
func loadPreviousRoot(dir string, root *x509.Certificate) (prevRoot, cross *x509.Certificate, err error) {
	for _, name := range []string{prevRootCertFile, crossCertFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); errors.Is(err, fs.ErrNotExist) {
			return nil, nil, nil // no root rotation, one that never committed, or a retired one
		}
	}
	if prevRoot, err = readCertFile(dir, prevRootCertFile); err != nil {
		return nil, nil, err
	}
	if prevRoot.Equal(root) {
		return nil, nil, nil // a root rotation that crashed before its commit
	}
	if cross, err = readCertFile(dir, crossCertFile); err != nil {
		return nil, nil, err
	}
	if !prevRoot.IsCA || prevRoot.CheckSignatureFrom(prevRoot) != nil || cross.CheckSignatureFrom(prevRoot) != nil ||
		!publicKeyEqual(cross.PublicKey, root.PublicKey) || cross.Subject.String() != root.Subject.String() {
		return nil, nil, fmt.Errorf("%w: %s and %s do not vouch for %s", ErrCorrupt, prevRootCertFile, crossCertFile, rootCertFile)
	}
	return prevRoot, cross, nil
}

// rootTemplate is a self-signed root's template: named cn, for key, valid rootYears from
// notBefore.
func rootTemplate(cn string, key *ecdsa.PrivateKey, notBefore time.Time) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{Organization}},
		NotBefore:             notBefore,
		NotAfter:              notBefore.AddDate(rootYears, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          subjectKeyID(key.Public()),
	}
}
