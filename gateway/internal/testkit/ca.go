package testkit

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"path/filepath"
	"testing"
	"time"
)

// CA is a throwaway two-tier PKI shaped like the hub's (gateway/internal/ca): a root, and
// an intermediate (path length 0) that signs every leaf. Its files live in a temporary
// directory removed when the test ends.
type CA struct {
	Root, Intermediate       *x509.Certificate
	RootKey, IntermediateKey crypto.Signer
	// Dir holds RootFile and the files of every Leaf.
	Dir string
	// RootFile is the root as PEM, for openssl -CAfile and mosquitto's --cafile.
	RootFile string
}

// NewCA makes a root (valid 10 years) and an intermediate (5 years), both valid from an hour
// ago, named after name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	now := time.Now()
	rk, ik := NewKey(t), NewKey(t)
	rootTmpl := &x509.Certificate{
		SerialNumber: randomSerial(t), Subject: pkix.Name{CommonName: name + " Root CA", Organization: []string{"Hearth test"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}
	root := sign(t, rootTmpl, rootTmpl, rk.Public(), rk)
	inter := sign(t, &x509.Certificate{
		SerialNumber: randomSerial(t), Subject: pkix.Name{CommonName: name + " Intermediate CA", Organization: []string{"Hearth test"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(5, 0, 0),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
		MaxPathLen: 0, MaxPathLenZero: true,
	}, root, ik.Public(), rk)
	c := &CA{Root: root, Intermediate: inter, RootKey: rk, IntermediateKey: ik, Dir: t.TempDir()}
	c.RootFile = WritePEM(t, c.Dir, "root.pem", "CERTIFICATE", root.Raw)
	return c
}

// Pool returns a pool holding the root: a client's RootCAs or a server's ClientCAs.
func (c *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.Root)
	return p
}

// Leaf is a certificate the CA issued, with its private key and files.
type Leaf struct {
	// TLS is the pair to present: the chain (leaf, intermediate), the key, and Leaf parsed.
	TLS  tls.Certificate
	Cert *x509.Certificate
	Key  crypto.Signer
	// CertFile holds the chain (leaf first) and KeyFile the key (PKCS #8), both PEM.
	CertFile, KeyFile string
}

// Serial is the leaf's serial number in lowercase hex, as the hub records it.
func (l *Leaf) Serial() string { return l.Cert.SerialNumber.Text(16) }

// Issue signs tmpl for a fresh P-256 key with the intermediate. Zero fields of tmpl get
// defaults: a random serial, validity from an hour ago to a day from now, and the digital
// signature key usage.
func (c *CA) Issue(t testing.TB, tmpl *x509.Certificate) *Leaf {
	t.Helper()
	tmpl = copyTemplate(tmpl)
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = randomSerial(t)
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	}
	if tmpl.KeyUsage == 0 {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	key := NewKey(t)
	cert := sign(t, tmpl, c.Intermediate, key.Public(), c.IntermediateKey)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("MarshalPKCS8PrivateKey: %v", err)
	}
	base := "leaf-" + cert.SerialNumber.Text(16)
	return &Leaf{
		TLS:      tls.Certificate{Certificate: [][]byte{cert.Raw, c.Intermediate.Raw}, PrivateKey: key, Leaf: cert},
		Cert:     cert,
		Key:      key,
		CertFile: WritePEM(t, c.Dir, base+".crt", "CERTIFICATE", cert.Raw, c.Intermediate.Raw),
		KeyFile:  WritePEM(t, c.Dir, base+".key", "PRIVATE KEY", keyDER),
	}
}

// Server issues a TLS server certificate for hosts: IP addresses or DNS names.
func (c *CA) Server(t testing.TB, hosts ...string) *Leaf {
	t.Helper()
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: hosts[0]}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return c.Issue(t, tmpl)
}

// Client issues a TLS client certificate with common name cn and the given URI SANs (a
// device's names its URN).
func (c *CA) Client(t testing.TB, cn string, uris ...*url.URL) *Leaf {
	t.Helper()
	return c.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: cn}, URIs: uris,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
}

func copyTemplate(tmpl *x509.Certificate) *x509.Certificate {
	if tmpl == nil {
		return &x509.Certificate{}
	}
	cp := *tmpl
	return &cp
}

func sign(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatalf("CreateCertificate(%s): %v", tmpl.Subject.CommonName, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("ParseCertificate(%s): %v", tmpl.Subject.CommonName, err)
	}
	return c
}

// randomSerial returns a positive 127-bit serial number.
func randomSerial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("serial: %v", err)
	}
	return n.Add(n, big.NewInt(1))
}

// WritePEM writes the DER blocks as PEM blocks of type typ to dir/name (mode 0600) and
// returns the path.
func WritePEM(t testing.TB, dir, name, typ string, ders ...[]byte) string {
	t.Helper()
	var b []byte
	for _, der := range ders {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})...)
	}
	path := filepath.Join(dir, name)
	writeFile(t, path, b)
	return path
}
