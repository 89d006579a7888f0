package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/protocol"
)

// caEnv returns an env func serving only HEARTH_CA_PASSPHRASE and, if
// given, HEARTH_DATA.
func caEnv(pass string, dataDir ...string) func(string) string {
	return func(k string) string {
		switch {
		case k == ca.PassphraseEnv:
			return pass
		case k == "HEARTH_DATA" && len(dataDir) > 0:
			return dataDir[0]
		}
		return ""
	}
}

// runCATest runs runCA and returns stdout, stderr and the error.
func runCATest(t *testing.T, env func(string) string, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if len(args) > 0 && args[0] == "init" {
		// The production KDF cost is covered by the ca package's tests.
		args = append([]string{"init", "--kdf-iterations", "1000"}, args[1:]...)
	}
	err := run(t.Context(), append([]string{"ca"}, args...), nil, &stdout, &stderr, env)
	return stdout.String(), stderr.String(), err
}

func TestRunCAInitShow(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	env := caEnv("s3cret passphrase")
	out, errOut, err := runCATest(t, env, "init", "--data", data)
	if err != nil {
		t.Fatalf("ca init = %v\nstderr: %s", err, errOut)
	}
	root, inter, err := ca.ReadCertificates(ca.Dir(data))
	if err != nil {
		t.Fatalf("ReadCertificates after ca init = %v", err)
	}
	if _, err := ca.Load(ca.Dir(data), []byte("s3cret passphrase")); err != nil {
		t.Errorf("Load with the env passphrase = %v", err)
	}
	fp := protocol.FingerprintOf(root).String()
	if !strings.Contains(out, fp) {
		t.Errorf("ca init output lacks the fingerprint %s:\n%s", fp, out)
	}
	if errOut != "" {
		t.Errorf("ca init with %s wrote to stderr: %s", ca.PassphraseEnv, errOut)
	}
	if _, err := os.Stat(ca.PassphrasePath(data)); err == nil {
		t.Error("ca init with the env passphrase wrote a fallback passphrase file")
	}

	out, _, err = runCATest(t, caEnv(""), "show", "--data", data)
	if err != nil {
		t.Fatalf("ca show = %v", err)
	}
	for _, want := range []string{fp, protocol.FingerprintOf(inter).String(), "CN=Hearth Root CA,O=Hearth", "CN=Hearth Intermediate CA,O=Hearth",
		string(protocol.KeyP256), root.NotAfter.UTC().Format(time.RFC3339), inter.NotBefore.UTC().Format(time.RFC3339),
		root.SerialNumber.Text(16), inter.SerialNumber.Text(16)} {
		if !strings.Contains(out, want) {
			t.Errorf("ca show lacks %q:\n%s", want, out)
		}
	}

	out, _, err = runCATest(t, caEnv(""), "show", "--json", "--data", data)
	if err != nil {
		t.Fatalf("ca show --json = %v", err)
	}
	var got caShowJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("ca show --json output does not parse: %v\n%s", err, out)
	}
	if got.Fingerprint != fp || got.Root.Fingerprint != fp || got.Intermediate.Fingerprint != protocol.FingerprintOf(inter).String() {
		t.Errorf("ca show --json fingerprints = %s, %s, %s; want %s, %s", got.Fingerprint, got.Root.Fingerprint, got.Intermediate.Fingerprint, fp, protocol.FingerprintOf(inter).String())
	}
	if !got.Intermediate.NotAfter.Equal(inter.NotAfter) || got.Root.KeyAlgorithm != protocol.KeyP256 || got.Intermediate.Issuer != root.Subject.String() {
		t.Errorf("ca show --json intermediate = %+v", got.Intermediate)
	}

	if _, _, err := runCATest(t, env, "init", "--data", data); !errors.Is(err, ca.ErrExists) {
		t.Errorf("second ca init = %v, want ErrExists", err)
	}
}

// TestRunCAInitGeneratesPassphraseOutsideData: with no passphrase given, ca init generates
// one into the passphrase store, never into the data directory beside the keys.
func TestRunCAInitGeneratesPassphraseOutsideData(t *testing.T) {
	data := t.TempDir()
	store := filepath.Join(t.TempDir(), "hearth", "ca-passphrase")
	env := func(k string) string { return map[string]string{"HEARTH_CA_PASSPHRASE_STORE": store}[k] }
	_, errOut, err := runCATest(t, env, "init", "--data", data)
	if err != nil {
		t.Fatalf("ca init = %v", err)
	}
	if !strings.Contains(errOut, store) || !strings.Contains(errOut, "Keep a copy") {
		t.Errorf("ca init without a passphrase does not say where it put it (%s):\n%s", store, errOut)
	}
	if _, err := os.Stat(ca.PassphrasePath(data)); err == nil {
		t.Errorf("ca init wrote %s beside the keys", ca.PassphrasePath(data))
	}
	pass, src, err := ca.ResolvePassphrase(data, ca.PassphraseOptions{Store: store})
	if err != nil || src != ca.PassphraseFromStore {
		t.Fatalf("ResolvePassphrase = %v, %v; want the store", src, err)
	}
	if _, err := ca.Load(ca.Dir(data), pass); err != nil {
		t.Errorf("Load with the generated passphrase = %v", err)
	}
	// Without a store (no HOME, no setting) and no passphrase, ca init refuses.
	if _, _, err := runCATest(t, caEnv(""), "init", "--data", t.TempDir()); !errors.Is(err, ca.ErrNoPassphrase) {
		t.Errorf("ca init with nowhere to keep a passphrase = %v, want ErrNoPassphrase", err)
	}
}

func TestRunCAPassphraseFile(t *testing.T) {
	data := t.TempDir()
	file := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(file, []byte("from a file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := runCATest(t, caEnv("ignored"), "init", "--data", data, "--passphrase-file", file); err != nil {
		t.Fatalf("ca init --passphrase-file = %v\n%s", err, errOut)
	}
	if _, err := ca.Load(ca.Dir(data), []byte("from a file")); err != nil {
		t.Errorf("Load with the file's passphrase = %v", err)
	}
}

func TestRunCADataDirFromEnv(t *testing.T) {
	data := t.TempDir()
	if _, errOut, err := runCATest(t, caEnv("pass phrase", data), "init"); err != nil {
		t.Fatalf("ca init with HEARTH_DATA = %v\n%s", err, errOut)
	}
	if _, _, err := ca.ReadCertificates(ca.Dir(data)); err != nil {
		t.Errorf("no CA in $HEARTH_DATA/ca after ca init: %v", err)
	}
	if _, _, err := runCATest(t, caEnv("", data), "show"); err != nil {
		t.Errorf("ca show with HEARTH_DATA = %v", err)
	}
}

func TestRunCAErrors(t *testing.T) {
	empty := t.TempDir()
	tests := []struct {
		name    string
		args    []string
		wantErr error
	}{
		{"no subcommand", nil, errUsage},
		{"unknown subcommand", []string{"rotate"}, errUsage},
		{"unknown flag", []string{"show", "--frobnicate"}, errUsage},
		{"extra argument", []string{"show", "--data", empty, "extra"}, errUsage},
		{"show without CA", []string{"show", "--data", empty}, ca.ErrNotInitialized},
		{"help", []string{"show", "-h"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := runCATest(t, caEnv("x"), tt.args...); !errors.Is(err, tt.wantErr) {
				t.Errorf("runCA(%q) = %v, want %v", tt.args, err, tt.wantErr)
			}
		})
	}
	args := []string{"init", "--data", empty, "--kdf-iterations", "10"}
	if _, _, err := runCATest(t, caEnv("x"), args...); err == nil {
		t.Errorf("runCA(%q) = nil error, want too few iterations refused", args)
	}
	if _, err := os.Stat(filepath.Join(ca.Dir(empty), "root.pem")); err == nil {
		t.Errorf("runCA(%q) created a CA", args)
	}
}
