package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// AddonIngressPort is the port the dashboard listens on inside the add-on container. It must
// equal ingress_port in addon/config.yaml (a test checks it).
const AddonIngressPort = 8099

// AddonBrokerPort is the container port of the hub's own MQTT-over-TLS listener in the add-on.
// addon/config.yaml maps it to host port 8893 because the Mosquitto add-on owns 1883, 1884, 8883
// and 8884 on the host (a test checks the mapping's container side).
const AddonBrokerPort = 8883

// The defaults LoadAddonOptions applies to options that options.json leaves out.
const (
	defaultLogLevel        = "info"
	defaultLeafLifetime    = 30 * 24 * time.Hour
	defaultDiscoveryPrefix = "homeassistant"
	maxOptionsSize         = 1 << 20
	minPassphraseLen       = 12
	maxPassphraseLen       = 1024
	minLeafLifetime        = time.Hour
	maxLeafLifetime        = 365 * 24 * time.Hour
	maxDiscoveryPrefixLen  = 255
)

// optionKeys are the keys of options.json, the json tags of AddonOptions in field order.
var optionKeys = []string{
	"log_level", "broker_hostnames", "advertise_host", "ca_passphrase",
	"leaf_lifetime", "export_ca_to_ssl", "ha_discovery", "discovery_prefix",
	"alert_notify", "alert_webhook_url", "alert_webhook_secret",
	"dashboard_role", "dashboard_user_roles", "change_approval",
}

// dashboardRoles are the values of dashboard_role (gateway/internal/authz's roles).
var dashboardRoles = []string{"viewer", "operator", "admin"}

// userRolePattern is the syntax of a dashboard_user_roles entry: a Home Assistant user name,
// "=", a role.
var userRolePattern = regexp.MustCompile(`^([^=]{1,64})=(viewer|operator|admin)$`)

// logLevels are the values of the log_level option, in the order the add-on UI lists them.
var logLevels = []string{"debug", "info", "warning", "error"}

// lifetimePattern is the syntax of leaf_lifetime: a whole number of hours or days.
var lifetimePattern = regexp.MustCompile(`^([1-9][0-9]{0,5})([hd])$`)

// AddonOptions are the add-on's options as the Home Assistant Supervisor writes them to
// /data/options.json, after defaults and validation. The json tags are the option keys of
// addon/config.yaml, one field per key (a test keeps the two in step). Use LoadAddonOptions
// to obtain a valid value; a value built by hand has not been validated.
type AddonOptions struct {
	// LogLevel is one of debug, info, warning, error. Default info.
	LogLevel string `json:"log_level"`
	// BrokerHostnames are extra DNS names or IP addresses put as SANs into the hub broker's
	// server certificate, so agents may connect by any of them. Default none.
	BrokerHostnames []string `json:"broker_hostnames"`
	// AdvertiseHost is the host name or IP address agents are told to connect to (it appears
	// in the enrollment command). Empty means AddonDefaultHost (homeassistant.local).
	AdvertiseHost string `json:"advertise_host"`
	// CAPassphrase encrypts the CA's private keys at rest. Empty means the hub generates one
	// and keeps it in /data. Never log it: AddonOptions.LogValue redacts it.
	CAPassphrase string `json:"ca_passphrase"`
	// LeafLifetime is the default lifetime of a device certificate; policy may shorten it per
	// device class. Written as whole hours or days ("720h", "30d"). Default 30 days.
	LeafLifetime time.Duration `json:"leaf_lifetime"`
	// ExportCAToSSL writes the CA bundle to /ssl/hearth/ so other add-ons can trust it.
	// Default true.
	ExportCAToSSL bool `json:"export_ca_to_ssl"`
	// HADiscovery publishes every device as Home Assistant entities on HA's MQTT broker.
	// Default true.
	HADiscovery bool `json:"ha_discovery"`
	// DiscoveryPrefix is Home Assistant's MQTT discovery prefix. Default "homeassistant".
	DiscoveryPrefix string `json:"discovery_prefix"`
	// AlertNotify is how alerts reach Home Assistant: "persistent_notification" (the
	// default), "notify.<service>" (a phone, a speaker) or "off".
	AlertNotify string `json:"alert_notify"`
	// AlertWebhookURL, if set, receives every alert as a signed JSON POST.
	AlertWebhookURL string `json:"alert_webhook_url"`
	// AlertWebhookSecret signs the webhook's body (HMAC-SHA256); required with the URL.
	// Never log it: AddonOptions.LogValue redacts it.
	AlertWebhookSecret string `json:"alert_webhook_secret"`
	// DashboardRole is the role of a Home Assistant user in the panel (ingress): viewer,
	// operator or admin. Default admin (the panel is shown to Home Assistant admins only).
	DashboardRole string `json:"dashboard_role"`
	// DashboardUserRoles give some Home Assistant users (by user name or id) another role
	// than DashboardRole, as "name=role" entries.
	DashboardUserRoles map[string]string `json:"dashboard_user_roles"`
	// ChangeApproval makes policy changes and CA operations wait for a second admin.
	// Default false.
	ChangeApproval bool `json:"change_approval"`
}

// addonOptionsFile is the wire form of options.json: pointers tell a missing option (take the
// default) from one given with a zero value (validate it). Its json tags are AddonOptions'.
type addonOptionsFile struct {
	LogLevel        *string  `json:"log_level"`
	BrokerHostnames []string `json:"broker_hostnames"`
	AdvertiseHost   *string  `json:"advertise_host"`
	CAPassphrase    *string  `json:"ca_passphrase"`
	LeafLifetime    *string  `json:"leaf_lifetime"`
	ExportCAToSSL   *bool    `json:"export_ca_to_ssl"`
	HADiscovery     *bool    `json:"ha_discovery"`
	DiscoveryPrefix *string  `json:"discovery_prefix"`
	AlertNotify     *string  `json:"alert_notify"`
	AlertWebhookURL *string  `json:"alert_webhook_url"`
	AlertWebhookKey *string  `json:"alert_webhook_secret"`
	DashboardRole   *string  `json:"dashboard_role"`
	UserRoles       []string `json:"dashboard_user_roles"`
	ChangeApproval  *bool    `json:"change_approval"`
}

// LoadAddonOptions reads the add-on options file at path (the Supervisor writes it to
// /data/options.json), fills defaults for missing options and validates every option. Unknown
// keys are an error, so a typo is reported rather than ignored. Every invalid option is reported
// at once, each error naming the option and what it allows. A missing file yields an error
// wrapping fs.ErrNotExist.
func LoadAddonOptions(path string) (AddonOptions, error) {
	f, err := os.Open(path)
	if err != nil {
		return AddonOptions{}, fmt.Errorf("add-on options: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxOptionsSize+1))
	if err != nil {
		return AddonOptions{}, fmt.Errorf("add-on options %s: %w", path, err)
	}
	if len(data) > maxOptionsSize {
		return AddonOptions{}, fmt.Errorf("add-on options %s: larger than %d bytes", path, maxOptionsSize)
	}
	o, err := parseAddonOptions(data)
	if err != nil {
		return AddonOptions{}, fmt.Errorf("add-on options %s: %w", path, err)
	}
	return o, nil
}

// parseAddonOptions decodes and validates the content of options.json.
func parseAddonOptions(data []byte) (AddonOptions, error) {
	// A first pass names every unknown key: encoding/json reports only the first, and only as
	// text, which callers must not parse.
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(data, &keys); err != nil {
		return AddonOptions{}, decodeError(err)
	}
	if keys == nil {
		return AddonOptions{}, errors.New("not a JSON object of options: got null")
	}
	var unknown []error
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		if !slices.Contains(optionKeys, k) {
			unknown = append(unknown, fmt.Errorf("option %s is unknown to this version of Hearth (known: %s)", k, strings.Join(optionKeys, ", ")))
		}
	}
	if len(unknown) > 0 {
		return AddonOptions{}, errors.Join(unknown...)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var raw addonOptionsFile
	if err := dec.Decode(&raw); err != nil {
		return AddonOptions{}, decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return AddonOptions{}, errors.New("unexpected data after the options object")
	}

	o := AddonOptions{
		LogLevel:        defaultLogLevel,
		LeafLifetime:    defaultLeafLifetime,
		ExportCAToSSL:   true,
		HADiscovery:     true,
		DiscoveryPrefix: defaultDiscoveryPrefix,
		AlertNotify:     AlertNotifyPersistent,
		DashboardRole:   "admin",
	}
	var errs []error
	bad := func(option, format string, args ...any) {
		errs = append(errs, fmt.Errorf("option %s: "+format, append([]any{option}, args...)...))
	}

	if raw.LogLevel != nil {
		if !slices.Contains(logLevels, *raw.LogLevel) {
			bad("log_level", "%q is not one of %s", *raw.LogLevel, strings.Join(logLevels, ", "))
		} else {
			o.LogLevel = *raw.LogLevel
		}
	}
	for i, h := range raw.BrokerHostnames {
		switch {
		case !validHost(h):
			bad("broker_hostnames", "%q is not a DNS name or an IP address", h)
		case slices.Contains(raw.BrokerHostnames[:i], h):
			bad("broker_hostnames", "%q is listed twice", h)
		default:
			o.BrokerHostnames = append(o.BrokerHostnames, h)
		}
	}
	if raw.AdvertiseHost != nil && *raw.AdvertiseHost != "" {
		if !validHost(*raw.AdvertiseHost) {
			bad("advertise_host", "%q is not a DNS name or an IP address", *raw.AdvertiseHost)
		} else {
			o.AdvertiseHost = *raw.AdvertiseHost
		}
	}
	if raw.CAPassphrase != nil && *raw.CAPassphrase != "" {
		if n := len(*raw.CAPassphrase); n < minPassphraseLen || n > maxPassphraseLen {
			bad("ca_passphrase", "must be %d to %d characters long, or left empty to let the hub generate one (got %d)",
				minPassphraseLen, maxPassphraseLen, n)
		} else {
			o.CAPassphrase = *raw.CAPassphrase
		}
	}
	if raw.LeafLifetime != nil && *raw.LeafLifetime != "" {
		if d, err := parseLifetime(*raw.LeafLifetime); err != nil {
			bad("leaf_lifetime", "%v", err)
		} else {
			o.LeafLifetime = d
		}
	}
	if raw.ExportCAToSSL != nil {
		o.ExportCAToSSL = *raw.ExportCAToSSL
	}
	if raw.HADiscovery != nil {
		o.HADiscovery = *raw.HADiscovery
	}
	if raw.DiscoveryPrefix != nil {
		if err := checkTopicPrefix(*raw.DiscoveryPrefix); err != nil {
			bad("discovery_prefix", "%q %v", *raw.DiscoveryPrefix, err)
		} else {
			o.DiscoveryPrefix = *raw.DiscoveryPrefix
		}
	}
	if raw.AlertNotify != nil && *raw.AlertNotify != "" {
		if err := checkNotifyService(*raw.AlertNotify); err != nil {
			bad("alert_notify", "%v", err)
		} else {
			o.AlertNotify = *raw.AlertNotify
		}
	}
	if raw.AlertWebhookURL != nil && *raw.AlertWebhookURL != "" {
		if err := checkWebhookURL(*raw.AlertWebhookURL); err != nil {
			bad("alert_webhook_url", "%v", err)
		} else {
			o.AlertWebhookURL = *raw.AlertWebhookURL
		}
	}
	if raw.AlertWebhookKey != nil && *raw.AlertWebhookKey != "" {
		o.AlertWebhookSecret = *raw.AlertWebhookKey
	}
	if err := checkWebhookSecret(o.AlertWebhookURL, o.AlertWebhookSecret); err != nil {
		bad("alert_webhook_secret", "%v", err)
	}
	if raw.DashboardRole != nil {
		if !slices.Contains(dashboardRoles, *raw.DashboardRole) {
			bad("dashboard_role", "%q is not one of %s", *raw.DashboardRole, strings.Join(dashboardRoles, ", "))
		} else {
			o.DashboardRole = *raw.DashboardRole
		}
	}
	for _, e := range raw.UserRoles {
		m := userRolePattern.FindStringSubmatch(e)
		if m == nil {
			bad("dashboard_user_roles", "%q is not user=role with a role of %s", e, strings.Join(dashboardRoles, ", "))
			continue
		}
		if o.DashboardUserRoles == nil {
			o.DashboardUserRoles = map[string]string{}
		}
		o.DashboardUserRoles[strings.TrimSpace(m[1])] = m[2]
	}
	if raw.ChangeApproval != nil {
		o.ChangeApproval = *raw.ChangeApproval
	}
	if len(errs) > 0 {
		return AddonOptions{}, errors.Join(errs...)
	}
	return o, nil
}

// decodeError turns a JSON decoding error into one that names the option concerned.
func decodeError(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Field != "" {
		return fmt.Errorf("option %s: a %s is not allowed here, want a %s", typeErr.Field, typeErr.Value, jsonKind(typeErr.Type.String()))
	}
	return fmt.Errorf("not a JSON object of options: %w", err)
}

// jsonKind names a Go type of addonOptionsFile as the JSON kind a user would write.
func jsonKind(goType string) string {
	switch strings.TrimPrefix(goType, "*") {
	case "string":
		return "string"
	case "bool":
		return "boolean (true or false)"
	case "[]string":
		return "list of strings"
	}
	return goType
}

// parseLifetime parses leaf_lifetime: a whole number of hours ("h") or days ("d") between
// minLeafLifetime and maxLeafLifetime.
func parseLifetime(s string) (time.Duration, error) {
	m := lifetimePattern.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a whole number of hours or days such as \"720h\" or \"30d\"", s)
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	unit := time.Hour
	if m[2] == "d" {
		unit = 24 * time.Hour
	}
	d := time.Duration(n) * unit
	if d < minLeafLifetime || d > maxLeafLifetime {
		return 0, fmt.Errorf("%q is outside 1h to 365d", s)
	}
	return d, nil
}

// validHost reports whether s is an IP address or a DNS host name (RFC 1123 labels of letters,
// digits and hyphens, at most 253 characters).
func validHost(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !isAlnum(r) && r != '-' {
				return false
			}
		}
	}
	return true
}

// checkTopicPrefix checks an MQTT topic prefix: levels of letters, digits, '_' and '-'
// separated by '/', with no wildcard and no empty level.
func checkTopicPrefix(s string) error {
	if s == "" || len(s) > maxDiscoveryPrefixLen {
		return fmt.Errorf("must be 1 to %d characters long", maxDiscoveryPrefixLen)
	}
	for level := range strings.SplitSeq(s, "/") {
		if level == "" {
			return errors.New("has an empty topic level (a leading, trailing or doubled '/')")
		}
		for _, r := range level {
			if !isAlnum(r) && r != '_' && r != '-' {
				return fmt.Errorf("contains %q: only letters, digits, '_', '-' and '/' are allowed", r)
			}
		}
	}
	return nil
}

func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

// LogValue implements slog.LogValuer so that logging the options never reveals the CA
// passphrase.
func (o AddonOptions) LogValue() slog.Value {
	passphrase := "(generated)"
	if o.CAPassphrase != "" {
		passphrase = "(set)"
	}
	return slog.GroupValue(
		slog.String("log_level", o.LogLevel),
		slog.Any("broker_hostnames", o.BrokerHostnames),
		slog.String("advertise_host", o.AdvertiseHost),
		slog.String("ca_passphrase", passphrase),
		slog.Duration("leaf_lifetime", o.LeafLifetime),
		slog.Bool("export_ca_to_ssl", o.ExportCAToSSL),
		slog.Bool("ha_discovery", o.HADiscovery),
		slog.String("discovery_prefix", o.DiscoveryPrefix),
		slog.String("alert_notify", o.AlertNotify),
		slog.String("alert_webhook_url", o.AlertWebhookURL),
		slog.Bool("alert_webhook_secret", o.AlertWebhookSecret != ""),
		slog.String("dashboard_role", o.DashboardRole),
		slog.Any("dashboard_user_roles", o.DashboardUserRoles),
		slog.Bool("change_approval", o.ChangeApproval),
	)
}
