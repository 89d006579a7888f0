package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEnrollRefusesAnotherIdentity checks that enroll does not silently overwrite the
// identity of another device, or of another hub, in its state directory (issue 16).
func TestEnrollRefusesAnotherIdentity(t *testing.T) {
	now := time.Now()
	dir := stateDir(t, now.Add(-time.Hour), now.Add(24*time.Hour))
	for _, tc := range []struct{ name, hub, id string }{
		{"other device", "mqtts://hub.local:8883", "boiler-2"},
		{"other hub", "mqtts://other.local:8883", "boiler-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := runCLI(t, "enroll", "--dir", dir, "--hub", tc.hub, "--id", tc.id, "--token", "hst_x",
				"--ca-fingerprint", "SHA256:00")
			if code != 1 || !strings.Contains(errOut, "already holds the identity of boiler-1") || !strings.Contains(errOut, "--force") {
				t.Errorf("enroll as %s at %s into boiler-1's directory = exit %d, %q; want exit 1 asking for --force", tc.id, tc.hub, code, errOut)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		t.Errorf("the refused enrollment touched the directory: %v", err)
	}
}

func TestReadToken(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("  hst_fromfile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := readToken(file); err != nil || got != "hst_fromfile" {
		t.Errorf("readToken(file) = %q, %v; want hst_fromfile", got, err)
	}
	old := stdin
	t.Cleanup(func() { stdin = old })
	stdin = strings.NewReader("hst_fromstdin\n")
	if got, err := readToken("-"); err != nil || got != "hst_fromstdin" {
		t.Errorf("readToken(-) = %q, %v; want hst_fromstdin", got, err)
	}
	stdin = strings.NewReader("\n")
	if _, err := readToken("-"); err == nil {
		t.Errorf("readToken(-) of an empty stdin = nil error, want one")
	}
}
