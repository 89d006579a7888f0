package ca

import (
	"strings"
	"testing"

	"github.com/hearth-pki/hearth/protocol"
)

// TestFingerprintMatchesOpenSSL checks that the root's fingerprint is the one people see in
// openssl x509 -fingerprint -sha256, in the protocol's written form.
func TestFingerprintMatchesOpenSSL(t *testing.T) {
	c, _ := newTestCA(t)
	fp := c.Fingerprint()
	if want := protocol.FingerprintOf(c.Root()).String(); fp != want {
		t.Fatalf("Fingerprint() = %q, want protocol's %q", fp, want)
	}
	rootPath, _ := writeChain(t, c, t.TempDir())
	out, err := openssl(t, "x509", "-in", rootPath, "-noout", "-fingerprint", "-sha256")
	if err != nil {
		t.Fatalf("openssl x509 -fingerprint = %v\n%s", err, out)
	}
	_, val, _ := strings.Cut(strings.TrimSpace(out), "=")
	if got, err := protocol.ParseFingerprint(val); err != nil || got.String() != fp {
		t.Errorf("ParseFingerprint(openssl %q) = %s, %v, want %s", val, got, err, fp)
	}
}
