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

// TestLoadAddonAlertsAndPanel: the add-on's alert options become routes, Home Assistant
// notifications are on by default, and the ingress panel (from the container's host name, the
// add-on's slug) is the dashboard Home Assistant links to.
func TestLoadAddonAlertsAndPanel(t *testing.T) {
	opts := filepath.Join(t.TempDir(), "options.json")
	os.WriteFile(opts, []byte(`{"alert_notify":"notify.mobile_app_phone","alert_webhook_url":"https://hooks.example.org/h","alert_webhook_secret":"0123456789abcdef"}`), 0o600)
	env := map[string]string{"HEARTH_ADDON_OPTIONS": opts, "SUPERVISOR_TOKEN": "tok", "HOSTNAME": "a0d7b954-hearth"}
	c, err := Load([]string{"--addon"}, envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	if c.Alerts.HomeAssistant != "notify.mobile_app_phone" || c.Alerts.Webhook.URL != "https://hooks.example.org/h" ||
		c.Alerts.Webhook.Secret != "0123456789abcdef" || c.HA.DashboardURL != "homeassistant://hassio/ingress/a0d7b954_hearth" ||
		c.HA.BirthTopic != "homeassistant/status" {
		t.Errorf("add-on alerts %+v, dashboard %q, birth topic %q", c.Alerts, c.HA.DashboardURL, c.HA.BirthTopic)
	}
	os.WriteFile(opts, []byte(`{}`), 0o600)
	if c, err := Load([]string{"--addon"}, envOf(env)); err != nil || c.Alerts.HomeAssistant != AlertNotifyPersistent || c.Alerts.Webhook.URL != "" {
		t.Errorf("add-on default alerts = %+v, %v; want persistent notifications and no webhook", c.Alerts, err)
	}
	if c, err := Load(nil, envOf(map[string]string{"HOSTNAME": "box"})); err != nil || c.HA.DashboardURL != "" || c.Alerts.HomeAssistant != "" {
		t.Errorf("outside the add-on: dashboard %q, alerts %+v, %v; want neither", c.HA.DashboardURL, c.Alerts, err)
	}
}
