package testkit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/protocol"
)

// CA is a throwaway root and intermediate, shaped like the hub's (gateway/internal/ca).
type CA struct {
	Root, Intermediate *x509.Certificate
	rootKey, interKey  crypto.Signer
}

// NewKey returns a fresh ECDSA P-256 key.
func NewKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n.Add(n, big.NewInt(1))
}

func sign(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// NewCA makes a root (10 years) and an intermediate (5 years, path length 0) named after
// name, both valid from an hour ago.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	return NewCAAt(t, name, time.Now().Add(-time.Hour))
}

// NewCAAt is NewCA with both certificates valid from notBefore, for tests at a fixed time.
func NewCAAt(t testing.TB, name string, notBefore time.Time) *CA {
	t.Helper()
	rk, ik := NewKey(t), NewKey(t)
	rootTmpl := &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: name + " Root CA", Organization: []string{"Hearth"}},
		NotBefore: notBefore, NotAfter: notBefore.AddDate(10, 0, 0),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}
	root := sign(t, rootTmpl, rootTmpl, rk.Public(), rk)
	inter := sign(t, &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: name + " Intermediate CA", Organization: []string{"Hearth"}},
		NotBefore: notBefore, NotAfter: notBefore.AddDate(5, 0, 0),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
		MaxPathLen: 0, MaxPathLenZero: true,
	}, root, ik.Public(), rk)
	return &CA{Root: root, Intermediate: inter, rootKey: rk, interKey: ik}
}

// Fingerprint is the root's fingerprint as the hub prints it.
func (ca *CA) Fingerprint() string { return protocol.FingerprintOf(ca.Root).String() }

// ChainPEM is the intermediate then the root, as the hub publishes on its CA topic.
func (ca *CA) ChainPEM() []byte { return PEM(ca.Intermediate, ca.Root) }

// PEM encodes certificates as PEM.
func PEM(certs ...*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

// ServerCert issues a TLS server certificate for hosts (IPs or names). It returns the leaf
// and the PEM of its private key.
func (ca *CA) ServerCert(t testing.TB, hosts ...string) (*x509.Certificate, []byte) {
	t.Helper()
	k := NewKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: hosts[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return sign(t, tmpl, ca.Intermediate, k.Public(), ca.interKey), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// Issue signs a device certificate for pub: CN = id, URI SAN protocol.DeviceURN(id),
// clientAuth, from notBefore to notAfter, with a random serial.
func (ca *CA) Issue(t testing.TB, pub crypto.PublicKey, id string, notBefore, notAfter time.Time) *x509.Certificate {
	t.Helper()
	return ca.issue(t, pub, id, serial(t), notBefore, notAfter)
}

// IssueSerial is Issue with a chosen serial number, for tests that name generations by it.
func (ca *CA) IssueSerial(t testing.TB, pub crypto.PublicKey, id string, serial int64, notBefore, notAfter time.Time) *x509.Certificate {
	t.Helper()
	return ca.issue(t, pub, id, big.NewInt(serial), notBefore, notAfter)
}

func (ca *CA) issue(t testing.TB, pub crypto.PublicKey, id string, serial *big.Int, notBefore, notAfter time.Time) *x509.Certificate {
	t.Helper()
	return sign(t, &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: id},
		URIs:      []*url.URL{protocol.DeviceURI(id)},
		NotBefore: notBefore.UTC().Truncate(time.Second), NotAfter: notAfter.UTC().Truncate(time.Second),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}, ca.Intermediate, pub, ca.interKey)
}

// CRL returns a PEM CRL of the intermediate with CRL number number, listing serials
// (revoked an hour ago, keyCompromise), as the hub publishes on its CRL topic.
func (ca *CA) CRL(t testing.TB, number int64, serials ...*big.Int) []byte {
	t.Helper()
	return ca.CRLUntil(t, number, time.Now().Add(7*24*time.Hour), serials...)
}

// CRLUntil is CRL with nextUpdate at next (in the past: a stale CRL).
func (ca *CA) CRLUntil(t testing.TB, number int64, next time.Time, serials ...*big.Int) []byte {
	t.Helper()
	return signCRL(t, ca.Intermediate, ca.interKey, number, next, serials)
}

// RootCRL returns a PEM CRL of the root with CRL number number, listing serials (revoked
// intermediates, keyCompromise), as the hub publishes after an intermediate's compromise.
func (ca *CA) RootCRL(t testing.TB, number int64, serials ...*big.Int) []byte {
	t.Helper()
	return signCRL(t, ca.Root, ca.rootKey, number, time.Now().Add(7*24*time.Hour), serials)
}

func signCRL(t testing.TB, issuer *x509.Certificate, key crypto.Signer, number int64, next time.Time, serials []*big.Int) []byte {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	var entries []x509.RevocationListEntry
	for _, s := range serials {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: now.Add(-time.Hour), ReasonCode: 1})
	}
	this := now
	if next.Before(now) {
		this = next.Add(-time.Hour).UTC().Truncate(time.Second)
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: this,
		NextUpdate: next.UTC().Truncate(time.Second), RevokedCertificateEntries: entries}, issuer, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// Rotated returns ca's root with a new intermediate named name and its key, as an
// intermediate rotation leaves the hub: the returned CA issues and signs CRLs with the new
// intermediate.
func (ca *CA) Rotated(t testing.TB, name string) *CA {
	t.Helper()
	k := NewKey(t)
	inter := sign(t, &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: name, Organization: []string{"Hearth"}},
		NotBefore: ca.Intermediate.NotBefore, NotAfter: ca.Intermediate.NotAfter,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
		MaxPathLen: 0, MaxPathLenZero: true,
	}, ca.Root, k.Public(), ca.rootKey)
	return &CA{Root: ca.Root, Intermediate: inter, rootKey: ca.rootKey, interKey: k}
}

// CrossSign certifies other's root (its subject and key) under ca's root, as the hub's old
// root vouches for its new one in a root rotation, valid from notBefore to notAfter.
func (ca *CA) CrossSign(t testing.TB, other *CA, notBefore, notAfter time.Time) *x509.Certificate {
	t.Helper()
	return sign(t, &x509.Certificate{
		SerialNumber: serial(t), Subject: other.Root.Subject, NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}, ca.Root, other.Root.PublicKey, ca.rootKey)
}

// Impostor is a root with other's subject and a key of its own: what a forger would publish
// as other's root.
func Impostor(t testing.TB, other *CA) *CA {
	t.Helper()
	k := NewKey(t)
	tmpl := &x509.Certificate{SerialNumber: serial(t), Subject: other.Root.Subject, NotBefore: other.Root.NotBefore,
		NotAfter: other.Root.NotAfter, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true}
	return &CA{Root: sign(t, tmpl, tmpl, k.Public(), k), rootKey: k}
}

// NewIntermediate returns a second intermediate of ca's root with a fresh key, as an
// intermediate rotation makes; ca keeps signing with its own.
func (ca *CA) NewIntermediate(t testing.TB, name string) *x509.Certificate {
	t.Helper()
	k := NewKey(t)
	return sign(t, &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: name, Organization: []string{"Hearth"}},
		NotBefore: ca.Intermediate.NotBefore, NotAfter: ca.Intermediate.NotAfter,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
		MaxPathLen: 0, MaxPathLenZero: true,
	}, ca.Root, k.Public(), ca.rootKey)
}
