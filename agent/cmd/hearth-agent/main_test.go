package main

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"github.com/hearth-pki/hearth/agent/device"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/keystore"
	"github.com/hearth-pki/hearth/agent/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// stateDir makes an enrolled state directory whose certificate runs from notBefore to
// notAfter.
func stateDir(t *testing.T, notBefore, notAfter time.Time) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "hearth")
	ks, err := keystore.Open(dir, keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ca := testkit.NewCA(t, "Test")
	key, err := keystore.GenerateKey(protocol.KeyP256)
	if err != nil {
		t.Fatal(err)
	}
	leaf := ca.Issue(t, key.Public(), "boiler-1", notBefore, notAfter)
	if err := ks.Install(key, []*x509.Certificate{leaf, ca.Intermediate}); err != nil {
		t.Fatal(err)
	}
	if err := ks.WriteCA([]*x509.Certificate{ca.Intermediate, ca.Root}); err != nil {
		t.Fatal(err)
	}
	cfg := `{"v":1,"hub":"mqtts://hub.local:8883","device_id":"boiler-1","topic_prefix":"hearth","key_algorithm":"p256"}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(t.Context(), args, &out, &errb)
	code = exitCode(err, &errb)
	return out.String(), errb.String(), code
}

func TestStatus(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name     string
		dir      func(t *testing.T) string
		code     int
		enrolled bool
		expired  bool
	}{
		{"valid", func(t *testing.T) string { return stateDir(t, now.Add(-time.Hour), now.Add(29*24*time.Hour)) }, 0, true, false},
		{"expired", func(t *testing.T) string { return stateDir(t, now.Add(-31*24*time.Hour), now.Add(-24*time.Hour)) }, 3, true, true},
		{"not enrolled", func(t *testing.T) string { return t.TempDir() }, 2, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir(t)
			out, errOut, code := runCLI(t, "status", "--dir", dir, "--json")
			if code != tc.code {
				t.Errorf("status --json exit = %d, want %d (stderr %q)", code, tc.code, errOut)
			}
			var st struct {
				Enrolled bool   `json:"enrolled"`
				Expired  bool   `json:"expired"`
				DeviceID string `json:"device_id"`
				Serial   string `json:"serial"`
				TimeLeft int64  `json:"time_left"`
				Hub      string `json:"hub"`
			}
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				t.Fatalf("status --json printed %q: %v", out, err)
			}
			if st.Enrolled != tc.enrolled || st.Expired != tc.expired {
				t.Errorf("status JSON enrolled %t expired %t, want %t %t", st.Enrolled, st.Expired, tc.enrolled, tc.expired)
			}
			if tc.enrolled && (st.DeviceID != "boiler-1" || st.Serial == "" || st.Hub != "mqtts://hub.local:8883") {
				t.Errorf("status JSON = %s", out)
			}
			if tc.expired != (st.TimeLeft < 0) && tc.enrolled {
				t.Errorf("time_left = %d with expired %t", st.TimeLeft, tc.expired)
			}
			// The text form has the same exit status.
			text, _, code := runCLI(t, "status", "--dir", dir)
			if code != tc.code || !strings.Contains(text, "state dir") {
				t.Errorf("status exit = %d, want %d; printed %q", code, tc.code, text)
			}
		})
	}
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"no command", nil, 2},
		{"unknown command", []string{"frobnicate"}, 2},
		{"enroll without flags", []string{"enroll", "--dir", "/nonexistent/x"}, 2},
		{"bad log format", []string{"run", "--dir", "/nonexistent/x", "--log-format", "xml"}, 2},
		{"stray argument", []string{"status", "extra"}, 2},
		{"help", []string{"help"}, 0},
		{"run not enrolled", []string{"run", "--dir", "/nonexistent/x"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, errOut, code := runCLI(t, tc.args...); code != tc.code {
				t.Errorf("hearth-agent %q exit = %d, want %d (stderr %q)", tc.args, code, tc.code, errOut)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	out, _, code := runCLI(t, "version")
	if code != 0 || !strings.HasPrefix(out, "hearth-agent dev (protocol v1") {
		t.Errorf("version = %q, exit %d", out, code)
	}
}

// TestPrintStatusAligned: status prints two columns, every value starting where the longest
// key plus two spaces ends.
func TestPrintStatusAligned(t *testing.T) {
	var b bytes.Buffer
	printStatus(&b, device.Status{DeviceID: "hall-thermostat", Hub: "mqtts://hub:8883", Dir: "/etc/hearth", Enrolled: true,
		Serial: "0a1b", Issuer: "Hearth Intermediate CA", KeyAlgorithm: "p256", PendingRequest: "r1", ChainOK: true})
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) < 8 {
		t.Fatalf("printStatus printed %d lines:\n%s", len(lines), b.String())
	}
	col := len("pending request") + 2
	for _, l := range lines {
		if len(l) <= col || l[col-1] != ' ' || l[col] == ' ' {
			t.Errorf("line %q: the value does not start at column %d", l, col)
		}
	}
}
