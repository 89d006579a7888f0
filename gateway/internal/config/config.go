// Package config is the only reader of the hub's settings: command-line flags, HEARTH_*
// environment variables, an optional YAML file and, in the Home Assistant add-on,
// /data/options.json. Load validates everything once; the rest of the hub receives plain,
// valid values and never reads files or the environment itself.
//
// Precedence, lowest first: built-in defaults, the YAML file (--config), the add-on options
// (--addon), environment variables, flags given on the command line.
package config

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/hearth-pki/hearth/protocol"
)

// Config is the hub's configuration. The zero value of every field means its default.
type Config struct {
	// DataDir holds the CA, the SQLite inventory, the policy file and the control socket.
	// Default "./hearth-data"; "/data" in the add-on.
	DataDir string `yaml:"data_dir"`
	// Listen is the MQTT-over-TLS listener. Default ":8883".
	Listen string `yaml:"listen"`
	// PlainListen is an optional plaintext MQTT listener; it must be a loopback address.
	// Default off.
	PlainListen string `yaml:"plain_listen"`
	// HTTPListen serves the dashboard, its API and /metrics. Default "127.0.0.1:8099"
	// (":8099" in the add-on, behind Home Assistant's ingress). "off" disables it.
	HTTPListen string `yaml:"http_listen"`
	// DebugListen, if set, serves Go's runtime profiles (net/http/pprof) under /debug/pprof/
	// on this address, which must be a loopback host:port such as 127.0.0.1:6060: the
	// profiles reveal the process's memory and carry no authentication. Default off.
	DebugListen string `yaml:"debug_listen"`
	// Hostnames are the DNS names and IP addresses in the broker's server certificate.
	// Default (DefaultHostnames): <host>.local, the host name, this machine's LAN addresses,
	// localhost, 127.0.0.1 and ::1.
	Hostnames []string `yaml:"hostnames"`
	// Advertise is the host:port agents are told to connect to (enrollment command, bridge
	// info). Default: the first host name and the listener's port; with the default host
	// names, the one AdvertiseHost picks.
	Advertise string `yaml:"advertise"`
	// TopicPrefix is the first level of every hearth topic. Default "hearth".
	TopicPrefix string `yaml:"topic_prefix"`
	// LogFormat is "text" or "json". Default "text".
	LogFormat string `yaml:"log_format"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `yaml:"log_level"`
	// CAPassphraseFile holds the passphrase that encrypts the CA keys. Default: the systemd
	// credential $CREDENTIALS_DIRECTORY/hearth-ca-passphrase when it exists.
	CAPassphraseFile string `yaml:"ca_passphrase_file"`
	// CAPassphraseStore is where the hub keeps the passphrase it generates when none is
	// given, outside the data directory (PassphraseStoreFrom; HEARTH_CA_PASSPHRASE_STORE).
	// Empty in the add-on, whose only storage is /data and /config, both in its backup.
	CAPassphraseStore string `yaml:"ca_passphrase_store"`
	// CAPassphrase comes from HEARTH_CA_PASSPHRASE or the add-on options, never from flags.
	CAPassphrase string `yaml:"-"`
	// PolicyFile is the renewal policy. Default DataDir/policy.yaml when it exists, else the
	// built-in defaults.
	PolicyFile string `yaml:"policy_file"`
	// Admins may log in to the broker with a user name and password (mosquitto_sub, bridge
	// requests). Passwords are stored as hashes made by `hearth-gateway admin hash`.
	Admins []Admin `yaml:"admins"`
	// AdminPassword, from HEARTH_ADMIN_PASSWORD, adds an admin named "admin".
	AdminPassword string `yaml:"-"`
	// HTTPAuth is how the dashboard and its API authenticate people outside Home Assistant's
	// ingress: "login" (a user name and password, then a session cookie) or "none" (everyone
	// who reaches http_listen is an admin), allowed only on a loopback http_listen.
	// Default "login".
	HTTPAuth string `yaml:"http_auth"`
	// IngressRole is the role of a Home Assistant user in the add-on's panel. Default admin.
	IngressRole string `yaml:"ingress_role"`
	// IngressUsers give Home Assistant users (by name or id) another role than IngressRole.
	IngressUsers map[string]string `yaml:"ingress_users"`
	// CLIRoles give OS users other than root and the hub's own (both admins) a role on the
	// control socket, by user name: {alice: operator}. With any entry the socket is open to
	// every local user (0666), who without a role here or as a hub user of the same name is
	// refused. Default none: the socket is the hub's user's and root's alone (0600).
	CLIRoles map[string]string `yaml:"cli_roles"`
	// ChangeApproval makes policy changes and CA operations wait for a second admin's
	// approval (propose, approve, apply). Default off.
	ChangeApproval bool `yaml:"change_approval"`
	// TokenTTL is the default life of an enrollment token. Default 24h.
	TokenTTL time.Duration `yaml:"token_ttl"`
	// IssuanceRate caps certificates signed per second across all devices (bursts up to
	// twice as many). Default 500.
	IssuanceRate float64 `yaml:"issuance_rate"`
	// Renewal paces the renewal scheduler's commands.
	Renewal Renewal `yaml:"renewal"`
	// Retention is how long the inventory keeps finished attempts (from their end) and
	// superseded or abandoned certificates (from their expiry); the audit log is kept for
	// good. Default 90 days (inventory.DefaultRetention).
	Retention time.Duration `yaml:"retention"`
	// SupersededOverlap is how long a superseded certificate still logs in after the commit
	// of its successor (an agent reconnecting mid-commit); after it, only the new one does.
	// Default 2m (access.DefaultSupersededOverlap), at most 1h.
	SupersededOverlap time.Duration `yaml:"superseded_overlap"`
	// LeafLifetime overrides the policy's default leaf lifetime when set.
	LeafLifetime time.Duration `yaml:"leaf_lifetime"`
	// Addon runs as a Home Assistant add-on: options from /data/options.json, data in /data,
	// the CA bundle exported to SSLDir, discovery to Home Assistant's broker.
	Addon bool `yaml:"-"`
	// AddonOptionsFile is the add-on options file. Default "/data/options.json".
	AddonOptionsFile string `yaml:"-"`
	// SSLDir receives the CA bundle (in SSLDir/hearth/) when ExportCA is set. Default "/ssl".
	SSLDir string `yaml:"ssl_dir"`
	// ExportCA writes the CA bundle to SSLDir/hearth/.
	ExportCA bool `yaml:"export_ca"`
	// HA configures Home Assistant discovery.
	HA HA `yaml:"home_assistant"`
	// Limits caps connections, sessions, certificates and renew requests (issue 15).
	Limits Limits `yaml:"limits"`
	// Alerts routes the monitor's alerts to people (gateway/README.md, "Alerts").
	Alerts Alerts `yaml:"alerts"`
	// Storage selects the inventory's database: the SQLite file in DataDir by default, or a
	// PostgreSQL database that several hub replicas share (gateway/README.md, "Replicas on
	// PostgreSQL").
	Storage Storage `yaml:"storage"`
	// ReplicaID names this hub among replicas: the holder of the scheduler's lease and the
	// replica label of its metrics. Default: the host name.
	ReplicaID string `yaml:"replica_id"`
	// Broker chooses the MQTT broker: the embedded one (default) or an external NATS
	// cluster (gateway/README.md, "External clustered broker").
	Broker Broker `yaml:"broker"`
}

// Storage selects the inventory's database.
type Storage struct {
	// Driver is "sqlite" (default: DataDir/hearth.db) or "postgres".
	Driver string `yaml:"driver"`
	// DSN is the PostgreSQL connection string (libpq key=value or URL), without the
	// password: that comes from PasswordFile, PGPASSWORD or ~/.pgpass, and a DSN that holds
	// one is refused, so that it never lands in a configuration file, a log or a backup.
	DSN string `yaml:"dsn"`
	// PasswordFile holds the PostgreSQL password (a systemd credential, a mounted secret).
	PasswordFile string `yaml:"password_file"`
}

// Storage drivers.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// Replicated reports whether the hub shares its inventory with other replicas.
func (s Storage) Replicated() bool { return s.Driver == DriverPostgres }

// Limits are the hub's caps against floods and loops; a zero value means the default of the
// part that enforces it (gateway/README.md, "Limits").
type Limits struct {
	// MaxPending and MaxPendingPerSource bound the connections still in their TLS handshake
	// or CONNECT, in total (default 2048) and per source address (IPv6: per /64; default
	// 512). At the bound the most silent pending connection is shed, never the new one.
	MaxPending          int `yaml:"max_pending"`
	MaxPendingPerSource int `yaml:"max_pending_per_source"`
	// MaxConnections and MaxConnectionsPerSource bound authenticated connections (default
	// 16384 and 1024; loopback is exempt from the per-source bound).
	MaxConnections          int `yaml:"max_connections"`
	MaxConnectionsPerSource int `yaml:"max_connections_per_source"`
	// SessionsPerDevice is the sessions one device id may hold; a new one closes the oldest.
	// Default 4.
	SessionsPerDevice int `yaml:"sessions_per_device"`
	// CertificatesPerHour is the certificates one device may get per hour. Default 12.
	CertificatesPerHour int `yaml:"certificates_per_hour"`
	// RenewCooldown is the least time between two renew requests for one device (bridge,
	// Home Assistant, dashboard; the CLI is exempt). Default 1m.
	RenewCooldown time.Duration `yaml:"renew_cooldown"`
}

// Admin is one administrator login.
type Admin struct {
	Name         string `yaml:"name"`
	PasswordHash string `yaml:"password_hash"`
}

// Renewal paces the renewal scheduler: how fast it commands due devices and how many may be
// renewing at once. The cap keeps a storm of due devices (a CA rotation, a campaign) from
// overrunning the hub: devices wait their turn instead of timing out.
type Renewal struct {
	// Rate is renew commands per second across the fleet. Default 20.
	Rate float64 `yaml:"rate"`
	// MaxInFlight is how many devices may be commanded and not yet committed. Default 50.
	MaxInFlight int `yaml:"max_in_flight"`
	// InFlightTimeout is how long a device's request may stay in flight, from its CSR (or
	// the command that asked for it) to its commit: another request of the device gets busy
	// meanwhile, and after it the request ends and its pending certificate is abandoned.
	// Default 10 minutes.
	InFlightTimeout time.Duration `yaml:"in_flight_timeout"`
}

// HA configures MQTT discovery to Home Assistant's broker.
type HA struct {
	// Discovery enables it. In the add-on the broker comes from the Supervisor.
	Discovery bool `yaml:"discovery"`
	// Broker is "mqtt://host:port" or "mqtts://host:port" outside the add-on.
	Broker   string `yaml:"broker"`
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// DiscoveryPrefix is Home Assistant's discovery prefix. Default "homeassistant".
	DiscoveryPrefix string `yaml:"discovery_prefix"`
	// BirthTopic is where Home Assistant announces itself online, which makes the hub publish
	// its discovery again. Default "homeassistant/status", whatever the discovery prefix (Home
	// Assistant's MQTT integration's default).
	BirthTopic string `yaml:"birth_topic"`
	// DashboardURL is the dashboard as Home Assistant links to it (configuration_url of the
	// hub and of each device). In the add-on, its ingress panel. Default none.
	DashboardURL string `yaml:"dashboard_url"`
	// SupervisorURL is the Supervisor API. Default "http://supervisor".
	SupervisorURL string `yaml:"-"`
	// SupervisorToken comes from SUPERVISOR_TOKEN.
	SupervisorToken string `yaml:"-"`
}

// Defaults of the fields whose zero value means "default".
const (
	DefaultDataDir    = "./hearth-data"
	DefaultListen     = ":8883"
	DefaultHTTPListen = "127.0.0.1:8099"
	DefaultTokenTTL   = 24 * time.Hour
	// DefaultIssuanceRate is certificates per second across all devices.
	DefaultIssuanceRate = 500
	// DefaultInFlightTimeout is Renewal.InFlightTimeout's default.
	DefaultInFlightTimeout = 10 * time.Minute
	// DefaultSupersededOverlap is SupersededOverlap's default (access.DefaultSupersededOverlap).
	DefaultSupersededOverlap = 2 * time.Minute
)

// AddonDefaultHost is the name agents are told to dial in the add-on when the options give
// none: Home Assistant's mDNS name.
const AddonDefaultHost = "homeassistant.local"

// AddonHostPort is the host port addon/config.yaml maps to the broker's container port.
const AddonHostPort = 8893

// SocketPath is the control socket the CLI uses to talk to a running hub.
func (c *Config) SocketPath() string { return filepath.Join(c.DataDir, "hearth.sock") }

// DatabasePath is the SQLite inventory.
func (c *Config) DatabasePath() string { return filepath.Join(c.DataDir, "hearth.db") }

// SnapshotPath is where `backup prepare` leaves a consistent copy of the inventory for a
// backup, in data directory dir.
func SnapshotPath(dir string) string { return filepath.Join(dir, "backup", "hearth-snapshot.db") }

// RestoreSnapshot puts a backup's snapshot in place of a missing database: after Home
// Assistant restores a backup, /data holds the snapshot but not the live files (they are
// excluded). It reports whether it restored.
func (c *Config) RestoreSnapshot() (bool, error) {
	if _, err := os.Stat(c.DatabasePath()); err == nil {
		return false, nil
	}
	snap := SnapshotPath(c.DataDir)
	if _, err := os.Stat(snap); err != nil {
		return false, nil
	}
	if err := os.Rename(snap, c.DatabasePath()); err != nil {
		return false, fmt.Errorf("restore inventory snapshot: %w", err)
	}
	return true, nil
}

// CADir holds the CA's certificates and encrypted keys.
func (c *Config) CADir() string { return filepath.Join(c.DataDir, "ca") }

// Topics returns the topic builder for TopicPrefix.
func (c *Config) Topics() protocol.Topics {
	t, _ := protocol.NewTopics(c.TopicPrefix) // validated by Load
	return t
}

// Logger builds the slog logger the settings ask for, writing to w.
func (c *Config) Logger(w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.LogLevel)) // validated by Load
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// ErrUsage is wrapped by Load's errors about the command line itself (an unknown flag, an
// argument): main exits 2 for them, 1 for a configuration that does not validate.
var ErrUsage = errors.New("usage error")

// usageError is a command-line error of serve; its text is only what is wrong.
type usageError struct{ err error }

func (e *usageError) Error() string        { return "serve: " + e.err.Error() }
func (e *usageError) Unwrap() error        { return e.err }
func (e *usageError) Is(target error) bool { return target == ErrUsage }

// serveFlags are the flags of `hearth-gateway serve`.
type serveFlags struct {
	file, dataDir, listen, plain, httpL, hosts, advertise, logFormat, logLevel, passFile, policy *string
	addon                                                                                        *bool
}

func newServeFlags() (*flag.FlagSet, *serveFlags) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs, &serveFlags{
		file:      fs.String("config", "", "YAML configuration `FILE` (gateway/README.md lists its settings)"),
		addon:     fs.Bool("addon", false, "run as a Home Assistant add-on: options from /data/options.json"),
		dataDir:   fs.String("data", "", "data `DIR`: CA, inventory, policy, control socket ($HEARTH_DATA, else "+DefaultDataDir+")"),
		listen:    fs.String("listen", "", "MQTT over TLS listen `ADDR` (default "+DefaultListen+")"),
		plain:     fs.String("plain-listen", "", "plaintext MQTT listen `ADDR`, loopback only (default off)"),
		httpL:     fs.String("http", "", "dashboard listen `ADDR`, or off (default "+DefaultHTTPListen+")"),
		hosts:     fs.String("hostnames", "", "comma-separated `NAMES` and IP addresses in the broker certificate (default: host name, host name.local, LAN addresses, localhost)"),
		advertise: fs.String("advertise", "", "`HOST:PORT` agents are told to dial (default the first host name and the listener's port)"),
		logFormat: fs.String("log-format", "", "log `FORMAT`: text or json (default text)"),
		logLevel:  fs.String("log-level", "", "log `LEVEL`: debug, info, warn or error (default info)"),
		passFile:  fs.String("ca-passphrase-file", "", "`FILE` holding the CA passphrase (default $HEARTH_CA_PASSPHRASE, else the systemd credential, else the passphrase store outside DIR)"),
		policy:    fs.String("policy", "", "renewal policy YAML `FILE` (default DIR/policy.yaml when it exists)"),
	}
}

// ServeFlags returns the flags of `hearth-gateway serve`, defined and not parsed, for its
// --help.
func ServeFlags() *flag.FlagSet {
	fs, _ := newServeFlags()
	return fs
}

// Load builds the configuration of `hearth-gateway serve` from args (flags after the
// subcommand) and env (os.Getenv in main). Errors about args wrap ErrUsage (flag.ErrHelp
// too, for -h).
func Load(args []string, env func(string) string) (Config, error) {
	fs, f := newServeFlags()
	if err := fs.Parse(args); err != nil {
		return Config{}, &usageError{err}
	}
	if fs.NArg() > 0 {
		return Config{}, &usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	var (
		file, addon, dataDir, listen, plain, httpL = f.file, f.addon, f.dataDir, f.listen, f.plain, f.httpL
		hosts, advertise, logFormat, logLevel      = f.hosts, f.advertise, f.logFormat, f.logLevel
		passFile, policy                           = f.passFile, f.policy
	)
	var c Config
	if *file != "" {
		if err := c.readFile(*file); err != nil {
			return Config{}, err
		}
	}
	if *addon {
		c.Addon = true
		c.AddonOptionsFile = orDefault(env("HEARTH_ADDON_OPTIONS"), "/data/options.json")
		if err := c.applyAddon(); err != nil {
			return Config{}, err
		}
	}
	if !c.Addon {
		c.CAPassphraseStore = orDefault(c.CAPassphraseStore, PassphraseStoreFrom(env))
	}
	c.applyEnv(env)
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	apply := func(name string, dst *string, v string) {
		if set[name] {
			*dst = v
		}
	}
	apply("data", &c.DataDir, *dataDir)
	apply("listen", &c.Listen, *listen)
	apply("plain-listen", &c.PlainListen, *plain)
	apply("http", &c.HTTPListen, *httpL)
	apply("advertise", &c.Advertise, *advertise)
	apply("log-format", &c.LogFormat, *logFormat)
	apply("log-level", &c.LogLevel, *logLevel)
	apply("ca-passphrase-file", &c.CAPassphraseFile, *passFile)
	c.CAPassphraseFile = orDefault(c.CAPassphraseFile, CredentialPassphraseFrom(env))
	apply("policy", &c.PolicyFile, *policy)
	if set["hostnames"] {
		c.Hostnames = splitList(*hosts)
	}
	if err := c.finish(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// DataDirFrom resolves the data directory for the CLI's client commands: --data if given,
// else HEARTH_DATA, else the default.
func DataDirFrom(flagValue string, env func(string) string) string {
	return orDefault(flagValue, orDefault(env("HEARTH_DATA"), DefaultDataDir))
}

// PassphraseStoreFrom is the default passphrase store outside the data directory: under
// systemd's ConfigurationDirectory= (/etc/hearth/ca-passphrase with the shipped unit), else
// HEARTH_CA_PASSPHRASE_STORE, else $XDG_CONFIG_HOME/hearth/ca-passphrase, else
// ~/.config/hearth/ca-passphrase; "" when none can be named.
func PassphraseStoreFrom(env func(string) string) string {
	if v := env("HEARTH_CA_PASSPHRASE_STORE"); v != "" {
		return v
	}
	if d, _, _ := strings.Cut(env("CONFIGURATION_DIRECTORY"), ":"); d != "" {
		return filepath.Join(d, "ca-passphrase")
	}
	if d := env("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "hearth", "ca-passphrase")
	}
	if d := env("HOME"); d != "" {
		return filepath.Join(d, ".config", "hearth", "ca-passphrase")
	}
	return ""
}

// CredentialPassphraseFrom is the CA passphrase file systemd hands the service
// (LoadCredential= or LoadCredentialEncrypted= named hearth-ca-passphrase), when it exists.
func CredentialPassphraseFrom(env func(string) string) string {
	d := env("CREDENTIALS_DIRECTORY")
	if d == "" {
		return ""
	}
	p := filepath.Join(d, "hearth-ca-passphrase")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

func (c *Config) readFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

func (c *Config) applyAddon() error {
	o, err := LoadAddonOptions(c.AddonOptionsFile)
	if err != nil {
		return err
	}
	c.DataDir = "/data"
	c.HTTPListen = fmt.Sprintf(":%d", AddonIngressPort)
	c.Listen = fmt.Sprintf(":%d", AddonBrokerPort)
	c.LogLevel = map[string]string{"warning": "warn"}[o.LogLevel]
	if c.LogLevel == "" {
		c.LogLevel = o.LogLevel
	}
	// Devices reach the add-on through the host's port 8893, by the host's name: Home
	// Assistant's own mDNS name unless the options give another. The container's host name
	// means nothing to them.
	host := o.AdvertiseHost
	if host == "" {
		host = AddonDefaultHost
	}
	c.Hostnames = append(c.Hostnames, append([]string{host, "localhost", "127.0.0.1"}, o.BrokerHostnames...)...)
	c.Advertise = net.JoinHostPort(host, strconv.Itoa(AddonHostPort))
	c.CAPassphrase = o.CAPassphrase
	c.LeafLifetime = o.LeafLifetime
	c.ExportCA = o.ExportCAToSSL
	c.SSLDir = "/ssl"
	c.HA.Discovery = o.HADiscovery
	c.HA.DiscoveryPrefix = o.DiscoveryPrefix
	c.Alerts.HomeAssistant = o.AlertNotify
	c.Alerts.Webhook.URL, c.Alerts.Webhook.Secret = o.AlertWebhookURL, o.AlertWebhookSecret
	c.IngressRole = o.DashboardRole
	c.IngressUsers = o.DashboardUserRoles
	c.ChangeApproval = c.ChangeApproval || o.ChangeApproval
	return nil
}

func (c *Config) applyEnv(env func(string) string) {
	str := func(name string, dst *string) {
		if v := env(name); v != "" {
			*dst = v
		}
	}
	str("HEARTH_DATA", &c.DataDir)
	str("HEARTH_LISTEN", &c.Listen)
	str("HEARTH_ADVERTISE", &c.Advertise)
	str("HEARTH_LOG_FORMAT", &c.LogFormat)
	str("HEARTH_LOG_LEVEL", &c.LogLevel)
	str("HEARTH_CA_PASSPHRASE", &c.CAPassphrase)
	str("HEARTH_CA_PASSPHRASE_STORE", &c.CAPassphraseStore)
	str("HEARTH_ADMIN_PASSWORD", &c.AdminPassword)
	str("SUPERVISOR_TOKEN", &c.HA.SupervisorToken)
	if host := env("HOSTNAME"); c.Addon && host != "" && c.HA.DashboardURL == "" {
		// The Supervisor names an add-on's container after its slug, '_' written '-'.
		c.HA.DashboardURL = "homeassistant://hassio/ingress/" + strings.ReplaceAll(host, "-", "_")
	}
	if v := env("HEARTH_HOSTNAMES"); v != "" {
		c.Hostnames = splitList(v)
	}
}

// finish fills defaults and validates.
func (c *Config) finish() error {
	c.DataDir = orDefault(c.DataDir, DefaultDataDir)
	c.Listen = orDefault(c.Listen, DefaultListen)
	c.HTTPListen = orDefault(c.HTTPListen, DefaultHTTPListen)
	if c.HTTPListen == "off" {
		c.HTTPListen = ""
	}
	c.TopicPrefix = orDefault(c.TopicPrefix, protocol.DefaultPrefix)
	c.LogFormat = orDefault(c.LogFormat, "text")
	c.LogLevel = orDefault(c.LogLevel, "info")
	c.SSLDir = orDefault(c.SSLDir, "/ssl")
	c.HA.DiscoveryPrefix = orDefault(c.HA.DiscoveryPrefix, "homeassistant")
	c.HA.BirthTopic = orDefault(c.HA.BirthTopic, "homeassistant/status")
	c.HA.SupervisorURL = orDefault(c.HA.SupervisorURL, "http://supervisor")
	if c.TokenTTL == 0 {
		c.TokenTTL = DefaultTokenTTL
	}
	if c.IssuanceRate == 0 {
		c.IssuanceRate = DefaultIssuanceRate
	}
	if c.Retention == 0 {
		c.Retention = 90 * 24 * time.Hour
	}
	if c.SupersededOverlap == 0 {
		c.SupersededOverlap = DefaultSupersededOverlap
	}
	if c.Renewal.InFlightTimeout == 0 {
		c.Renewal.InFlightTimeout = DefaultInFlightTimeout
	}
	c.Storage.Driver = orDefault(c.Storage.Driver, DriverSQLite)
	switch c.Storage.Driver {
	case DriverSQLite:
	case DriverPostgres:
		if strings.TrimSpace(c.Storage.DSN) == "" {
			return fmt.Errorf("storage: driver postgres needs a dsn")
		}
	default:
		return fmt.Errorf("storage: driver %q: want sqlite or postgres", c.Storage.Driver)
	}
	if c.ReplicaID == "" {
		c.ReplicaID, _ = os.Hostname()
		c.ReplicaID = orDefault(c.ReplicaID, "hub")
	}
	defaultNames := len(c.Hostnames) == 0
	if defaultNames {
		c.Hostnames = DefaultHostnames(os.Hostname, lanAddrs)
	}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	_, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		bad("listen", "%q is not host:port", c.Listen)
	}
	if c.PlainListen != "" {
		host, _, err := net.SplitHostPort(c.PlainListen)
		if ip := net.ParseIP(host); err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
			bad("plain_listen", "%q must be a loopback host:port such as 127.0.0.1:1883", c.PlainListen)
		}
	}
	if c.HTTPListen != "" {
		if _, _, err := net.SplitHostPort(c.HTTPListen); err != nil {
			bad("http_listen", "%q is not host:port or off", c.HTTPListen)
		}
	}
	c.HTTPAuth = orDefault(c.HTTPAuth, HTTPAuthLogin)
	c.IngressRole = orDefault(c.IngressRole, "admin")
	switch {
	case c.HTTPAuth != HTTPAuthLogin && c.HTTPAuth != HTTPAuthNone:
		bad("http_auth", "%q is not login or none", c.HTTPAuth)
	case c.HTTPAuth == HTTPAuthNone && c.HTTPListen != "" && !c.Addon && !IsLoopback(c.HTTPListen):
		bad("http_auth", "none serves the dashboard to anyone who reaches http_listen %q, which is not a loopback address: "+
			"keep http_auth login (users from `hearth-gateway user add`) or listen on 127.0.0.1", c.HTTPListen)
	}
	for name, role := range c.IngressUsers {
		if !slices.Contains([]string{"viewer", "operator", "admin"}, role) {
			bad("ingress_users."+name, "%q is not viewer, operator or admin", role)
		}
	}
	for name, role := range c.CLIRoles {
		if !slices.Contains([]string{"viewer", "operator", "admin"}, role) {
			bad("cli_roles."+name, "%q is not viewer, operator or admin", role)
		}
	}
	if !slices.Contains([]string{"viewer", "operator", "admin"}, c.IngressRole) {
		bad("ingress_role", "%q is not viewer, operator or admin", c.IngressRole)
	}
	if c.DebugListen != "" && !IsLoopback(c.DebugListen) {
		bad("debug_listen", "%q must be a loopback host:port such as 127.0.0.1:6060", c.DebugListen)
	}
	if c.Advertise == "" && port != "" {
		p := port
		if p == "0" {
			p = "8883"
		}
		host := c.Hostnames[0]
		if defaultNames {
			host = AdvertiseHost(c.Hostnames, resolvesHere)
		}
		c.Advertise = net.JoinHostPort(host, p)
	}
	if _, p, err := net.SplitHostPort(c.Advertise); err != nil || p == "" {
		bad("advertise", "%q is not host:port", c.Advertise)
	} else if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		bad("advertise", "port %q is not 1-65535", p)
	}
	for _, err := range c.Alerts.finish() {
		bad("alerts", "%v", err)
	}
	for _, err := range c.Broker.finish() {
		bad("broker", "%v", err)
	}
	if _, err := protocol.NewTopics(c.TopicPrefix); err != nil {
		bad("topic_prefix", "%v", err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("log_format", "%q is not text or json", c.LogFormat)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		bad("log_level", "%q is not debug, info, warn or error", c.LogLevel)
	}
	if c.Renewal.Rate < 0 || c.Renewal.MaxInFlight < 0 {
		bad("renewal", "rate and max_in_flight must be positive")
	}
	if c.Renewal.InFlightTimeout < 10*time.Second {
		bad("renewal.in_flight_timeout", "%s is too short: an agent needs time to install and reconnect (at least 10s)", c.Renewal.InFlightTimeout)
	}
	if c.SupersededOverlap < 0 || c.SupersededOverlap > time.Hour {
		bad("superseded_overlap", "%s is out of range: an old key may log in for at most 1h after its successor's commit", c.SupersededOverlap)
	}
	if c.Retention < 24*time.Hour {
		bad("retention", "%s is too short: keep at least a day of history", c.Retention)
	}
	if c.IssuanceRate < 0 {
		bad("issuance_rate", "%v must be positive", c.IssuanceRate)
	}
	l := c.Limits
	if min(l.MaxPending, l.MaxPendingPerSource, l.MaxConnections, l.MaxConnectionsPerSource, l.SessionsPerDevice, l.CertificatesPerHour) < 0 || l.RenewCooldown < 0 {
		bad("limits", "every limit must be positive (or 0 for the default)")
	}
	if c.TokenTTL < time.Minute || c.TokenTTL > protocol.MaxTokenTTL {
		bad("token_ttl", "%s must be between 1m and %s", c.TokenTTL, protocol.MaxTokenTTL)
	}
	if c.LeafLifetime != 0 && (c.LeafLifetime < time.Hour || c.LeafLifetime > 825*24*time.Hour) {
		bad("leaf_lifetime", "%s must be between 1h and 825 days", c.LeafLifetime)
	}
	for i, a := range c.Admins {
		if a.Name == "" || a.PasswordHash == "" {
			bad(fmt.Sprintf("admins[%d]", i), "needs name and password_hash")
		}
	}
	if c.HA.Broker != "" && !strings.HasPrefix(c.HA.Broker, "mqtt://") && !strings.HasPrefix(c.HA.Broker, "mqtts://") {
		bad("home_assistant.broker", "%q must start with mqtt:// or mqtts://", c.HA.Broker)
	}
	return errors.Join(errs...)
}

// The values of http_auth.
const (
	HTTPAuthLogin = "login"
	HTTPAuthNone  = "none"
)

// IsLoopback reports whether the host of addr (host:port) is a loopback address or
// localhost; an empty host (all interfaces) is not.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// DefaultHostnames are the broker certificate's names when the settings give none: the names
// and addresses a device on the LAN may dial. First <host>.local (mDNS, what agents are told
// to dial), then the bare host name, every LAN address of the machine, and the loopback
// names. hostname and addrs are os.Hostname and the machine's interface addresses (tests
// pass their own).
func DefaultHostnames(hostname func() (string, error), addrs func() []net.IP) []string {
	var names []string
	if h, err := hostname(); err == nil {
		h = strings.TrimSuffix(strings.ToLower(h), ".")
		switch {
		case h == "" || h == "localhost":
		case strings.Contains(h, "."):
			names = append(names, h)
		default:
			names = append(names, h+".local", h)
		}
	}
	for _, ip := range addrs() {
		names = append(names, ip.String())
	}
	return append(names, "localhost", "127.0.0.1", "::1")
}

// AdvertiseHost picks, among the default names (DefaultHostnames' order), the one agents are
// told to dial: the first name — <host>.local, or a dotted host name — when this machine
// resolves it (for .local: it publishes its name over mDNS, as avahi-daemon does); else the
// first LAN address, because a name the hub's own machine cannot resolve will not resolve on
// the devices either; else the first name that resolves; else the first name. resolves
// reports whether a name resolves here (tests pass their own).
func AdvertiseHost(names []string, resolves func(string) bool) string {
	if net.ParseIP(names[0]) == nil && names[0] != "localhost" && resolves(names[0]) {
		return names[0]
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil && !ip.IsLoopback() {
			return n
		}
	}
	for _, n := range names {
		if net.ParseIP(n) == nil && n != "localhost" && resolves(n) {
			return n
		}
	}
	return names[0]
}

// resolvesHere reports whether name resolves on this machine within two seconds.
func resolvesHere(name string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, name)
	return err == nil && len(addrs) > 0
}

// lanAddrs returns the machine's unicast addresses that other machines can reach: not
// loopback, not link-local (an fe80:: address needs a zone no certificate can name).
func lanAddrs() []net.IP {
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []net.IP
	for _, a := range ifaddrs {
		n, ok := a.(*net.IPNet)
		if !ok || n.IP.IsLoopback() || n.IP.IsLinkLocalUnicast() || !n.IP.IsGlobalUnicast() {
			continue
		}
		out = append(out, n.IP)
	}
	// IPv4 first: the address people type.
	slices.SortStableFunc(out, func(a, b net.IP) int {
		return cmp.Compare(boolInt(a.To4() == nil), boolInt(b.To4() == nil))
	})
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// orDefault returns v, or def when v is empty.
func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
