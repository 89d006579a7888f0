package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s changed (go test -update after a deliberate change):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func noEnv(string) string { return "" }

// runCLI runs a command line as main would, returning its output and exit status.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(t.Context(), args, strings.NewReader(""), &out, &errb, noEnv)
	status = exitStatus(err, &errb)
	return out.String(), errb.String(), status
}

// TestHelpGolden locks every command's --help, and the overview, against testdata/help/.
func TestHelpGolden(t *testing.T) {
	out, _, status := runCLI(t, "help")
	if status != 0 {
		t.Errorf("help exit status %d, want 0", status)
	}
	golden(t, "help/overview.txt", out)
	checkHints(t, out)
	groups := map[string]bool{}
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			for _, h := range []string{"--help", "-h"} {
				args := append(strings.Fields(c.name), h)
				out, errOut, status := runCLI(t, args...)
				if status != 0 || errOut != "" {
					t.Errorf("%s = exit %d, stderr %q; want exit 0 and help on stdout", strings.Join(args, " "), status, errOut)
				}
				for _, want := range []string{"Usage: hearth-gateway " + c.name, "Examples:\n", "hearth-gateway " + c.name + " "} {
					if !strings.Contains(out, want) {
						t.Errorf("%s lacks %q:\n%s", strings.Join(args, " "), want, out)
					}
				}
				golden(t, "help/"+strings.ReplaceAll(c.name, " ", "-")+".txt", out)
				checkHints(t, out)
			}
		})
		if g, _, ok := strings.Cut(c.name, " "); ok && !groups[g] {
			groups[g] = true
			out, _, status := runCLI(t, g, "--help")
			if status != 0 || !strings.Contains(out, c.name) {
				t.Errorf("%s --help = exit %d:\n%s\nwant exit 0 and its subcommands listed", g, status, out)
			}
			checkHints(t, out)
		}
	}
}

// TestUsageErrors checks that a command line the CLI cannot run exits 2, says what is wrong
// (and what exists) and names a help command that works.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "no command given"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"; commands: serve, ca, token`},
		{"group without subcommand", []string{"device"}, "device: give a subcommand: show, import, sign"},
		{"unknown subcommand", []string{"token", "delete"}, `token: unknown subcommand "delete"; token has: create`},
		{"flag of another command", []string{"devices", "--canary", "3"}, "devices: flag provided but not defined: -canary"},
		{"missing id", []string{"device", "show"}, "device show: missing ID"},
		{"extra argument", []string{"devices", "extra"}, `devices: unexpected argument "extra"`},
		{"renew without selection", []string{"renew"}, "renew: give a device ID, or --all, --family F or --class C"},
		{"renew id and selection", []string{"renew", "x", "--all"}, "renew: give a device ID or a selection"},
		{"bad rate", []string{"renew", "--all", "--rate", "fast"}, `renew: --rate "fast"`},
		{"serve flag", []string{"serve", "--bogus"}, "serve: flag provided but not defined: -bogus"},
		{"serve argument", []string{"serve", "now"}, `serve: unexpected argument "now"`},
		{"ca", []string{"ca", "rotate"}, `ca: unknown subcommand "rotate"; ca has: init, show`},
		{"events limit", []string{"events", "--limit", "0"}, "events: --limit 0: want 1 to 1000"},
		{"token without device", []string{"token", "create"}, "token create: give the device id"},
		{"policy check without file", []string{"policy", "check"}, "policy check: missing FILE"},
		{"revoke reason not RFC 5280", []string{"revoke", "cam", "--reason", "lost"}, `revocation reason "lost" is not one of unspecified, keyCompromise`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, status := runCLI(t, tt.args...)
			if status != 2 {
				t.Errorf("%q: exit status %d, want 2; stderr:\n%s", tt.args, status, errOut)
			}
			if !strings.Contains(errOut, tt.want) {
				t.Errorf("%q: stderr = %q, want it to contain %q", tt.args, errOut, tt.want)
			}
			if strings.Contains(errOut, "invalid message") || strings.Contains(errOut, "usage error") {
				t.Errorf("%q: stderr = %q carries an internal prefix", tt.args, errOut)
			}
			checkHints(t, errOut)
		})
	}
}

// TestWithoutHub checks that every client command fails clearly, exit 1, when no hub runs on
// the data directory: renew --all used to print an empty line and exit 0.
func TestWithoutHub(t *testing.T) {
	data := t.TempDir()
	for _, args := range [][]string{
		{"devices"}, {"renew", "--all"}, {"renew", "--family", "acme"}, {"renew", "--class", "default", "--json"},
		{"renew", "thermostat"}, {"campaigns", "--json"}, {"devices", "--json"}, {"token", "create", "--device", "x"},
		{"device", "show", "x"}, {"events"}, {"audit", "verify"}, {"policy", "reload"}, {"revoke", "x"},
	} {
		out, errOut, status := runCLI(t, append(args, "--data", data)...)
		if status != 1 || out != "" || !strings.Contains(errOut, "the hub is not running") || !strings.Contains(errOut, "hearth-gateway serve") {
			t.Errorf("%q without a hub = exit %d, stdout %q, stderr %q; want exit 1, nothing on stdout, and how to start the hub",
				args, status, out, errOut)
		}
		checkHints(t, errOut)
	}
}

// hintRE matches a hearth-gateway command line in printed text: the words after the program
// name up to the first flag, placeholder or punctuation.
var hintRE = regexp.MustCompile("hearth-gateway((?: [a-z][a-z0-9.-]*)+)")

// checkHints runs every `hearth-gateway ...` command that text names with --help appended:
// each must be a real subcommand (exit status 0).
func checkHints(t *testing.T, text string) {
	t.Helper()
	for _, m := range hintRE.FindAllStringSubmatch(text, -1) {
		args := append(strings.Fields(m[1]), "--help")
		var out, errb bytes.Buffer
		if err := run(t.Context(), args, nil, &out, &errb, noEnv); err != nil {
			t.Errorf("the hint %q names no command: hearth-gateway %s = %v", m[0], strings.Join(args, " "), err)
		}
	}
}

func TestCheckHintsCatchesBadHints(t *testing.T) {
	for _, bad := range []string{"device renew", "token list"} {
		args := append(strings.Fields(bad), "--help")
		if err := run(t.Context(), args, nil, &bytes.Buffer{}, &bytes.Buffer{}, noEnv); !errors.Is(err, errUsage) {
			t.Errorf("hearth-gateway %s --help = %v, want a usage error (the hint check relies on it)", bad, err)
		}
	}
}

// TestExitStatusOfBinary runs the built binary: --help exits 0 with the help on stdout, a
// usage error exits 2.
func TestExitStatusOfBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "hearth-gateway")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, tt := range []struct {
		args   []string
		status int
	}{{[]string{"serve", "--help"}, 0}, {[]string{"devices", "--help"}, 0}, {[]string{"devices", "--bogus"}, 2}, {nil, 2},
		{[]string{"renew", "--all", "--data", t.TempDir()}, 1}} {
		cmd := exec.Command(bin, tt.args...)
		var out bytes.Buffer
		cmd.Stdout = &out
		err := cmd.Run()
		status := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			status = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if status != tt.status || (tt.status == 0 && !strings.HasPrefix(out.String(), "Usage: hearth-gateway")) {
			t.Errorf("hearth-gateway %q = exit %d, stdout %q; want exit %d", tt.args, status, out.String(), tt.status)
		}
	}
}

// TestServeBanner locks what serve prints on start (testdata/serve-banner*.txt) and runs its
// hints.
func TestServeBanner(t *testing.T) {
	for _, tt := range []struct {
		name string
		b    banner
	}{
		{"default", banner{Version: "1.0.0", Advertise: "hub.local:8883", Listening: "[::]:8883",
			Hostnames: []string{"hub.local", "hub", "192.168.1.10", "localhost", "127.0.0.1", "::1"}, HTTPListen: "127.0.0.1:8099",
			Fingerprint: "SHA256:9f86d0", DataDir: "./hearth-data"}},
		{"no users", banner{Version: "1.0.0", Advertise: "hub.local:8883", Listening: "[::]:8883",
			Hostnames: []string{"hub.local"}, HTTPListen: "127.0.0.1:8099", Fingerprint: "SHA256:9f86d0", DataDir: "./hearth-data", NoLogin: true}},
		{"lan dashboard", banner{Version: "1.0.0", Advertise: "hub.lan:8883", Listening: "[::]:8883", Hostnames: []string{"hub.lan"},
			HTTPListen: ":8099", Fingerprint: "SHA256:9f86d0", DataDir: "/var/lib/hearth"}},
		{"no dashboard", banner{Version: "1.0.0", Advertise: "10.0.0.2:8883", Listening: "10.0.0.2:8883",
			Hostnames: []string{"10.0.0.2", "localhost"}, Fingerprint: "SHA256:9f86d0", DataDir: "my data"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			printBanner(&b, tt.b)
			golden(t, "serve-banner-"+strings.ReplaceAll(tt.name, " ", "-")+".txt", b.String())
			checkHints(t, b.String())
		})
	}
}
