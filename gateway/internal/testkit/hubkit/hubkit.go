// Package hubkit builds the hub's real parts for tests: an inventory in a temporary SQLite
// file, a hub CA, and a hub configuration for a hub on 127.0.0.1. Fakes stay in testkit;
// hubkit gives the real thing, cheap (the CA's passphrase KDF at its minimum cost).
//
// It is separate from testkit because it imports ca, inventory and config, whose own tests
// use testkit. Everything it creates is closed or removed by t.Cleanup. Tests only.
package hubkit

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
)

// Passphrase protects the keys of every CA hubkit makes, and of every hub Config starts.
const Passphrase = "test passphrase"

// AdminPassword is the password of the admin named "admin" of every hub Config starts.
const AdminPassword = "test admin password"

// Store opens an empty inventory in a temporary directory and closes it when the test ends.
func Store(t testing.TB) *inventory.Store {
	t.Helper()
	s, err := inventory.Open(t.Context(), filepath.Join(t.TempDir(), "hearth.db"))
	if err != nil {
		t.Fatalf("inventory.Open() = %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("inventory Close() = %v", err)
		}
	})
	return s
}

// CA creates a hub CA in a temporary directory as if initialised at now.
func CA(t testing.TB, now time.Time) *ca.CA {
	t.Helper()
	c, err := ca.InitWithIterations(t.TempDir(), []byte(Passphrase), now, ca.MinIterations)
	if err != nil {
		t.Fatalf("ca.InitWithIterations() = %v", err)
	}
	return c
}

// Config loads the configuration of a hub with a fresh data directory, its broker on
// 127.0.0.1:0 with a certificate for localhost and 127.0.0.1, no HTTP listener, the CA
// passphrase Passphrase and an admin "admin" with AdminPassword. yaml, when not empty, is
// the hub's configuration file.
func Config(t testing.TB, yaml string) config.Config {
	t.Helper()
	dir := t.TempDir()
	flags := []string{"--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0", "--http", "off",
		"--hostnames", "localhost,127.0.0.1"}
	if yaml != "" {
		file := filepath.Join(dir, "hearth.yaml")
		if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		flags = append(flags, "--config", file)
	}
	env := map[string]string{ca.PassphraseEnv: Passphrase, "HEARTH_ADMIN_PASSWORD": AdminPassword}
	cfg, err := config.Load(flags, func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("config.Load() = %v", err)
	}
	return cfg
}
