package ca

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/policy"
)

// testIterations keeps PBKDF2 cheap in tests that do not measure it.
const testIterations = 1000

var testPass = []byte("correct horse battery staple")

// testNow is the instant every test CA is created at.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// leafAt is the profile of a 30-day leaf signed at now with a one-minute backdate, what
// policy.Default admits.
func leafAt(now time.Time) policy.Profile {
	start := now.UTC().Truncate(time.Second)
	return policy.Profile{Class: policy.DefaultClass, NotBefore: start.Add(-time.Minute), NotAfter: start.Add(30 * 24 * time.Hour)}
}

// newTestCA creates a CA in a fresh temporary directory.
func newTestCA(t testing.TB) (*CA, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	c, err := create(dir, testPass, testNow, testIterations)
	if err != nil {
		t.Fatalf("create(%q) = %v", dir, err)
	}
	return c, dir
}

// newCSR returns a parsed CSR signed by key built from tmpl.
func newCSR(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) *x509.CertificateRequest {
	t.Helper()
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatalf("CreateCertificateRequest: %v", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatalf("ParseCertificateRequest: %v", err)
	}
	return csr
}

// writePEM writes DER as one PEM block of type typ and returns the path.
func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// opensslPath returns the openssl binary or skips the test.
func opensslPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	return p
}

// openssl runs openssl with args and returns stdout+stderr and the error.
func openssl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), opensslPath(t), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// writeChain writes the CA's root and intermediate into dir for openssl.
func writeChain(t *testing.T, c *CA, dir string) (rootPath, interPath string) {
	t.Helper()
	return writePEM(t, dir, "root.pem", "CERTIFICATE", c.Root().Raw),
		writePEM(t, dir, "intermediate.pem", "CERTIFICATE", c.Intermediate().Raw)
}
