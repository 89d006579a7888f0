package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoadBroker(t *testing.T) {
	dir := t.TempDir()
	secret := func(name, value string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(value), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hub, sys, seed, empty := secret("hub", "hub-pass\n"), secret("sys", "sys-pass"), secret("seed", "SAEXAMPLE\n"), secret("empty", "\n")
	nats := func(extra string) string {
		return "broker:\n  mode: nats\n  urls: [nats://a:4222]\n  mqtt: [a:8883]\n  user: hub\n  system_user: sys\n" +
			"  password_file: " + hub + "\n  system_password_file: " + sys + "\n  issuer_seed_file: " + seed + "\n" + extra
	}
	tests := []struct {
		name, yaml string
		wantErr    string // "" for success
		want       Broker
	}{
		{"default embedded", "", "", Broker{Mode: BrokerEmbedded}},
		{"nats", nats(""), "", Broker{Mode: BrokerNATS, URLs: []string{"nats://a:4222"}, MQTT: []string{"a:8883"}, User: "hub", SystemUser: "sys",
			PasswordFile: hub, SystemPasswordFile: sys, IssuerSeedFile: seed, Account: "HEARTH",
			Password: "hub-pass", SystemPassword: "sys-pass", IssuerSeed: "SAEXAMPLE"}},
		{"unknown mode", "broker: {mode: rabbit}\n", `mode "rabbit" is not embedded or nats`, Broker{}},
		{"urls without nats", "broker: {urls: [nats://a:4222]}\n", "urls and mqtt are for mode nats", Broker{}},
		{"nats without urls", "broker: {mode: nats}\n", "urls: mode nats needs", Broker{}},
		{"bad mqtt address", strings.Replace(nats(""), "[a:8883]", "[a]", 1), `mqtt: "a" is not host:port`, Broker{}},
		{"missing secret file", strings.Replace(nats(""), hub, filepath.Join(dir, "nope"), 1), "password_file:", Broker{}},
		{"empty secret file", strings.Replace(nats(""), seed, empty, 1), "issuer_seed_file: " + empty + " is empty", Broker{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "hearth.yaml")
			if err := os.WriteFile(file, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Load([]string{"--config", file}, envOf(nil))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Load(%q) = %v, want an error containing %q", tt.yaml, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load(%q) = %v", tt.yaml, err)
			}
			if diff := cmp.Diff(tt.want, c.Broker); diff != "" {
				t.Errorf("Load(%q).Broker (-want +got):\n%s", tt.yaml, diff)
			}
		})
	}
}
