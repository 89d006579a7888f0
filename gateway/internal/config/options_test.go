package config

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// writeOptions writes content to options.json in a fresh temporary directory.
func writeOptions(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "options.json")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func defaultOptions() AddonOptions {
	return AddonOptions{
		LogLevel:        "info",
		LeafLifetime:    30 * 24 * time.Hour,
		ExportCAToSSL:   true,
		HADiscovery:     true,
		DiscoveryPrefix: "homeassistant",
		AlertNotify:     "persistent_notification",
		DashboardRole:   "admin",
	}
}

func TestLoadAddonOptionsValid(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    func(*AddonOptions)
	}{
		{name: "empty object takes every default", content: `{}`, want: func(*AddonOptions) {}},
		{
			name: "as the Supervisor writes the defaults",
			content: `{"log_level":"info","broker_hostnames":[],"leaf_lifetime":"30d",` +
				`"export_ca_to_ssl":true,"ha_discovery":true,"discovery_prefix":"homeassistant"}`,
			want: func(*AddonOptions) {},
		},
		{
			name: "every option set",
			content: `{"log_level":"debug","broker_hostnames":["homeassistant.local","192.168.1.10","fd00::1"],` +
				`"advertise_host":"hub.example.org","ca_passphrase":"correct horse battery","leaf_lifetime":"720h",` +
				`"export_ca_to_ssl":false,"ha_discovery":false,"discovery_prefix":"ha/discovery",` +
				`"alert_notify":"notify.mobile_app_phone","alert_webhook_url":"https://hooks.example.org/hearth","alert_webhook_secret":"0123456789abcdef"}`,
			want: func(o *AddonOptions) {
				o.LogLevel = "debug"
				o.BrokerHostnames = []string{"homeassistant.local", "192.168.1.10", "fd00::1"}
				o.AdvertiseHost = "hub.example.org"
				o.CAPassphrase = "correct horse battery"
				o.LeafLifetime = 720 * time.Hour
				o.ExportCAToSSL = false
				o.HADiscovery = false
				o.DiscoveryPrefix = "ha/discovery"
				o.AlertNotify = "notify.mobile_app_phone"
				o.AlertWebhookURL, o.AlertWebhookSecret = "https://hooks.example.org/hearth", "0123456789abcdef"
			},
		},
		{name: "empty optional strings mean unset", content: `{"advertise_host":"","ca_passphrase":"","leaf_lifetime":""}`, want: func(*AddonOptions) {}},
		{name: "null means unset", content: `{"log_level":null,"ha_discovery":null}`, want: func(*AddonOptions) {}},
		{name: "seven days", content: `{"leaf_lifetime":"7d"}`, want: func(o *AddonOptions) { o.LeafLifetime = 7 * 24 * time.Hour }},
		{name: "shortest lifetime", content: `{"leaf_lifetime":"1h"}`, want: func(o *AddonOptions) { o.LeafLifetime = time.Hour }},
		{name: "longest lifetime", content: `{"leaf_lifetime":"365d"}`, want: func(o *AddonOptions) { o.LeafLifetime = 365 * 24 * time.Hour }},
		{name: "dashboard roles and approval", content: `{"dashboard_role":"viewer","dashboard_user_roles":["alice=admin","Bob Smith=operator"],"change_approval":true}`,
			want: func(o *AddonOptions) {
				o.DashboardRole = "viewer"
				o.DashboardUserRoles = map[string]string{"alice": "admin", "Bob Smith": "operator"}
				o.ChangeApproval = true
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadAddonOptions(writeOptions(t, tt.content))
			if err != nil {
				t.Fatalf("LoadAddonOptions(%s) error: %v", tt.content, err)
			}
			want := defaultOptions()
			tt.want(&want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("LoadAddonOptions(%s) mismatch (-want +got):\n%s", tt.content, diff)
			}
		})
	}
}

func TestLoadAddonOptionsInvalid(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    []string // every fragment must appear in the error
	}{
		{name: "alert route unknown", content: `{"alert_notify":"email"}`,
			want: []string{`option alert_notify: "email" is not persistent_notification, off or notify.<service>`}},
		{name: "webhook not a URL", content: `{"alert_webhook_url":"hooks.example.org","alert_webhook_secret":"0123456789abcdef"}`,
			want: []string{`option alert_webhook_url: "hooks.example.org" is not an http:// or https:// URL`}},
		{name: "webhook without a secret", content: `{"alert_webhook_url":"https://hooks.example.org"}`,
			want: []string{"option alert_webhook_secret: the webhook needs a secret of at least 16 characters"}},
		{name: "unknown dashboard role", content: `{"dashboard_role":"root"}`,
			want: []string{`option dashboard_role: "root" is not one of viewer, operator, admin`}},
		{name: "user role without a role", content: `{"dashboard_user_roles":["alice"]}`,
			want: []string{`option dashboard_user_roles: "alice" is not user=role`}},
		{name: "unknown log level", content: `{"log_level":"loud"}`,
			want: []string{`option log_level: "loud" is not one of debug, info, warning, error`}},
		{name: "empty log level", content: `{"log_level":""}`, want: []string{`option log_level: "" is not one of`}},
		{name: "log level of the wrong type", content: `{"log_level":3}`,
			want: []string{"option log_level: a number is not allowed here, want a string"}},
		{name: "unknown option", content: `{"log_levle":"info"}`,
			want: []string{"option log_levle is unknown", "known: log_level, broker_hostnames"}},
		{name: "two unknown options", content: `{"b":1,"a":2}`,
			want: []string{"option a is unknown", "option b is unknown"}},
		{name: "hostname with a space", content: `{"broker_hostnames":["home assistant"]}`,
			want: []string{`option broker_hostnames: "home assistant" is not a DNS name or an IP address`}},
		{name: "hostname with a leading hyphen", content: `{"broker_hostnames":["-hub.local"]}`,
			want: []string{`"-hub.local" is not a DNS name`}},
		{name: "wildcard hostname", content: `{"broker_hostnames":["*.local"]}`, want: []string{`"*.local" is not a DNS name`}},
		{name: "empty hostname", content: `{"broker_hostnames":[""]}`, want: []string{`"" is not a DNS name`}},
		{name: "over-long label", content: `{"broker_hostnames":["` + strings.Repeat("a", 64) + `.local"]}`,
			want: []string{"is not a DNS name"}},
		{name: "duplicate hostname", content: `{"broker_hostnames":["hub.local","hub.local"]}`,
			want: []string{`option broker_hostnames: "hub.local" is listed twice`}},
		{name: "hostnames not a list", content: `{"broker_hostnames":"hub.local"}`,
			want: []string{"option broker_hostnames: a string is not allowed here, want a list of strings"}},
		{name: "advertise host with a scheme", content: `{"advertise_host":"mqtts://hub.local"}`,
			want: []string{`option advertise_host: "mqtts://hub.local" is not a DNS name or an IP address`}},
		{name: "short passphrase", content: `{"ca_passphrase":"secret"}`,
			want: []string{"option ca_passphrase: must be 12 to 1024 characters long", "(got 6)"}},
		{name: "lifetime in minutes", content: `{"leaf_lifetime":"90m"}`,
			want: []string{`option leaf_lifetime: "90m" is not a whole number of hours or days`}},
		{name: "lifetime zero", content: `{"leaf_lifetime":"0d"}`, want: []string{`"0d" is not a whole number`}},
		{name: "lifetime too long", content: `{"leaf_lifetime":"400d"}`,
			want: []string{`option leaf_lifetime: "400d" is outside 1h to 365d`}},
		{name: "lifetime as a Go duration", content: `{"leaf_lifetime":"720h0m0s"}`, want: []string{"is not a whole number"}},
		{name: "bool as a string", content: `{"ha_discovery":"yes"}`,
			want: []string{"option ha_discovery: a string is not allowed here, want a boolean (true or false)"}},
		{name: "prefix with a wildcard", content: `{"discovery_prefix":"home/#"}`,
			want: []string{`option discovery_prefix: "home/#" contains '#'`}},
		{name: "prefix with a trailing slash", content: `{"discovery_prefix":"homeassistant/"}`,
			want: []string{`option discovery_prefix: "homeassistant/" has an empty topic level`}},
		{name: "empty prefix", content: `{"discovery_prefix":""}`, want: []string{`option discovery_prefix: "" must be 1 to 255`}},
		{name: "every bad option reported at once", content: `{"log_level":"loud","leaf_lifetime":"x","discovery_prefix":"+"}`,
			want: []string{"option log_level", "option leaf_lifetime", "option discovery_prefix"}},
		{name: "not an object", content: `["info"]`, want: []string{"not a JSON object of options"}},
		{name: "null", content: `null`, want: []string{"not a JSON object of options"}},
		{name: "truncated", content: `{"log_level":"in`, want: []string{"not a JSON object of options"}},
		{name: "trailing data", content: `{} {}`, want: []string{"not a JSON object of options"}},
		{name: "empty file", content: ``, want: []string{"not a JSON object of options"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeOptions(t, tt.content)
			got, err := LoadAddonOptions(path)
			if err == nil {
				t.Fatalf("LoadAddonOptions(%s) = %+v, want an error", tt.content, got)
			}
			for _, frag := range tt.want {
				if !strings.Contains(err.Error(), frag) {
					t.Errorf("LoadAddonOptions(%s) error = %q, want it to contain %q", tt.content, err, frag)
				}
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("LoadAddonOptions(%s) error = %q, want it to name the file", tt.content, err)
			}
			if !reflect.ValueOf(got).IsZero() {
				t.Errorf("LoadAddonOptions(%s) = %+v with an error, want the zero value", tt.content, got)
			}
		})
	}
}

func TestLoadAddonOptionsMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "options.json")
	if _, err := LoadAddonOptions(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadAddonOptions(missing) error = %v, want one wrapping fs.ErrNotExist", err)
	}
}

func TestLoadAddonOptionsTooLarge(t *testing.T) {
	path := writeOptions(t, `{"advertise_host":"`+strings.Repeat("a", maxOptionsSize)+`"}`)
	if _, err := LoadAddonOptions(path); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("LoadAddonOptions(2 MiB) error = %v, want a size error", err)
	}
}

// TestOptionKeysMatchTags keeps the list of known keys, the wire struct and AddonOptions in step.
func TestOptionKeysMatchTags(t *testing.T) {
	if diff := cmp.Diff(optionKeys, jsonTags(reflect.TypeFor[AddonOptions]())); diff != "" {
		t.Errorf("optionKeys differ from AddonOptions' json tags (-keys +tags):\n%s", diff)
	}
	if diff := cmp.Diff(optionKeys, jsonTags(reflect.TypeFor[addonOptionsFile]())); diff != "" {
		t.Errorf("optionKeys differ from addonOptionsFile's json tags (-keys +tags):\n%s", diff)
	}
}

// jsonTags returns the json names of the fields of struct type t, in field order.
func jsonTags(t reflect.Type) []string {
	var tags []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		tags = append(tags, name)
	}
	return tags
}

func TestAddonOptionsLogValueRedactsPassphrase(t *testing.T) {
	o := defaultOptions()
	o.CAPassphrase = "correct horse battery"
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("options", "options", o)
	if strings.Contains(b.String(), o.CAPassphrase) {
		t.Errorf("logging AddonOptions wrote the passphrase: %s", b.String())
	}
	if !strings.Contains(b.String(), "options.ca_passphrase=(set)") {
		t.Errorf("logging AddonOptions = %s, want ca_passphrase=(set)", b.String())
	}
}

// FuzzParseAddonOptions checks that no input panics and that whatever is accepted is valid:
// a known log level, a lifetime in range, a clean prefix.
func FuzzParseAddonOptions(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"log_level":"debug","broker_hostnames":["a.b","::1"],"leaf_lifetime":"7d"}`))
	f.Add([]byte(`{"discovery_prefix":"a/b","ca_passphrase":"0123456789abc","advertise_host":"x"}`))
	f.Add([]byte(`{"log_level":3,"x":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := parseAddonOptions(data)
		if err != nil {
			return
		}
		if o.LogLevel != "debug" && o.LogLevel != "info" && o.LogLevel != "warning" && o.LogLevel != "error" {
			t.Errorf("parseAddonOptions(%q) accepted log level %q", data, o.LogLevel)
		}
		if o.LeafLifetime < time.Hour || o.LeafLifetime > 365*24*time.Hour {
			t.Errorf("parseAddonOptions(%q) accepted lifetime %v", data, o.LeafLifetime)
		}
		if err := checkTopicPrefix(o.DiscoveryPrefix); err != nil {
			t.Errorf("parseAddonOptions(%q) accepted prefix %q: %v", data, o.DiscoveryPrefix, err)
		}
		for _, h := range append(o.BrokerHostnames, o.AdvertiseHost) {
			if h != "" && !validHost(h) {
				t.Errorf("parseAddonOptions(%q) accepted host %q", data, h)
			}
		}
	})
}
