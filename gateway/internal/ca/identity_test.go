package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestValidDeviceID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"a", true},
		{"kitchen-plug_2.eu", true},
		{"0", true},
		{"_x", true},
		{strings.Repeat("a", 64), true},
		{"", false},
		{strings.Repeat("a", 65), false},
		{".hidden", false},
		{"-flag", false},
		{"Upper", false},
		{"a/b", false},
		{"a+b", false},
		{"a#", false},
		{"a b", false},
		{"é", false},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			err := ValidDeviceID(tt.id)
			if (err == nil) != tt.want || (err != nil && !errors.Is(err, ErrBadDeviceID)) {
				t.Errorf("ValidDeviceID(%q) = %v, want valid=%v", tt.id, err, tt.want)
			}
		})
	}
}

func TestDeviceIDFromCert(t *testing.T) {
	c, _ := newTestCA(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	// issue bypasses SignLeaf to build certificates SignLeaf never would.
	cert := func(cn string, uris ...*url.URL) *x509.Certificate {
		leaf, err := c.issue(&x509.Certificate{
			SerialNumber: newSerial(), Subject: pkix.Name{CommonName: cn},
			NotBefore: testNow, NotAfter: testNow.Add(time.Hour), URIs: uris,
		}, key.Public())
		if err != nil {
			t.Fatal(err)
		}
		return leaf
	}
	tests := []struct {
		name   string
		cert   *x509.Certificate
		wantID string
	}{
		{"good", cert("dev-1", DeviceURI("dev-1"), &url.URL{Scheme: "https", Host: "x"}), "dev-1"},
		{"no URI", cert("dev-1"), ""},
		{"CN differs", cert("dev-2", DeviceURI("dev-1")), ""},
		{"two device URIs", cert("dev-1", DeviceURI("dev-1"), DeviceURI("dev-2")), ""},
		{"invalid id", cert("Dev-1", DeviceURI("Dev-1")), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := DeviceIDFromCert(tt.cert)
			if id != tt.wantID || (tt.wantID == "") != errors.Is(err, ErrBadDeviceID) {
				t.Errorf("DeviceIDFromCert = %q, %v, want %q", id, err, tt.wantID)
			}
		})
	}
}

func TestFingerprint(t *testing.T) {
	c, _ := newTestCA(t)
	fp := c.Fingerprint()
	if len(fp) != 71 || !strings.HasPrefix(fp, "SHA256:") || strings.ToLower(fp[7:]) != fp[7:] {
		t.Fatalf("Fingerprint() = %q, want SHA256: and 64 lowercase hex digits", fp)
	}
	hexPart := fp[7:]
	var colons []string
	for i := 0; i < len(hexPart); i += 2 {
		colons = append(colons, strings.ToUpper(hexPart[i:i+2]))
	}
	tests := []struct {
		in, want string
	}{
		{fp, fp},
		{hexPart, fp},
		{"sha256:" + strings.ToUpper(hexPart), fp},
		{"SHA256:" + strings.Join(colons, ":"), fp},
		{"  " + fp + "\n", fp},
		{"SHA256:" + hexPart[2:], ""},
		{"SHA256:" + hexPart + "00", ""},
		{"SHA256:" + strings.Repeat("g", 64), ""},
		{"MD5:" + hexPart, ""},
		{"", ""},
	}
	for _, tt := range tests {
		got, err := ParseFingerprint(tt.in)
		if got != tt.want || (tt.want == "") != (err != nil) {
			t.Errorf("ParseFingerprint(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
		}
	}
	// The same value as openssl prints.
	rootPath, _ := writeChain(t, c, t.TempDir())
	out, err := openssl(t, "x509", "-in", rootPath, "-noout", "-fingerprint", "-sha256")
	if err != nil {
		t.Fatalf("openssl x509 -fingerprint = %v\n%s", err, out)
	}
	_, val, _ := strings.Cut(strings.TrimSpace(out), "=")
	if got, err := ParseFingerprint(val); err != nil || got != fp {
		t.Errorf("ParseFingerprint(openssl %q) = %q, %v, want %q", val, got, err, fp)
	}
}
