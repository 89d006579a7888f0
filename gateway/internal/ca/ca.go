package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearth-pki/hearth/protocol"
)

// Errors callers branch on. Each is wrapped with detail; test with errors.Is.
var (
	// ErrNotInitialized means the directory holds no CA (no root.pem).
	ErrNotInitialized = errors.New("ca: not initialized")
	// ErrExists means Init found a CA already in the directory.
	ErrExists = errors.New("ca: already initialized")
	// ErrWrongPassphrase means a key file did not decrypt: the passphrase is
	// wrong or the ciphertext was altered.
	ErrWrongPassphrase = errors.New("ca: wrong passphrase")
	// ErrNoPassphrase means no (or an empty) passphrase was supplied where
	// one is required.
	ErrNoPassphrase = errors.New("ca: no passphrase")
	// ErrCorrupt means a CA file is missing, malformed or inconsistent
	// with the others.
	ErrCorrupt = errors.New("ca: damaged CA files")
)

// Key roles, as written in the key files' Key header.
const (
	roleRoot         = "root"
	roleIntermediate = "intermediate"
)

// Lifetimes and names of the CA certificates.
const (
	RootCommonName         = "Hearth Root CA"
	IntermediateCommonName = "Hearth Intermediate CA"
	Organization           = "Hearth"

	rootYears  = 10
	interYears = 5
	// caBackdate moves the CA certificates' not-before back so devices whose
	// clocks run a little behind accept a CA created a moment ago.
	caBackdate = time.Hour
)

// CA is an opened certificate authority: certificates plus the decrypted
// intermediate key. The root key is not held: it stays encrypted in root.key.
// A CA is safe for concurrent use: what it holds is an immutable state that
// RotateIntermediate and RetirePrevious replace as a whole, so each method sees
// one intermediate, never a mix. Certificates it returns are shared and must
// not be modified.
type CA struct {
	mu sync.Mutex // serialises RotateIntermediate and RetirePrevious
	st atomic.Pointer[state]
}

// state is one generation of the CA: the intermediate in force and, during a
// rotation, the previous one, still trusted and still signing its own CRL; during a root
// rotation also the previous root and the cross-certificate by which it vouches for the
// root in force.
type state struct {
	root, inter       *x509.Certificate
	interKey          crypto.Signer
	prev              *x509.Certificate // nil outside a rotation
	prevKey           crypto.Signer
	prevRoot, cross   *x509.Certificate // nil outside a root rotation
	rootPEM, interPEM []byte
	bundlePEM         []byte // ChainPEM
	roots, inters     *x509.CertPool
	// subjects are the intermediates' subjects as Certificate.Subject.String() writes
	// them: the one in force, then the previous one.
	subjects []string
}

func (c *CA) state() *state { return c.st.Load() }

// Open loads the CA in dir, or creates one there (as Init) if dir holds
// none. A wrong passphrase for an existing CA fails with ErrWrongPassphrase
// and changes nothing on disk.
func Open(dir string, passphrase []byte, now time.Time) (*CA, error) {
	return open(dir, passphrase, now, DefaultIterations)
}

func open(dir string, passphrase []byte, now time.Time, iterations int) (*CA, error) {
	c, err := Load(dir, passphrase)
	if errors.Is(err, ErrNotInitialized) {
		return create(dir, passphrase, now, iterations)
	}
	return c, err
}

// Load opens the existing CA in dir. It never writes. It fails with
// ErrNotInitialized if dir holds no CA, ErrWrongPassphrase if a key does not
// decrypt and ErrCorrupt if the files are damaged or do not belong together.
func Load(dir string, passphrase []byte) (*CA, error) {
	if len(passphrase) == 0 {
		return nil, ErrNoPassphrase
	}
	root, inter, err := ReadCertificates(dir)
	if err != nil {
		return nil, err
	}
	rootData, err := readCAFile(dir, rootKeyFile)
	if err != nil {
		return nil, err
	}
	interData, err := readCAFile(dir, interKeyFile)
	if err != nil {
		return nil, err
	}
	// The root key is only checked for shape here, never decrypted: it signs nothing
	// but intermediates, so it stays encrypted on disk while the hub runs (issue 15).
	if _, err := parseKeyFile(rootData, roleRoot); err != nil {
		return nil, err
	}
	ik, err := parseKeyFile(interData, roleIntermediate)
	if err != nil {
		return nil, err
	}
	interKEK, err := deriveKey(passphrase, ik.kdf)
	if err != nil {
		return nil, err
	}
	interKey, err := ik.decrypt(interKEK, roleIntermediate)
	if err != nil {
		return nil, err
	}
	// The other intermediate keys of a rotation share the CA's KDF parameters, so
	// the key derived once opens them.
	open := func(data []byte) (crypto.Signer, error) {
		k, err := parseKeyFile(data, roleIntermediate)
		if err != nil {
			return nil, err
		}
		kek := interKEK
		if !bytes.Equal(k.kdf.salt, ik.kdf.salt) || k.kdf.iterations != ik.kdf.iterations {
			if kek, err = deriveKey(passphrase, k.kdf); err != nil {
				return nil, err
			}
		}
		return k.decrypt(kek, roleIntermediate)
	}
	prevRoot, cross, err := loadPreviousRoot(dir, root)
	if err != nil {
		return nil, err
	}
	interKey, prev, prevKey, err := loadRotation(dir, root, prevRoot, inter, interKey, open)
	if err != nil {
		return nil, err
	}
	c := &CA{}
	c.st.Store((&state{root: root, inter: inter, interKey: interKey, prev: prev, prevKey: prevKey, prevRoot: prevRoot, cross: cross}).finish())
	return c, nil
}

// CheckKeys opens the CA in dir as Load does and also decrypts the root key, checks that it
// matches root.pem, and drops it: proof that both keys are intact and open with passphrase,
// for a restored backup (the hub itself never decrypts the root key). It never writes.
func CheckKeys(dir string, passphrase []byte) error {
	c, err := Load(dir, passphrase)
	if err != nil {
		return err
	}
	_, _, _, err = openRootKey(dir, passphrase, c.Root())
	return err
}

// ReadCertificates reads and checks the root and intermediate certificates
// in dir without the passphrase: the root must be a self-signed CA and the
// intermediate a CA signed by it.
func ReadCertificates(dir string) (root, intermediate *x509.Certificate, err error) {
	ok, err := initialized(dir)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, fmt.Errorf("%w: no %s in %s", ErrNotInitialized, rootCertFile, dir)
	}
	if root, err = readCertFile(dir, rootCertFile); err != nil {
		return nil, nil, err
	}
	if intermediate, err = readCertFile(dir, interCertFile); err != nil {
		return nil, nil, err
	}
	if !root.IsCA || root.CheckSignatureFrom(root) != nil {
		return nil, nil, fmt.Errorf("%w: %s is not a self-signed CA certificate", ErrCorrupt, rootCertFile)
	}
	if intermediate.CheckSignatureFrom(root) != nil {
		// A root rotation stopped between its commit and the move of its intermediate: the
		// new intermediate is still next.pem (see rootrotate.go).
		if next, err := readCertFile(dir, nextCertFile); err == nil && next.CheckSignatureFrom(root) == nil {
			intermediate = next
		}
	}
	if !intermediate.IsCA || intermediate.CheckSignatureFrom(root) != nil {
		return nil, nil, fmt.Errorf("%w: %s is not a CA certificate signed by the root", ErrCorrupt, interCertFile)
	}
	return root, intermediate, nil
}

func readCertFile(dir, name string) (*x509.Certificate, error) {
	data, err := readCAFile(dir, name)
	if err != nil {
		return nil, err
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: %s: want exactly one PEM CERTIFICATE block", ErrCorrupt, name)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, name, err)
	}
	return cert, nil
}

// Init creates a new CA in dir (created 0700 if needed): a root and an
// intermediate with fresh P-256 keys, valid from now. It fails with
// ErrExists if dir already holds a CA. A crash part way leaves dir
// uninitialized, never half initialized (see the package documentation).
func Init(dir string, passphrase []byte, now time.Time) (*CA, error) {
	return create(dir, passphrase, now, DefaultIterations)
}

// InitWithIterations is Init with a chosen PBKDF2 iteration count, from
// MinIterations up; 0 means DefaultIterations. Fewer iterations open the CA
// faster on a slow hub but make a stolen key file cheaper to attack.
func InitWithIterations(dir string, passphrase []byte, now time.Time, iterations int) (*CA, error) {
	if iterations == 0 {
		iterations = DefaultIterations
	}
	if iterations < MinIterations || iterations > maxIterations {
		return nil, fmt.Errorf("ca: %d PBKDF2 iterations not in %d..%d", iterations, MinIterations, maxIterations)
	}
	return create(dir, passphrase, now, iterations)
}

func create(dir string, passphrase []byte, now time.Time, iterations int) (*CA, error) {
	if len(passphrase) == 0 {
		return nil, ErrNoPassphrase
	}
	if err := ensureDir(dir); err != nil {
		return nil, err
	}
	ok, err := initialized(dir)
	if err != nil {
		return nil, err
	}
	if ok {
		return nil, fmt.Errorf("%w: %s exists", ErrExists, rootCertFile)
	}
	if err := removeTemps(dir); err != nil {
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
	rootTmpl := rootTemplate(RootCommonName, rootKey, notBefore)
	root, err := createCert(rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("create root certificate: %w", err)
	}
	inter, err := signIntermediate(IntermediateCommonName, interKey, notBefore, root, rootKey)
	if err != nil {
		return nil, err
	}

	kdf := newKDFParams(iterations)
	kek, err := deriveKey(passphrase, kdf)
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
	c := newCA(root, inter, interKey)
	// root.pem is the commit marker: the other three files are durable in
	// the directory before it appears.
	files := []struct {
		name string
		data []byte
	}{
		{interCertFile, c.state().interPEM},
		{interKeyFile, interKeyPEM},
		{rootKeyFile, rootKeyPEM},
		{rootCertFile, c.state().rootPEM},
	}
	for _, f := range files {
		if err := writeFile(dir, f.name, f.data); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func newCA(root, inter *x509.Certificate, interKey crypto.Signer) *CA {
	c := &CA{}
	c.st.Store(newState(root, inter, interKey, nil, nil))
	return c
}

func newState(root, inter *x509.Certificate, interKey crypto.Signer, prev *x509.Certificate, prevKey crypto.Signer) *state {
	return (&state{root: root, inter: inter, interKey: interKey, prev: prev, prevKey: prevKey}).finish()
}

// finish derives the PEM forms and pools from the certificates.
func (s *state) finish() *state {
	enc := func(c *x509.Certificate) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	s.rootPEM, s.interPEM = enc(s.root), enc(s.inter)
	s.roots, s.inters = x509.NewCertPool(), x509.NewCertPool()
	s.roots.AddCert(s.root)
	s.inters.AddCert(s.inter)
	s.bundlePEM = bytes.Clone(s.interPEM)
	s.subjects = []string{s.inter.Subject.String()}
	if s.prev != nil {
		s.subjects = append(s.subjects, s.prev.Subject.String())
		s.inters.AddCert(s.prev)
		s.bundlePEM = append(s.bundlePEM, enc(s.prev)...)
	}
	if s.cross != nil {
		s.inters.AddCert(s.cross)
		s.bundlePEM = append(s.bundlePEM, enc(s.cross)...)
	}
	s.bundlePEM = append(s.bundlePEM, s.rootPEM...)
	if s.prevRoot != nil {
		s.roots.AddCert(s.prevRoot)
		s.bundlePEM = append(s.bundlePEM, enc(s.prevRoot)...)
	}
	return s
}

// Root returns the root certificate.
func (c *CA) Root() *x509.Certificate { return c.state().root }

// Intermediate returns the intermediate certificate in force, the issuer of
// every new leaf and of the CRL.
func (c *CA) Intermediate() *x509.Certificate { return c.state().inter }

// Previous returns the intermediate a rotation replaced while it is still
// trusted (devices hold certificates it issued), or nil outside a rotation.
func (c *CA) Previous() *x509.Certificate { return c.state().prev }

// RootPEM returns the root certificate as PEM.
func (c *CA) RootPEM() []byte { return bytes.Clone(c.state().rootPEM) }

// ChainPEM returns the CA bundle as PEM: the intermediate in force, the
// previous one during a rotation, the cross-certificate during a root rotation,
// the root, and the previous root during a root rotation. It is what the hub
// publishes on the CA topic, so agents trust both intermediates while devices
// move, and move their pin to a new root the pinned one cross-signed.
func (c *CA) ChainPEM() []byte { return bytes.Clone(c.state().bundlePEM) }

// Issues reports whether subject (as x509.Certificate.Subject.String writes an issuer) is
// the intermediate in force or, during a rotation, the previous one. It formats nothing:
// it is asked for each health report.
func (c *CA) Issues(subject string) bool { return slices.Contains(c.state().subjects, subject) }

// PreviousRoot returns the root a root rotation replaced, while it is still
// trusted, or nil.
func (c *CA) PreviousRoot() *x509.Certificate { return c.state().prevRoot }

// Cross returns the certificate by which the previous root vouches for the root
// in force (its subject and key, signed by the previous root) during a root
// rotation, or nil.
func (c *CA) Cross() *x509.Certificate { return c.state().cross }

// Roots returns a new pool holding the root certificate, and the previous root
// during a root rotation.
func (c *CA) Roots() *x509.CertPool { return c.state().roots.Clone() }

// RootPool is Roots without the copy, for a verification per TLS handshake: the pool is
// shared and must not be modified.
func (c *CA) RootPool() *x509.CertPool { return c.state().roots }

// Intermediates returns a new pool holding the intermediates: the one in
// force and, during a rotation, the previous one.
func (c *CA) Intermediates() *x509.CertPool { return c.state().inters.Clone() }

// Fingerprint returns the root certificate's fingerprint, the value agents
// pin, in the protocol's written form (protocol.Fingerprint.String).
func (c *CA) Fingerprint() string { return protocol.FingerprintOf(c.state().root).String() }

// Verify checks that leaf chains to this CA's root through one of its
// intermediates at time now. It checks no extended key usage.
func (c *CA) Verify(leaf *x509.Certificate, now time.Time) error {
	s := c.state()
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         s.roots,
		Intermediates: s.inters,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return fmt.Errorf("verify %q: %w", leaf.Subject.CommonName, err)
	}
	return nil
}

// newSerial returns a random positive 128-bit serial number (RFC 5280
// 4.1.2.2 allows up to 20 octets; CA/B Forum asks for 64 random bits).
func newSerial() *big.Int {
	for {
		n := new(big.Int).SetBytes(randomBytes(16))
		if n.Sign() > 0 {
			return n
		}
	}
}

// subjectKeyID is RFC 7093 section 2 method 1: the leftmost 160 bits of the
// SHA-256 of the subjectPublicKey bit string.
func subjectKeyID(pub crypto.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil // CreateCertificate reports the unsupported key.
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil
	}
	sum := sha256.Sum256(spki.PublicKey.Bytes)
	return sum[:20]
}

// publicKeyEqual compares two public keys of the std types.
func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
