package device

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/atomicfile"
	"github.com/hearth-pki/hearth/agent/internal/hub"
	"github.com/hearth-pki/hearth/agent/internal/keystore"
	"github.com/hearth-pki/hearth/agent/internal/log"
	"github.com/hearth-pki/hearth/protocol"
	"github.com/hearth-pki/hearth/protocol/jsoncodec"
)

// Defaults of Config's zero fields.
const (
	DefaultDir            = "/etc/hearth"
	DefaultHealthEvery    = 6 * time.Hour
	DefaultConnectTimeout = 20 * time.Second
	DefaultRequestTimeout = time.Minute
	DefaultAckTimeout     = 30 * time.Second
	DefaultRetryMin       = 30 * time.Second
	DefaultRetryMax       = time.Hour
	DefaultReconnectMax   = 5 * time.Minute
	DefaultStep           = time.Minute
	DefaultHookTimeout    = 2 * time.Minute
)

// minBuildTime is the lower bound of the true time when Config.BuildTime is unset: no device
// running this code can truly be before it.
var minBuildTime = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// Config configures Enroll, Renew, ReadStatus and an Agent. The zero value of every field but
// Dir means its default; Enroll saves HubURL, DeviceID, Topics' prefix, KeyAlgorithm and
// ExportPEM in the state directory (config.json), and the other entry points take them from
// there when they are left empty.
type Config struct {
	// Dir is the state directory (keys, pinned CA, state). Default DefaultDir.
	Dir string
	// Memory, if set, keeps the keys, the pinned CA and the state in memory instead of in
	// Dir: nothing is read from or written to disk (no config.json, status.json or lock), so
	// HubURL and DeviceID must be given to every entry point, and nothing survives the
	// process. Pass the same Memory to Enroll and then to New. For simulated devices
	// (hearth-fleet); ReadStatus and ExportPEM do not apply.
	Memory *Memory
	// HubURL is the hub's MQTT address, "mqtts://host:port".
	HubURL string
	// DeviceID is the device's id (see protocol.ValidateDeviceID).
	DeviceID string
	// Topics builds topic names; the zero value uses protocol.DefaultPrefix.
	Topics protocol.Topics
	// KeyAlgorithm is the key type generated at enrollment and each renewal: "p256" (default),
	// "p384", "ed25519" or "rsa2048".
	KeyAlgorithm string
	// ExportPEM also keeps cert.pem and key.pem in Dir for local services.
	ExportPEM bool
	// HealthEvery is the interval between periodic health reports. Default 6 h.
	HealthEvery time.Duration
	// OnRenew is a command (argv) run after each acknowledged renewal, e.g. to reload a
	// service. Its exit status and the tail of its output are reported in the next commit and,
	// when it failed, as the last error.
	OnRenew []string
	// HookTimeout bounds OnRenew. Default 2 min.
	HookTimeout time.Duration
	// Version is the agent's version, reported to the hub.
	Version string
	// Manufacturer and Model describe the device, reported to the hub in health reports
	// (Home Assistant shows them on the device's page). Optional.
	Manufacturer, Model string
	// BuildTime is when the agent was built: a device clock before it is clearly wrong.
	BuildTime time.Time
	// Now is the device's wall clock. Default time.Now.
	Now func() time.Time
	// Rand draws renewal instants and backoff jitter (never keys: those come from
	// crypto/rand). Default: seeded from crypto/rand. Used by one goroutine at a time.
	Rand *mrand.Rand
	// Logger receives the agent's log. Default log.Default().
	Logger *log.Logger
	// ConnectTimeout bounds one connection attempt (TCP, TLS, CONNECT, subscriptions).
	ConnectTimeout time.Duration
	// RequestTimeout bounds the wait for the hub's reply to a CSR.
	RequestTimeout time.Duration
	// AckTimeout bounds the wait for the hub's acknowledgment of a commit.
	AckTimeout time.Duration
	// RetryMin and RetryMax bound the exponential backoff after a failed renewal
	// (default 30 s doubling up to 1 h, with jitter); reconnection waits 1 s (or RetryMin if
	// shorter) doubling up to ReconnectMax.
	RetryMin, RetryMax time.Duration
	// ReconnectMax caps the wait between connection attempts. The wait doubles with each
	// failed attempt and each session that ended within a minute, so that a hub that keeps
	// failing is not hammered by its whole fleet. Default 5 min.
	ReconnectMax time.Duration
	// Step is the longest the agent sleeps before looking at the wall clock again; timers
	// stall while a device is suspended. Default 1 min.
	Step time.Duration
	// OnEvent, if set, is called by the agent's goroutine after each Event. It must not
	// block; tests and the hub's end-to-end tests use it to follow an agent.
	OnEvent func(Event)
}

// settings is what Enroll saves as config.json so that later commands need no flags. Its
// field names are a file format: never rename them.
type settings struct {
	V            int    `json:"v"`
	Hub          string `json:"hub"`
	DeviceID     string `json:"device_id"`
	TopicPrefix  string `json:"topic_prefix"`
	KeyAlgorithm string `json:"key_algorithm"`
	ExportPEM    bool   `json:"export_pem,omitempty"`
}

const (
	settingsName   = "config.json"
	settingsVer    = 1
	maxConfigBytes = 64 << 10
)

// loadSettings reads config.json; a missing file is the zero settings and no error.
func loadSettings(dir string) (settings, error) {
	var s settings
	data, err := readSmall(filepath.Join(dir, settingsName), maxConfigBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	if err := jsoncodec.Unmarshal(data, &s); err != nil {
		return settings{}, fmt.Errorf("%s: %w", settingsName, err)
	}
	if s.V != settingsVer {
		return settings{}, fmt.Errorf("%s: version %d, want %d", settingsName, s.V, settingsVer)
	}
	return s, nil
}

// saveSettings writes config.json atomically.
func saveSettings(dir string, c Config) error {
	b, err := jsoncodec.MarshalIndent(settings{
		V: settingsVer, Hub: c.HubURL, DeviceID: c.DeviceID, TopicPrefix: c.Topics.Prefix(),
		KeyAlgorithm: c.KeyAlgorithm, ExportPEM: c.ExportPEM,
	}, "", "  ")
	if err != nil {
		return err
	}
	// Durable: the hub's address and the device id must survive a power loss.
	if err := atomicfile.WriteFile(dir, settingsName, append(b, '\n')); err != nil {
		return fmt.Errorf("write %s: %w", settingsName, err)
	}
	return nil
}

// resolve fills c's empty fields from config.json (when fromDisk) and from the defaults, and
// validates the result.
func (c Config) resolve(fromDisk bool) (Config, error) {
	if c.Dir == "" {
		c.Dir = DefaultDir
	}
	if fromDisk && c.Memory == nil {
		s, err := loadSettings(c.Dir)
		if err != nil {
			return c, fmt.Errorf("device: config: %w", err)
		}
		if c.HubURL == "" {
			c.HubURL = s.Hub
		}
		if c.DeviceID == "" {
			c.DeviceID = s.DeviceID
		}
		if c.Topics == (protocol.Topics{}) && s.TopicPrefix != "" {
			t, err := protocol.NewTopics(s.TopicPrefix)
			if err != nil {
				return c, fmt.Errorf("device: config: %s: %w", settingsName, err)
			}
			c.Topics = t
		}
		if c.KeyAlgorithm == "" {
			c.KeyAlgorithm = s.KeyAlgorithm
		}
		c.ExportPEM = c.ExportPEM || s.ExportPEM
	}
	if c.HubURL == "" || c.DeviceID == "" {
		if c.Memory != nil {
			return c, fmt.Errorf("device: config: %w (a device in memory needs its hub URL and device id)", ErrNotEnrolled)
		}
		return c, fmt.Errorf("device: config: %w (no hub URL or device id in %s)", ErrNotEnrolled, filepath.Join(c.Dir, settingsName))
	}
	u, err := hub.ParseURL(c.HubURL)
	if err != nil {
		return c, fmt.Errorf("device: config: %w", err)
	}
	c.HubURL = u.String()
	if err := protocol.ValidateDeviceID(c.DeviceID); err != nil {
		return c, fmt.Errorf("device: config: %w", err)
	}
	if c.KeyAlgorithm == "" {
		c.KeyAlgorithm = string(protocol.KeyP256)
	}
	alg, err := keystore.ParseAlgorithm(c.KeyAlgorithm)
	if err != nil {
		return c, fmt.Errorf("device: config: %w", err)
	}
	c.KeyAlgorithm = string(alg)
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.HealthEvery, DefaultHealthEvery)
	def(&c.HookTimeout, DefaultHookTimeout)
	def(&c.ConnectTimeout, DefaultConnectTimeout)
	def(&c.RequestTimeout, DefaultRequestTimeout)
	def(&c.AckTimeout, DefaultAckTimeout)
	def(&c.RetryMin, DefaultRetryMin)
	def(&c.RetryMax, DefaultRetryMax)
	def(&c.ReconnectMax, DefaultReconnectMax)
	def(&c.Step, DefaultStep)
	if c.RetryMax < c.RetryMin {
		c.RetryMax = c.RetryMin
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		var seed [16]byte
		if _, err := rand.Read(seed[:]); err != nil {
			return c, fmt.Errorf("device: seed: %w", err)
		}
		c.Rand = mrand.New(mrand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:])))
	}
	if c.Logger == nil {
		c.Logger = log.Default()
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	return c, nil
}

// floor is the initial lower bound of the true time.
func (c Config) floor(lastKnownGood time.Time) time.Time {
	f := minBuildTime
	if c.BuildTime.After(f) {
		f = c.BuildTime
	}
	if lastKnownGood.After(f) {
		f = lastKnownGood
	}
	return f
}

// where names the place the identity is kept, for error messages.
func (c Config) where() string {
	if c.Memory != nil {
		return "memory"
	}
	return c.Dir
}

// keyStorage is the key storage reported in health messages.
func (c Config) keyStorage() string {
	if c.Memory != nil {
		return "memory"
	}
	return "file"
}

// keys is what the agent needs of a keystore: the state directory's files (keystore.Dir), or
// memory (keystore.Memory) for a simulated device.
type keys interface {
	Current() (keystore.Pair, error)
	Previous() (keystore.Pair, error)
	Install(key crypto.Signer, chain []*x509.Certificate) error
	Rollback() error
	CA() ([]*x509.Certificate, error)
	WriteCA(chain []*x509.Certificate) error
	LoadState() (keystore.State, error)
	SaveState(s keystore.State) error
}

// Memory holds one simulated device's keys, pinned CA and state (Config.Memory). The zero
// value is empty and ready to use. It takes no lock: use it for one device, with one Enroll,
// Renew or Run at a time, as a state directory's lock would enforce.
type Memory struct {
	ks keystore.Memory
}

// openDir returns the keystore: c.Memory's, or the state directory's, created if needed and
// locked against a second agent process. The caller must call release.
func openDir(c Config) (keys, func(), error) {
	if c.Memory != nil {
		return &c.Memory.ks, func() {}, nil
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("device: %w", err)
	}
	unlock, err := lockDir(c.Dir)
	if err != nil {
		return nil, nil, err
	}
	ks, err := keystore.Open(c.Dir, keystore.Options{ExportPEM: c.ExportPEM})
	if err != nil {
		unlock()
		return nil, nil, fmt.Errorf("device: %w", err)
	}
	return ks, unlock, nil
}
