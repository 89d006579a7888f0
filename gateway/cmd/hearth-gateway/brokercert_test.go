package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/hearth-pki/hearth/gateway/internal/ca"
)

// TestCABrokerCert: ca broker-cert writes a chain that verifies to the hub's root for the
// names given, with the matching key; without --hosts it refuses and writes nothing.
func TestCABrokerCert(t *testing.T) {
	data, out := t.TempDir(), t.TempDir()
	env := func(k string) string {
		if k == ca.PassphraseEnv {
			return "broker cert passphrase"
		}
		return ""
	}
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"ca", "init", "--data", data}, nil, &stdout, &stderr, env); err != nil {
		t.Fatalf("ca init: %v %s", err, stderr.String())
	}
	if err := run(t.Context(), []string{"ca", "broker-cert", "--data", data, "--out", out}, nil, &stdout, &stderr, env); err == nil {
		t.Fatal("ca broker-cert without --hosts succeeded")
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Fatalf("a refused ca broker-cert wrote %d files", len(entries))
	}
	if err := run(t.Context(), []string{"ca", "broker-cert", "--data", data, "--out", out, "--hosts", "nats-1.lan,10.0.0.11"}, nil, &stdout, &stderr, env); err != nil {
		t.Fatalf("ca broker-cert: %v %s", err, stderr.String())
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(out, "mqtt.pem"), filepath.Join(out, "mqtt-key.pem"))
	if err != nil {
		t.Fatalf("the files are no key pair: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(out, "mqtt-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	root := readRoot(t, data)
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	inter := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		c, _ := x509.ParseCertificate(der)
		inter.AddCert(c)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	for _, host := range []string{"nats-1.lan", "10.0.0.11"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: host}); err != nil {
			t.Errorf("the certificate does not verify for %s against the hub's root: %v", host, err)
		}
	}
	if last, _ := x509.ParseCertificate(pair.Certificate[len(pair.Certificate)-1]); !last.Equal(root) {
		t.Error("the chain does not end with the root (agents check the fingerprint they pinned)")
	}
}
