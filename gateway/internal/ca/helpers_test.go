package ca

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
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

// openssl runs openssl with args and returns stdout+stderr and the error. Without openssl
// the test is skipped, or fails in CI.
func openssl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), testkit.RequirePeer(t, "openssl"), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// writeChain writes the CA's root and intermediate into dir for openssl.
func writeChain(t *testing.T, c *CA, dir string) (rootPath, interPath string) {
	t.Helper()
	return testkit.WritePEM(t, dir, "root.pem", "CERTIFICATE", c.Root().Raw),
		testkit.WritePEM(t, dir, "intermediate.pem", "CERTIFICATE", c.Intermediate().Raw)
}
