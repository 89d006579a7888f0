package config

import (
	"os"
	"path/filepath"
	"testing"
)

func TestPassphraseStoreFrom(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"setting", map[string]string{"HEARTH_CA_PASSPHRASE_STORE": "/srv/pass", "HOME": "/home/h"}, "/srv/pass"},
		{"systemd", map[string]string{"CONFIGURATION_DIRECTORY": "/etc/hearth:/etc/other", "HOME": "/home/h"}, "/etc/hearth/ca-passphrase"},
		{"xdg", map[string]string{"XDG_CONFIG_HOME": "/home/h/.cfg", "HOME": "/home/h"}, "/home/h/.cfg/hearth/ca-passphrase"},
		{"home", map[string]string{"HOME": "/home/h"}, "/home/h/.config/hearth/ca-passphrase"},
		{"nowhere", map[string]string{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := PassphraseStoreFrom(func(k string) string { return tc.env[k] }); got != tc.want {
				t.Errorf("PassphraseStoreFrom(%v) = %q, want %q", tc.env, got, tc.want)
			}
		})
	}
}

func TestCredentialPassphraseFrom(t *testing.T) {
	creds := t.TempDir()
	env := func(k string) string { return map[string]string{"CREDENTIALS_DIRECTORY": creds}[k] }
	if got := CredentialPassphraseFrom(env); got != "" {
		t.Errorf("CredentialPassphraseFrom(no credential) = %q, want none", got)
	}
	p := filepath.Join(creds, "hearth-ca-passphrase")
	if err := os.WriteFile(p, []byte("x"), 0o400); err != nil {
		t.Fatal(err)
	}
	if got := CredentialPassphraseFrom(env); got != p {
		t.Errorf("CredentialPassphraseFrom = %q, want %q", got, p)
	}
	c, err := Load([]string{"--data", t.TempDir()}, env)
	if err != nil {
		t.Fatal(err)
	}
	if c.CAPassphraseFile != p {
		t.Errorf("Load().CAPassphraseFile = %q, want the credential %q", c.CAPassphraseFile, p)
	}
	opts := filepath.Join(t.TempDir(), "options.json")
	if err := os.WriteFile(opts, []byte(`{}`), 0o600); err != nil {
		t.Fatal(err)
	}
	addon, err := Load([]string{"--addon"}, func(k string) string {
		return map[string]string{"HEARTH_ADDON_OPTIONS": opts, "HOME": "/root"}[k]
	})
	if err != nil {
		t.Fatalf("Load(--addon) = %v", err)
	}
	if addon.CAPassphraseStore != "" {
		t.Errorf("add-on CAPassphraseStore = %q, want none (its storage is all in its backup)", addon.CAPassphraseStore)
	}
}
