package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// TestIntermediateConstraintsOpenSSL (issue 15): what constrains the intermediate, checked
// with a real openssl. A device leaf verifies as a TLS client and the broker's certificate,
// for every kind of name the default hostnames produce (a .local name, a private IPv4 and a
// global IPv6 address, localhost, loopback), as a TLS server; a leaf a stolen intermediate
// key might mint for another purpose (S/MIME) is refused, by openssl and by Go, because of
// the intermediate's extended key usage (EKU nesting).
func TestIntermediateConstraintsOpenSSL(t *testing.T) {
	testkit.RequirePeer(t, "openssl")
	c, _ := newTestCA(t)
	tmp := t.TempDir()
	rootPath, interPath := writeChain(t, c, tmp)
	verify := func(purpose, path string) (string, error) {
		return openssl(t, "verify", "-purpose", purpose, "-CAfile", rootPath, "-untrusted", interPath, path)
	}

	device, err := c.SignLeaf(testkit.NewCSR(t, testkit.NewKey(t), &x509.CertificateRequest{Subject: pkix.Name{CommonName: "cam"}}), "cam", leafAt(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	devicePath := testkit.WritePEM(t, tmp, "device.pem", "CERTIFICATE", device.Raw)
	if out, err := verify("sslclient", devicePath); err != nil || !strings.Contains(out, devicePath+": OK") {
		t.Errorf("openssl verify -purpose sslclient device leaf = %v\n%s", err, out)
	}
	hosts := []string{"hub.local", "localhost", "192.168.1.5", "2001:db8:1::5", "127.0.0.1", "::1"}
	broker, err := c.ServerCertificate(hosts, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	brokerPath := testkit.WritePEM(t, tmp, "broker.pem", "CERTIFICATE", broker.Certificate[0])
	if out, err := verify("sslserver", brokerPath); err != nil || !strings.Contains(out, brokerPath+": OK") {
		t.Errorf("openssl verify -purpose sslserver broker certificate = %v\n%s", err, out)
	}

	// What a thief of the intermediate key could sign: an S/MIME certificate.
	key := testkit.NewKey(t)
	smime, _, err := c.issue(&x509.Certificate{SerialNumber: newSerial(), Subject: pkix.Name{CommonName: "mallory"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}, EmailAddresses: []string{"ceo@example.com"}}, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	smimePath := testkit.WritePEM(t, tmp, "smime.pem", "CERTIFICATE", smime.Raw)
	if out, err := verify("smimesign", smimePath); err == nil || !strings.Contains(out, "at 1 depth lookup: unsuitable certificate purpose") {
		t.Errorf("openssl verify -purpose smimesign of an S/MIME leaf = %v, want the intermediate (depth 1) unsuitable for the purpose\n%s", err, out)
	}
	if _, err := smime.Verify(x509.VerifyOptions{Roots: c.Roots(), Intermediates: c.Intermediates(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}}); err == nil {
		t.Error("Go verified an S/MIME leaf of the intermediate, want an incompatible key usage")
	}
}

// TestNameConstraintsDoNotFit records, with Go's verifier and openssl, why the intermediate
// carries no name constraints (doc.go, "Keys and certificates"): a URI constraint, the only
// kind RFC 5280 §4.2.1.10 has for URIs, names a host, and a device's urn:hearth:device:ID has
// none, so any such constraint refuses every device leaf; an IP constraint of the private
// ranges refuses the broker certificate for a global IPv6 address, which the default
// hostnames include on most IPv6 networks.
func TestNameConstraintsDoNotFit(t *testing.T) {
	testkit.RequirePeer(t, "openssl")
	for _, tc := range []struct {
		name      string
		constrain func(*x509.Certificate)
		leaf      *x509.Certificate
		purpose   string
		openssl   string // how openssl refuses it
	}{
		{"URI constraint, device leaf", func(c *x509.Certificate) { c.PermittedURIDomains = []string{"hearth"} },
			&x509.Certificate{Subject: pkix.Name{CommonName: "cam"}, URIs: []*url.URL{protocol.DeviceURI("cam")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
			"sslclient", "unsupported or invalid name syntax"},
		{"private IP ranges, broker on a global IPv6 address", func(c *x509.Certificate) {
			for _, cidr := range []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "::1/128", "fc00::/7"} {
				_, n, _ := net.ParseCIDR(cidr)
				c.PermittedIPRanges = append(c.PermittedIPRanges, n)
			}
		}, &x509.Certificate{Subject: pkix.Name{CommonName: "hub.local"}, DNSNames: []string{"hub.local"},
			IPAddresses: []net.IP{net.ParseIP("192.168.1.5"), net.ParseIP("2001:db8:1::5")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
			"sslserver", "permitted subtree violation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, rootKey := selfSigned(t)
			interKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			interTmpl := &x509.Certificate{SerialNumber: newSerial(), Subject: pkix.Name{CommonName: "constrained"},
				NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
				MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign}
			tc.constrain(interTmpl)
			inter := create509(t, interTmpl, root, interKey.Public(), rootKey)
			leafKey := testkit.NewKey(t)
			tc.leaf.SerialNumber, tc.leaf.NotBefore, tc.leaf.NotAfter = newSerial(), time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
			tc.leaf.KeyUsage = x509.KeyUsageDigitalSignature
			leaf := create509(t, tc.leaf, inter, leafKey.Public(), interKey)

			roots, inters := x509.NewCertPool(), x509.NewCertPool()
			roots.AddCert(root)
			inters.AddCert(inter)
			_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: tc.leaf.ExtKeyUsage})
			if ie, ok := err.(x509.CertificateInvalidError); !ok || ie.Reason != x509.CANotAuthorizedForThisName {
				t.Errorf("Go's Verify under the constraint = %v, want CANotAuthorizedForThisName", err)
			}
			dir := t.TempDir()
			out, err := openssl(t, "verify", "-purpose", tc.purpose, "-CAfile", testkit.WritePEM(t, dir, "root.pem", "CERTIFICATE", root.Raw),
				"-untrusted", testkit.WritePEM(t, dir, "inter.pem", "CERTIFICATE", inter.Raw), testkit.WritePEM(t, dir, "leaf.pem", "CERTIFICATE", leaf.Raw))
			if err == nil || !strings.Contains(out, "at 0 depth lookup: "+tc.openssl) {
				t.Errorf("openssl verify under the constraint = %v, want the leaf refused with %q\n%s", err, tc.openssl, out)
			}
		})
	}
}

func selfSigned(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: newSerial(), Subject: pkix.Name{CommonName: "root"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	return create509(t, tmpl, tmpl, key.Public(), key), key
}

func create509(t *testing.T, tmpl, parent *x509.Certificate, pub any, signer *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
