package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

var (
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidSAN              = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidSKI              = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidAKI              = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidNameConstraints  = asn1.ObjectIdentifier{2, 5, 29, 30}
	oidCustom           = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 55555, 1}
)

// hostileCSR asks for everything a leaf must not get: CA:TRUE, certSign,
// codeSigning, a name constraint, a custom extension, a forged subject and
// SANs of every kind, one of which (allowed.local) the profile allows.
func hostileCSR(t *testing.T, key crypto.Signer) *x509.CertificateRequest {
	t.Helper()
	mustMarshal := func(v any) []byte {
		b, err := asn1.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	bc := mustMarshal(struct {
		IsCA       bool
		MaxPathLen int
	}{true, 5})
	ku := mustMarshal(asn1.BitString{Bytes: []byte{0x06}, BitLength: 7}) // keyCertSign|cRLSign
	eku := mustMarshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 3}})
	return testkit.NewCSR(t, key, &x509.CertificateRequest{
		Subject: pkix.Name{
			CommonName:   "Hearth Root CA",
			Organization: []string{"Hearth"},
			Country:      []string{"ZZ"},
		},
		DNSNames:       []string{"ALLOWED.local", "evil.example", "allowed.local"},
		IPAddresses:    []net.IP{net.ParseIP("10.6.6.6")},
		EmailAddresses: []string{"mallory@evil.example"},
		URIs:           []*url.URL{protocol.DeviceURI("other-device"), {Scheme: "https", Host: "evil.example"}},
		ExtraExtensions: []pkix.Extension{
			{Id: oidBasicConstraints, Critical: true, Value: bc},
			{Id: oidKeyUsage, Critical: true, Value: ku},
			{Id: oidExtKeyUsage, Value: eku},
			{Id: oidNameConstraints, Critical: true, Value: mustMarshal(struct{}{})},
			{Id: oidCustom, Value: []byte{0x05, 0x00}},
		},
	})
}

// leafProfile is a 30-day profile at at that allows two DNS names.
func leafProfile(at time.Time) policy.Profile {
	p := leafAt(at)
	p.DNSNames = []string{"allowed.local", "other.local"}
	return p
}

func TestSignLeafTakesOnlyPublicKey(t *testing.T) {
	c, _ := newTestCA(t)
	key := testkit.NewKey(t)
	csr := hostileCSR(t, key)
	leaf, err := c.SignLeaf(csr, "kitchen-plug.1", leafProfile(testNow))
	if err != nil {
		t.Fatalf("SignLeaf(hostile CSR) = %v", err)
	}
	if !publicKeyEqual(leaf.PublicKey, key.Public()) {
		t.Error("leaf public key is not the CSR's")
	}
	var oids []string
	for _, e := range leaf.Extensions {
		oids = append(oids, e.Id.String())
	}
	slices.Sort(oids)
	wantOIDs := []string{oidSKI.String(), oidKeyUsage.String(), oidSAN.String(), oidBasicConstraints.String(), oidAKI.String(), oidExtKeyUsage.String()}
	slices.Sort(wantOIDs)
	if diff := cmp.Diff(wantOIDs, oids); diff != "" {
		t.Errorf("leaf extensions (-want +got):\n%s", diff)
	}
	type view struct {
		Subject              string
		IsCA, BCValid        bool
		KeyUsage             x509.KeyUsage
		ExtKeyUsage          []x509.ExtKeyUsage
		DNS, IPs, Emails     []string
		URIs                 []string
		NotBefore, NotAfter  time.Time
		AKI                  []byte
		SKILen, SerialMaxBit int
	}
	got := view{
		Subject: leaf.Subject.String(), IsCA: leaf.IsCA, BCValid: leaf.BasicConstraintsValid,
		KeyUsage: leaf.KeyUsage, ExtKeyUsage: leaf.ExtKeyUsage, DNS: leaf.DNSNames,
		NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, AKI: leaf.AuthorityKeyId,
		SKILen: len(leaf.SubjectKeyId), SerialMaxBit: min(leaf.SerialNumber.BitLen(), 128),
	}
	for _, ip := range leaf.IPAddresses {
		got.IPs = append(got.IPs, ip.String())
	}
	got.Emails = leaf.EmailAddresses
	for _, u := range leaf.URIs {
		got.URIs = append(got.URIs, u.String())
	}
	want := view{
		Subject: "CN=kitchen-plug.1", BCValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		DNS:         []string{"allowed.local"},
		URIs:        []string{"urn:hearth:device:kitchen-plug.1"},
		NotBefore:   testNow.Add(-time.Minute), NotAfter: testNow.Add(30 * 24 * time.Hour),
		AKI: c.Intermediate().SubjectKeyId, SKILen: 20, SerialMaxBit: leaf.SerialNumber.BitLen(),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("leaf (-want +got):\n%s", diff)
	}
	if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %x: want positive, at most 128 bits", leaf.SerialNumber)
	}
	if id, err := protocol.DeviceIDFromCert(leaf); err != nil || id != "kitchen-plug.1" {
		t.Errorf("protocol.DeviceIDFromCert(leaf) = %q, %v, want kitchen-plug.1", id, err)
	}
	if err := c.Verify(leaf, testNow); err != nil {
		t.Errorf("Verify(leaf) = %v", err)
	}
}

// TestSignLeafOpenSSL checks the leaf with a real openssl: the chain
// verifies for TLS client use, and -text shows exactly the expected
// extensions and none of what the CSR asked for.
func TestSignLeafOpenSSL(t *testing.T) {
	testkit.RequirePeer(t, "openssl")
	c, _ := newTestCA(t)
	key := testkit.NewKey(t)
	leaf, err := c.SignLeaf(hostileCSR(t, key), "dev-1", leafProfile(time.Now()))
	if err != nil {
		t.Fatalf("SignLeaf = %v", err)
	}
	tmp := t.TempDir()
	rootPath, interPath := writeChain(t, c, tmp)
	leafPath := testkit.WritePEM(t, tmp, "leaf.pem", "CERTIFICATE", leaf.Raw)

	out, err := openssl(t, "verify", "-purpose", "sslclient", "-CAfile", rootPath, "-untrusted", interPath, leafPath)
	if err != nil || !strings.Contains(out, leafPath+": OK") {
		t.Fatalf("openssl verify = %v\n%s", err, out)
	}
	out, err = openssl(t, "x509", "-in", leafPath, "-noout", "-text")
	if err != nil {
		t.Fatalf("openssl x509 -text = %v\n%s", err, out)
	}
	var exts []string
	for line := range strings.Lines(out) {
		if l := strings.TrimSpace(line); strings.HasPrefix(l, "X509v3 ") {
			exts = append(exts, l)
		}
	}
	wantExts := []string{
		"X509v3 extensions:",
		"X509v3 Key Usage: critical",
		"X509v3 Extended Key Usage:",
		"X509v3 Basic Constraints: critical",
		"X509v3 Subject Key Identifier:",
		"X509v3 Authority Key Identifier:",
		"X509v3 Subject Alternative Name:",
	}
	if diff := cmp.Diff(wantExts, exts); diff != "" {
		t.Errorf("openssl extension lines (-want +got):\n%s\n%s", diff, out)
	}
	for _, want := range []string{
		"Subject: CN = dev-1\n",
		"Digital Signature\n",
		"TLS Web Client Authentication\n",
		"CA:FALSE\n",
		"DNS:allowed.local, URI:urn:hearth:device:dev-1\n",
		"ASN1 OID: prime256v1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("openssl x509 -text lacks %q:\n%s", want, out)
		}
	}
	for _, bad := range []string{"CA:TRUE", "Certificate Sign", "Code Signing", "evil", "IP Address", "email", "other-device", "Hearth Root CA\n", "ZZ", "1.3.6.1.4.1.55555", "Name Constraints"} {
		if strings.Contains(out, bad) {
			t.Errorf("openssl x509 -text contains %q:\n%s", bad, out)
		}
	}
}

func TestSignLeafKeyPolicy(t *testing.T) {
	c, _ := newTestCA(t)
	ecKey := func(curve elliptic.Curve) crypto.Signer {
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	rsaKey := func(bits int) crypto.Signer {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name    string
		key     crypto.Signer
		wantErr error
		wantKU  x509.KeyUsage
	}{
		{"p256", ecKey(elliptic.P256()), nil, x509.KeyUsageDigitalSignature},
		{"p384", ecKey(elliptic.P384()), nil, x509.KeyUsageDigitalSignature},
		{"ed25519", edKey, nil, x509.KeyUsageDigitalSignature},
		{"rsa2048", rsaKey(2048), nil, x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment},
		{"rsa1024", rsaKey(1024), ErrWeakKey, 0},
		{"p224", ecKey(elliptic.P224()), ErrWeakKey, 0},
		{"p521", ecKey(elliptic.P521()), ErrUnsupportedKey, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf, err := c.SignLeaf(testkit.NewCSR(t, tt.key, nil), "dev", leafAt(testNow))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("SignLeaf(%s CSR) = %v, want %v", tt.name, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if leaf.KeyUsage != tt.wantKU {
				t.Errorf("SignLeaf(%s CSR).KeyUsage = %v, want %v", tt.name, leaf.KeyUsage, tt.wantKU)
			}
			if got := protocol.KeyAlgorithmOf(leaf.PublicKey); string(got) != tt.name {
				t.Errorf("KeyAlgorithmOf(leaf) = %q, want %q", got, tt.name)
			}
		})
	}
}

func TestSignLeafRefusals(t *testing.T) {
	c, _ := newTestCA(t)
	key := testkit.NewKey(t)
	good := testkit.NewCSR(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "dev-1"}})
	tamper := func(mutate func(der []byte)) *x509.CertificateRequest {
		der := slices.Clone(good.Raw)
		mutate(der)
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatalf("tampered CSR no longer parses: %v", err)
		}
		return csr
	}
	tests := []struct {
		name     string
		csr      *x509.CertificateRequest
		deviceID string
		profile  policy.Profile
		wantErr  error
	}{
		{"signature byte flipped", tamper(func(der []byte) { der[len(der)-1] ^= 0x01 }), "dev-1", leafAt(testNow), ErrBadSignature},
		{"subject changed after signing", tamper(func(der []byte) {
			i := strings.Index(string(der), "dev-1")
			der[i+4] = '2'
		}), "dev-1", leafAt(testNow), ErrBadSignature},
		{"nil CSR", nil, "dev-1", leafAt(testNow), ErrBadSignature},
		{"empty device id", good, "", leafAt(testNow), ErrBadDeviceID},
		{"upper-case device id", good, "Dev-1", leafAt(testNow), ErrBadDeviceID},
		{"device id with slash", good, "a/b", leafAt(testNow), ErrBadDeviceID},
		{"device id starting with '_'", good, "_x", leafAt(testNow), ErrBadDeviceID},
		// The zero profile is no leaf, not a default one.
		{"zero profile", good, "dev-1", policy.Profile{}, ErrBadProfile},
		{"not-after before not-before", good, "dev-1", policy.Profile{NotBefore: testNow, NotAfter: testNow.Add(-time.Hour)}, ErrBadProfile},
		{"empty validity", good, "dev-1", policy.Profile{NotBefore: testNow, NotAfter: testNow.Add(time.Millisecond)}, ErrBadProfile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf, err := c.SignLeaf(tt.csr, tt.deviceID, tt.profile)
			if !errors.Is(err, tt.wantErr) || leaf != nil {
				t.Errorf("SignLeaf = %v, %v, want nil, %v", leaf, err, tt.wantErr)
			}
		})
	}
}

// TestSignLeafProfile checks that the leaf carries the profile's validity exactly (a zero
// backdate included: issue 9), its EKU and only the allowed DNS names.
func TestSignLeafProfile(t *testing.T) {
	c, _ := newTestCA(t)
	key := testkit.NewKey(t)
	csr := testkit.NewCSR(t, key, &x509.CertificateRequest{DNSNames: []string{"a.local", "b.local"}})
	interEnd := c.Intermediate().NotAfter
	tests := []struct {
		name          string
		p             policy.Profile
		wantNotBefore time.Time
		wantNotAfter  time.Time
		wantEKU       []x509.ExtKeyUsage
		wantDNS       []string
	}{
		{"default, truncated to the second", leafAt(testNow.Add(1500 * time.Millisecond)),
			testNow.Add(-time.Minute + time.Second), testNow.Add(30*24*time.Hour + time.Second),
			[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil},
		{"no backdate", policy.Profile{NotBefore: testNow, NotAfter: testNow.Add(time.Hour)},
			testNow, testNow.Add(time.Hour),
			[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil},
		{"server auth, 7 days, backdate 5m", policy.Profile{NotBefore: testNow.Add(-5 * time.Minute), NotAfter: testNow.Add(7 * 24 * time.Hour),
			ServerAuth: true, DNSNames: []string{"B.LOCAL", "c.local"}},
			testNow.Add(-5 * time.Minute), testNow.Add(7 * 24 * time.Hour),
			[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}, []string{"b.local"}},
		{"clamped to intermediate", leafAt(interEnd.Add(-24 * time.Hour)),
			interEnd.Add(-24*time.Hour - time.Minute), interEnd,
			[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf, err := c.SignLeaf(csr, "dev", tt.p)
			if err != nil {
				t.Fatalf("SignLeaf = %v", err)
			}
			if !leaf.NotBefore.Equal(tt.wantNotBefore) || !leaf.NotAfter.Equal(tt.wantNotAfter) {
				t.Errorf("validity = %v..%v, want %v..%v", leaf.NotBefore, leaf.NotAfter, tt.wantNotBefore, tt.wantNotAfter)
			}
			if diff := cmp.Diff(tt.wantEKU, leaf.ExtKeyUsage); diff != "" {
				t.Errorf("ExtKeyUsage (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantDNS, leaf.DNSNames); diff != "" {
				t.Errorf("DNSNames (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := c.SignLeaf(csr, "dev", leafAt(interEnd.Add(time.Hour))); err == nil {
		t.Error("SignLeaf after the intermediate expired = nil error")
	}
	// The policy's crl_url becomes the leaf's CRL distribution point; none without it.
	withCDP := leafAt(testNow)
	withCDP.CRLDistributionPoints = []string{"http://hub.local:8099/crl"}
	leaf, err := c.SignLeaf(csr, "dev", withCDP)
	if err != nil || !slices.Equal(leaf.CRLDistributionPoints, withCDP.CRLDistributionPoints) {
		t.Errorf("SignLeaf(crl_url) CRLDistributionPoints = %q, %v, want %q", leaf.CRLDistributionPoints, err, withCDP.CRLDistributionPoints)
	}
	if leaf, _ := c.SignLeaf(csr, "dev", leafAt(testNow)); len(leaf.CRLDistributionPoints) != 0 {
		t.Errorf("SignLeaf without crl_url has CRL distribution points %q", leaf.CRLDistributionPoints)
	}
}

// TestServerCertificate runs a real TLS handshake on 127.0.0.1 against the
// hub's server certificate, trusting only the root.
func TestServerCertificate(t *testing.T) {
	c, _ := newTestCA(t)
	now := time.Now()
	cert, err := c.ServerCertificate([]string{"hearth.local", "127.0.0.1", "::1"}, now)
	if err != nil {
		t.Fatalf("ServerCertificate = %v", err)
	}
	if len(cert.Certificate) != 2 || string(cert.Certificate[1]) != string(c.Intermediate().Raw) {
		t.Errorf("chain has %d certificates, want leaf + intermediate", len(cert.Certificate))
	}
	if diff := cmp.Diff([]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, cert.Leaf.ExtKeyUsage); diff != "" {
		t.Errorf("ExtKeyUsage (-want +got):\n%s", diff)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx := t.Context()
	handshakes := make(chan error)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return // listener closed
			}
			err = conn.(*tls.Conn).HandshakeContext(ctx)
			conn.Close()
			handshakes <- err
		}
	}()
	for _, serverName := range []string{"hearth.local", "127.0.0.1"} {
		t.Run(serverName, func(t *testing.T) {
			d := tls.Dialer{Config: &tls.Config{RootCAs: c.Roots(), ServerName: serverName, MinVersion: tls.VersionTLS12}}
			conn, err := d.DialContext(t.Context(), "tcp", ln.Addr().String())
			if err == nil {
				conn.Close()
			}
			if serr := <-handshakes; err != nil || serr != nil {
				t.Errorf("TLS handshake with ServerName %q: client %v, server %v", serverName, err, serr)
			}
		})
	}
	for _, bad := range [][]string{nil, {"bad host"}, {"-x.local"}, {""}} {
		if _, err := c.ServerCertificate(bad, now); err == nil {
			t.Errorf("ServerCertificate(%q) = nil error", bad)
		}
	}
}
