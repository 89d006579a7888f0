package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
)

// TestRelease runs scripts/release.sh (two agent targets; TestAgentsEndToEnd runs all nine)
// and checks what it ships: every file in SHA256SUMS with its sum, both hubs start ("version"
// prints the release's version; arm64 under qemu-user with the cross libc), and the add-on
// tarball is an add-on repository.
func TestRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-builds the hub")
	}
	testkit.RequirePeer(t, "aarch64-linux-gnu-gcc")
	testkit.RequirePeer(t, "xz")
	qemu := testkit.RequirePeer(t, "qemu-aarch64-static")
	dist := t.TempDir()
	cmd := exec.CommandContext(t.Context(), "bash", filepath.Join(repoRoot(t), "scripts", "release.sh"), "9.8.7-test")
	cmd.Env = append(os.Environ(), "DIST="+dist, "TARGETS=linux-amd64 linux-mipsle")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/release.sh: %v\n%s", err, out)
	}

	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(sums)), "\n") {
		sum, name, _ := strings.Cut(line, "  ")
		b, err := os.ReadFile(filepath.Join(dist, name))
		if err != nil {
			t.Errorf("SHA256SUMS lists %s: %v", name, err)
			continue
		}
		if got := sha256.Sum256(b); hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s: sha256 %x, SHA256SUMS says %s", name, got, sum)
		}
		listed[name] = true
	}
	for _, want := range []string{"hearth-agent-linux-amd64", "hearth-agent-linux-mipsle", "hearth-gateway-linux-amd64",
		"hearth-gateway-linux-arm64", "hearth-addon-9.8.7-test.tar.gz"} {
		if !listed[want] {
			t.Errorf("SHA256SUMS lacks %s:\n%s", want, sums)
		}
	}

	for _, run := range [][]string{
		{filepath.Join(dist, "hearth-gateway-linux-amd64"), "version"},
		{qemu, "-L", "/usr/aarch64-linux-gnu", filepath.Join(dist, "hearth-gateway-linux-arm64"), "version"},
	} {
		out, err := exec.CommandContext(t.Context(), run[0], run[1:]...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "9.8.7-test") {
			t.Errorf("%q = %v, %q; want the release's version", run, err, out)
		}
	}

	files := tarNames(t, filepath.Join(dist, "hearth-addon-9.8.7-test.tar.gz"))
	for _, want := range []string{"./repository.yaml", "./hearth/config.yaml", "./hearth/Dockerfile", "./hearth/build.yaml", "./hearth/src/gateway/go.mod"} {
		if !files[want] {
			t.Errorf("the add-on tarball lacks %s", want)
		}
	}
}

func tarNames(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	names := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names[h.Name] = true
	}
}
