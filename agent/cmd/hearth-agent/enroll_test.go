package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/agent/device"
	"github.com/hearth-pki/hearth/agent/internal/hub"
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

// TestEnrollHint checks the fix hearth-agent enroll prints for each reason the hub gives for
// a refused enrollment (issue 16, item 4), and none for other errors.
func TestEnrollHint(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("device: enroll: %w", err) }
	for _, tc := range []struct {
		name string
		err  error
		want string // "" for no hint
	}{
		{"unknown", wrap(&device.HubError{Code: "token_unknown"}), "hearth-gateway token create --device cam"},
		{"used", wrap(&device.HubError{Code: "token_used"}), "hearth-gateway token create --device cam --replace"},
		{"expired", wrap(&device.HubError{Code: "token_expired"}), "expired"},
		{"locked out", wrap(&device.HubError{Code: "locked_out", RetryAfter: 42 * time.Second}), "wait 42s"},
		{"older hub", wrap(&hub.RefusedError{Code: 5}), "without saying why"},
		{"another refusal", wrap(&device.HubError{Code: "weak_key"}), ""},
		{"no refusal", errors.New("connection refused"), ""},
	} {
		got := enrollHint(tc.err, "cam")
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("enrollHint(%s) = %q, want it to contain %q", tc.name, got, tc.want)
		}
	}
}
