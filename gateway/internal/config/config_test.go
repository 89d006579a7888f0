package config

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadDefaults(t *testing.T) {
	c, err := Load(nil, envOf(nil))
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	if c.DataDir != DefaultDataDir || c.Listen != DefaultListen || c.HTTPListen != DefaultHTTPListen || c.TokenTTL != DefaultTokenTTL {
		t.Errorf("Load() defaults = %+v", c)
	}
	if c.Topics().Prefix() != "hearth" || c.SocketPath() != filepath.Join(DefaultDataDir, "hearth.sock") {
		t.Errorf("prefix %q, socket %q", c.Topics().Prefix(), c.SocketPath())
	}
	if !strings.HasSuffix(c.Advertise, ":8883") {
		t.Errorf("Advertise = %q, want the first host name and port 8883", c.Advertise)
	}
}

func TestLoadPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hearth.yaml")
	os.WriteFile(file, []byte("data_dir: /from/file\nlisten: \":1111\"\ntoken_ttl: 2h\nlog_format: json\n"), 0o600)
	c, err := Load([]string{"--config", file, "--listen", ":3333"}, envOf(map[string]string{"HEARTH_LISTEN": ":2222", "HEARTH_DATA": "/from/env"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":3333" {
		t.Errorf("Listen = %q, want the flag's :3333 over env and file", c.Listen)
	}
	if c.DataDir != "/from/env" {
		t.Errorf("DataDir = %q, want env over file", c.DataDir)
	}
	if c.TokenTTL != 2*time.Hour || c.LogFormat != "json" {
		t.Errorf("file values lost: ttl %s, format %s", c.TokenTTL, c.LogFormat)
	}
}

func TestLoadDebugListen(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:6060", "[::1]:6060", "localhost:0"} {
		file := filepath.Join(t.TempDir(), "hearth.yaml")
		os.WriteFile(file, []byte("debug_listen: \""+addr+"\"\n"), 0o600)
		c, err := Load([]string{"--config", file}, envOf(nil))
		if err != nil || c.DebugListen != addr {
			t.Errorf("Load(debug_listen: %q) = %q, %v; want it kept", addr, c.DebugListen, err)
		}
	}
	if c, err := Load(nil, envOf(nil)); err != nil || c.DebugListen != "" {
		t.Errorf("Load() DebugListen = %q, %v; want off by default", c.DebugListen, err)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	unknown := filepath.Join(dir, "unknown.yaml")
	os.WriteFile(unknown, []byte("listne: \":1\"\n"), 0o600)
	open := filepath.Join(dir, "open.yaml")
	os.WriteFile(open, []byte("http_auth: none\n"), 0o600)
	badRole := filepath.Join(dir, "role.yaml")
	os.WriteFile(badRole, []byte("ingress_users: {alice: root}\n"), 0o600)
	badCLIRole := filepath.Join(dir, "cli-role.yaml")
	os.WriteFile(badCLIRole, []byte("cli_roles: {bob: superuser}\n"), 0o600)
	publicDebug := filepath.Join(dir, "debug.yaml")
	os.WriteFile(publicDebug, []byte("debug_listen: 0.0.0.0:6060\n"), 0o600)
	badDebug := filepath.Join(dir, "debug-bad.yaml")
	os.WriteFile(badDebug, []byte("debug_listen: \"6060\"\n"), 0o600)
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"bad listen", []string{"--listen", "nonsense"}, nil, "listen"},
		{"public plaintext", []string{"--plain-listen", "0.0.0.0:1883"}, nil, "plain_listen"},
		{"public debug listener", []string{"--config", publicDebug}, nil, "debug_listen"},
		{"debug listener without port", []string{"--config", badDebug}, nil, "debug_listen"},
		{"bad log format", []string{"--log-format", "xml"}, nil, "log_format"},
		{"bad log level", nil, map[string]string{"HEARTH_LOG_LEVEL": "loud"}, "log_level"},
		{"unknown key in file", []string{"--config", unknown}, nil, "listne"},
		{"missing file", []string{"--config", filepath.Join(dir, "nope.yaml")}, nil, "config file"},
		{"stray argument", []string{"extra"}, nil, "unexpected argument"},
		{"unknown flag", []string{"--bogus"}, nil, "bogus"},
		{"dashboard without login on the LAN", []string{"--config", open, "--http", ":8099"}, nil, "http_auth: none serves the dashboard to anyone"},
		{"dashboard without login on a LAN address", []string{"--config", open, "--http", "192.168.1.5:8099"}, nil, "not a loopback address"},
		{"unknown ingress role", []string{"--config", badRole}, nil, "ingress_users.alice"},
		{"unknown CLI role", []string{"--config", badCLIRole}, nil, "cli_roles.bob"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.args, envOf(tt.env))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load(%q) = %v, want an error naming %q", tt.args, err, tt.want)
			}
		})
	}
}

func TestLoadHTTPAuth(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.yaml")
	os.WriteFile(open, []byte("http_auth: none\n"), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, HTTPAuthLogin},
		{[]string{"--http", ":8099"}, HTTPAuthLogin},
		{[]string{"--config", open}, HTTPAuthNone},
		{[]string{"--config", open, "--http", "[::1]:8099"}, HTTPAuthNone},
		{[]string{"--config", open, "--http", "off"}, HTTPAuthNone},
	} {
		c, err := Load(tc.args, envOf(nil))
		if err != nil || c.HTTPAuth != tc.want {
			t.Errorf("Load(%q).HTTPAuth = %q, %v, want %q", tc.args, c.HTTPAuth, err, tc.want)
		}
	}
}

func TestLoadAddon(t *testing.T) {
	opts := filepath.Join(t.TempDir(), "options.json")
	os.WriteFile(opts, []byte(`{"log_level":"warning","broker_hostnames":["hearth.local"],"advertise_host":"192.0.2.10","ca_passphrase":"a long passphrase","leaf_lifetime":"7d","export_ca_to_ssl":true,"ha_discovery":true,"discovery_prefix":"homeassistant"}`), 0o600)
	c, err := Load([]string{"--addon"}, envOf(map[string]string{"HEARTH_ADDON_OPTIONS": opts, "SUPERVISOR_TOKEN": "tok"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/data" || c.LogLevel != "warn" || c.Advertise != "192.0.2.10:8893" || c.LeafLifetime != 7*24*time.Hour ||
		!c.ExportCA || !c.HA.Discovery || c.HA.SupervisorToken != "tok" || c.CAPassphrase != "a long passphrase" {
		t.Errorf("add-on config = %+v", c)
	}
	os.WriteFile(opts, []byte(`{}`), 0o600)
	c, err = Load([]string{"--addon"}, envOf(map[string]string{"HEARTH_ADDON_OPTIONS": opts}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Advertise != "homeassistant.local:8893" || c.Hostnames[0] != "homeassistant.local" {
		t.Errorf("add-on defaults: advertise %q, hostnames %v; want homeassistant.local:8893 and its SAN", c.Advertise, c.Hostnames)
	}
	os.WriteFile(opts, []byte(`{"log_level":"loud"}`), 0o600)
	if _, err := Load([]string{"--addon"}, envOf(map[string]string{"HEARTH_ADDON_OPTIONS": opts})); err == nil || !strings.Contains(err.Error(), "log_level") {
		t.Errorf("bad add-on option: %v, want an error naming log_level", err)
	}
}

func TestDefaultHostnames(t *testing.T) {
	lan := func() []net.IP { return []net.IP{net.ParseIP("192.168.1.10"), net.ParseIP("fd00::10")} }
	tests := []struct {
		name, host string
		want       []string
	}{
		{"bare host name", "Hub", []string{"hub.local", "hub", "192.168.1.10", "fd00::10", "localhost", "127.0.0.1", "::1"}},
		{"qualified host name", "hub.example.net.", []string{"hub.example.net", "192.168.1.10", "fd00::10", "localhost", "127.0.0.1", "::1"}},
		{"localhost", "localhost", []string{"192.168.1.10", "fd00::10", "localhost", "127.0.0.1", "::1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DefaultHostnames(func() (string, error) { return tt.host, nil }, lan)
			if !slices.Equal(got, tt.want) {
				t.Errorf("DefaultHostnames(%q) = %q, want %q", tt.host, got, tt.want)
			}
		})
	}
	c, err := Load([]string{"--hostnames", "hub.lan,10.0.0.2"}, func(string) string { return "" })
	if err != nil || !slices.Equal(c.Hostnames, []string{"hub.lan", "10.0.0.2"}) || c.Advertise != "hub.lan:8883" {
		t.Errorf("Load(--hostnames) = %q, advertise %q, %v; want the flag's names only, hub.lan:8883 advertised", c.Hostnames, c.Advertise, err)
	}
}

func TestAdvertiseHost(t *testing.T) {
	names := []string{"hub.local", "hub", "192.168.1.10", "fd00::10", "localhost", "127.0.0.1", "::1"}
	for _, tt := range []struct {
		name     string
		names    []string
		resolves []string
		want     string
	}{
		{"mDNS published", names, []string{"hub.local", "hub"}, "hub.local"},
		{"no mDNS: the LAN address", names, []string{"hub"}, "192.168.1.10"},
		{"no mDNS, no LAN: the host name", []string{"hub.local", "hub", "localhost", "127.0.0.1", "::1"}, []string{"hub"}, "hub"},
		{"a dotted host name that does not", []string{"hub.example.net", "10.0.0.2", "localhost"}, nil, "10.0.0.2"},
		{"nothing resolves", []string{"hub.local", "hub", "localhost", "127.0.0.1", "::1"}, nil, "hub.local"},
		{"a dotted host name that resolves", []string{"hub.example.net", "10.0.0.2", "localhost"}, []string{"hub.example.net"}, "hub.example.net"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := AdvertiseHost(tt.names, func(n string) bool { return slices.Contains(tt.resolves, n) })
			if got != tt.want {
				t.Errorf("AdvertiseHost(%q) = %q, want %q", tt.names, got, tt.want)
			}
		})
	}
}

func TestLoadStorage(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := Load(nil, envOf(nil))
	if err != nil || c.Storage.Driver != DriverSQLite || c.Storage.Replicated() || c.ReplicaID == "" {
		t.Errorf("Load() storage = %+v, replica %q, %v; want sqlite, not replicated, a replica id", c.Storage, c.ReplicaID, err)
	}
	pg := write("pg.yaml", "storage: {driver: postgres, dsn: \"host=db user=hearth dbname=hearth\", password_file: /run/secrets/pg}\nreplica_id: hub-2\n")
	c, err = Load([]string{"--config", pg}, envOf(nil))
	if err != nil {
		t.Fatalf("Load(postgres) = %v", err)
	}
	want := Storage{Driver: DriverPostgres, DSN: "host=db user=hearth dbname=hearth", PasswordFile: "/run/secrets/pg"}
	if c.Storage != want || !c.Storage.Replicated() || c.ReplicaID != "hub-2" {
		t.Errorf("Load(postgres) = %+v, replica %q; want %+v, hub-2", c.Storage, c.ReplicaID, want)
	}
	for name, body := range map[string]string{
		"no dsn":         "storage: {driver: postgres}\n",
		"unknown driver": "storage: {driver: mysql, dsn: x}\n",
	} {
		if _, err := Load([]string{"--config", write(strings.ReplaceAll(name, " ", "-")+".yaml", body)}, envOf(nil)); err == nil || !strings.Contains(err.Error(), "storage") {
			t.Errorf("Load(%s) = %v, want an error naming storage", name, err)
		}
	}
}
