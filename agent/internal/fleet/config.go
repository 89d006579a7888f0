package fleet

import (
	"bufio"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/hub"
	"github.com/hearth-pki/hearth/agent/internal/log"
	"github.com/hearth-pki/hearth/protocol"
)

// Defaults of Config's zero fields.
const (
	DefaultIDPrefix      = "sim-"
	DefaultConcurrency   = 16
	DefaultTimeout       = 2 * time.Minute
	DefaultProgressEvery = 5 * time.Second
	DefaultAdminUser     = "admin"
)

// Config describes a simulated fleet. The zero value of every optional field means its
// default.
type Config struct {
	// HubURL is the hub's MQTT address, "mqtts://host:port". Required.
	HubURL string
	// CA is the hub's CA chain (as in DATA/ca/root.pem); its root's fingerprint is what each
	// device pins at enrollment. Required.
	CA []*x509.Certificate
	// Devices is how many devices to simulate. Required.
	Devices int
	// Tokens are enrollment tokens, one per device: the first Devices of them are used, and
	// their ids name the devices. Without Tokens, Admin is required and the devices are named
	// IDPrefix followed by a zero-padded number.
	Tokens []Token
	// Admin, if set (and Tokens not), mints a token for each device through the hub's bridge
	// API (token/create) over an admin MQTT session.
	Admin *AdminLogin
	// IDPrefix starts the generated device ids. Default "sim-".
	IDPrefix string
	// Concurrency bounds the devices enrolling or making their first connection at once.
	// Default 16.
	Concurrency int
	// KeysDir, if set, gives each device a state directory KeysDir/<id>, as hearth-agent
	// keeps; a device already enrolled there is reused without a token. Default: keys in
	// memory, nothing on disk.
	KeysDir string
	// KeyAlgorithm is the devices' key type (see device.Config). Default p256.
	KeyAlgorithm string
	// Topics builds topic names; the zero value uses protocol.DefaultPrefix.
	Topics protocol.Topics
	// Timeout bounds each device's connection attempts, CSR replies and commit
	// acknowledgments (a loaded hub answers slowly). Default 2 min.
	Timeout time.Duration
	// ReconnectMax caps each device's wait between connection attempts (device.Config).
	// Default the agent's, 5 min: the wait doubles with each session that ended within a
	// minute, so a test that kills the hub every few seconds caps it to measure the hub.
	ReconnectMax time.Duration
	// UntilRenewed makes Run return once every enrolled device has committed at least one
	// renewal (enrollment not counted).
	UntilRenewed bool
	// ProgressEvery is the interval between progress reports. Default 5 s.
	ProgressEvery time.Duration
	// Progress receives a progress line at each report, and the line saying the fleet is
	// ready. nil: none.
	Progress io.Writer
	// StateFile, if set, is rewritten (atomically) with the Summary as JSON at each progress
	// report and when Run returns, so that another process can read the fleet's view.
	StateFile string
	// Logger receives the agents' logs. Default: discarded.
	Logger *log.Logger
	// Version is the agent version the devices report. Default "fleet".
	Version string
	// Now is the clock of the measurements. Default time.Now.
	Now func() time.Time
}

// AdminLogin are a hub admin's MQTT credentials.
type AdminLogin struct {
	// User is the admin's name. Default "admin".
	User string
	// Password is the admin's password (HEARTH_ADMIN_PASSWORD on the hub).
	Password string
}

// Token is one device's enrollment token.
type Token struct {
	ID    string
	Token string
}

// ParseTokens reads "id token" lines (separated by blanks); blank lines and lines starting
// with '#' are skipped.
func ParseTokens(r io.Reader) ([]Token, error) {
	var out []Token
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("fleet: tokens line %d: want \"id token\", got %d fields", n, len(f))
		}
		if err := protocol.ValidateDeviceID(f[0]); err != nil {
			return nil, fmt.Errorf("fleet: tokens line %d: %w", n, err)
		}
		if seen[f[0]] {
			return nil, fmt.Errorf("fleet: tokens line %d: device %q listed twice", n, f[0])
		}
		seen[f[0]] = true
		out = append(out, Token{ID: f[0], Token: f[1]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("fleet: tokens: %w", err)
	}
	return out, nil
}

// resolve fills the defaults and validates c.
func (c Config) resolve() (Config, error) {
	u, err := hub.ParseURL(c.HubURL)
	if err != nil {
		return c, fmt.Errorf("fleet: %w", err)
	}
	c.HubURL = u.String()
	if _, err := rootOf(c.CA); err != nil {
		return c, err
	}
	if c.Devices <= 0 {
		return c, errors.New("fleet: the number of devices must be positive")
	}
	switch {
	case len(c.Tokens) > 0:
		if len(c.Tokens) < c.Devices {
			return c, fmt.Errorf("fleet: %d tokens for %d devices", len(c.Tokens), c.Devices)
		}
	case c.Admin != nil:
		if c.Admin.Password == "" {
			return c, errors.New("fleet: an admin login needs a password")
		}
		if c.Admin.User == "" {
			c.Admin = &AdminLogin{User: DefaultAdminUser, Password: c.Admin.Password}
		}
	case c.KeysDir == "":
		return c, errors.New("fleet: no enrollment tokens and no admin login to mint them")
	}
	if c.IDPrefix == "" {
		c.IDPrefix = DefaultIDPrefix
	}
	if len(c.Tokens) == 0 {
		if err := protocol.ValidateDeviceID(c.deviceID(c.Devices - 1)); err != nil {
			return c, fmt.Errorf("fleet: id prefix %q: %w", c.IDPrefix, err)
		}
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = DefaultProgressEvery
	}
	if c.Logger == nil {
		c.Logger = log.Discard()
	}
	if c.Version == "" {
		c.Version = "fleet"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// deviceID is the id of device i: its token's, or IDPrefix and i zero-padded to the width of
// the largest index (at least 5 digits), so that ids sort in order.
func (c Config) deviceID(i int) string {
	if len(c.Tokens) > 0 {
		return c.Tokens[i].ID
	}
	width := max(5, len(strconv.Itoa(c.Devices-1)))
	return fmt.Sprintf("%s%0*d", c.IDPrefix, width, i)
}

// rootOf returns the self-signed CA certificate of chain.
func rootOf(chain []*x509.Certificate) (*x509.Certificate, error) {
	for _, c := range chain {
		if c.IsCA && c.CheckSignatureFrom(c) == nil {
			return c, nil
		}
	}
	return nil, errors.New("fleet: the CA file holds no root CA certificate (DATA/ca/root.pem on the hub)")
}

// fingerprint is the pin the devices enroll with.
func (c Config) fingerprint() string {
	root, _ := rootOf(c.CA)
	return protocol.FingerprintOf(root).String()
}
