package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLoadAlerts(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "webhook.secret")
	os.WriteFile(secret, []byte("  a-secret-of-enough-length\n"), 0o600)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		return p
	}
	good := write("good.yaml", "data_dir: "+dir+"\nalerts:\n  webhook:\n    url: https://hooks.example.org/hearth\n    secret_file: "+secret+
		"\n  home_assistant: notify.mobile_app_phone\n  per_hour: 12\n  family_devices: 5\n  window: 30m\n")
	c, err := Load([]string{"--config", good}, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := Alerts{Webhook: Webhook{URL: "https://hooks.example.org/hearth", Secret: "a-secret-of-enough-length", SecretFile: secret},
		HomeAssistant: "notify.mobile_app_phone", PerHour: 12, FamilyDevices: 5, Window: 30 * time.Minute}
	if diff := cmp.Diff(want, c.Alerts); diff != "" {
		t.Errorf("Alerts (-want +got):\n%s", diff)
	}
	off := write("off.yaml", "alerts:\n  home_assistant: \"off\"\n")
	if c, err := Load([]string{"--config", off}, envOf(nil)); err != nil || c.Alerts.HomeAssistant != "" {
		t.Errorf("home_assistant: off = %q, %v; want no route", c.Alerts.HomeAssistant, err)
	}
	for _, tt := range []struct{ name, yaml, want string }{
		{"bad url", "alerts:\n  webhook:\n    url: ftp://x\n    secret: 0123456789abcdef\n", `alerts: webhook.url: "ftp://x" is not an http:// or https:// URL`},
		{"no secret", "alerts:\n  webhook:\n    url: https://x\n", "alerts: webhook.secret: the webhook needs a secret of at least 16 characters"},
		{"missing secret file", "alerts:\n  webhook:\n    url: https://x\n    secret_file: " + filepath.Join(dir, "nope") + "\n", "alerts: webhook.secret_file:"},
		{"bad service", "alerts:\n  home_assistant: sms\n", `alerts: home_assistant: "sms" is not persistent_notification`},
		{"negative", "alerts:\n  per_hour: -1\n", "cannot be negative"},
	} {
		_, err := Load([]string{"--config", write(tt.name+".yaml", tt.yaml)}, envOf(nil))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Load() = %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}
