package keystore

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/protocol"
)

// testCA is a throwaway two-tier CA (root → intermediate) that issues device leaves.
type testCA struct {
	root, inter       *x509.Certificate
	rootKey, interKey crypto.Signer
}

// testEpoch is a fixed issuance time so that certificates are deterministic apart from keys.
var testEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newTestCA(tb testing.TB) *testCA {
	tb.Helper()
	rootKey := mustECKey(tb)
	root := mustCert(tb, &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Test Root"},
		NotBefore:             testEpoch,
		NotAfter:              testEpoch.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, nil, rootKey, rootKey)
	interKey := mustECKey(tb)
	inter := mustCert(tb, &x509.Certificate{
		SerialNumber:          big.NewInt(2),
		Subject:               pkix.Name{CommonName: "Test Intermediate"},
		NotBefore:             testEpoch,
		NotAfter:              testEpoch.AddDate(5, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}, root, interKey, rootKey)
	return &testCA{root: root, inter: inter, rootKey: rootKey, interKey: interKey}
}

// issue returns the chain [leaf, intermediate] for key with the given serial.
func (ca *testCA) issue(tb testing.TB, key crypto.Signer, serial int64) []*x509.Certificate {
	tb.Helper()
	leaf := mustCert(tb, &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "dev-1"},
		URIs:         []*url.URL{protocol.DeviceURI("dev-1")},
		NotBefore:    testEpoch,
		NotAfter:     testEpoch.AddDate(0, 0, 30),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca.inter, key, ca.interKey)
	return []*x509.Certificate{leaf, ca.inter}
}

// newPair returns a fresh P-256 key and its chain with the given serial.
func (ca *testCA) newPair(tb testing.TB, serial int64) Pair {
	tb.Helper()
	key := mustECKey(tb)
	return Pair{Key: key, Chain: ca.issue(tb, key, serial)}
}

func mustECKey(tb testing.TB) crypto.Signer {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// mustCert signs tmpl for key's public key by signer; parent nil means self-signed.
func mustCert(tb testing.TB, tmpl, parent *x509.Certificate, key, signer crypto.Signer) *x509.Certificate {
	tb.Helper()
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}
