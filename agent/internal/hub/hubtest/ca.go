// Package hubtest plays the hub in the agent's tests: a throwaway two-tier CA, a real
// mosquitto broker with a TLS listener on 127.0.0.1, and a Responder, a paho client that
// answers CSRs and commits the way the hub does and can be told to misbehave.
//
// It is imported by tests only; nothing in the hearth-agent binary depends on it.
package hubtest

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

func newKey(t testing.TB) *ecdsa.PrivateKey {
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

// NewCA makes a root (10 years) and an intermediate (path length 0) named after name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	now := time.Now()
	rk, ik := newKey(t), newKey(t)
	rootTmpl := &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: name + " Root CA", Organization: []string{"Hearth"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}
	root := sign(t, rootTmpl, rootTmpl, rk.Public(), rk)
	inter := sign(t, &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: name + " Intermediate CA", Organization: []string{"Hearth"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(5 * 365 * 24 * time.Hour),
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
	k := newKey(t)
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
// clientAuth, from notBefore to notAfter.
func (ca *CA) Issue(t testing.TB, pub crypto.PublicKey, id string, notBefore, notAfter time.Time) *x509.Certificate {
	t.Helper()
	return sign(t, &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: id},
		URIs:      []*url.URL{protocol.DeviceURI(id)},
		NotBefore: notBefore.UTC().Truncate(time.Second), NotAfter: notAfter.UTC().Truncate(time.Second),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}, ca.Intermediate, pub, ca.interKey)
}
