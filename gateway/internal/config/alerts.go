package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// Alerts routes the monitor's alerts (gateway/internal/alert). Every route is off unless
// configured; the add-on turns on Home Assistant notifications.
type Alerts struct {
	// Webhook posts every alert as JSON, signed with HMAC-SHA256.
	Webhook Webhook `yaml:"webhook"`
	// HomeAssistant sends every alert as a Home Assistant notification through the
	// Supervisor's Core API proxy (add-on only): AlertNotifyPersistent, "notify.<service>",
	// or "" / "off" for none.
	HomeAssistant string `yaml:"home_assistant"`
	// PerHour and Burst limit the alerts raised. Default 30 an hour, 10 at once.
	PerHour float64 `yaml:"per_hour"`
	Burst   int     `yaml:"burst"`
	// FamilyDevices failing within Window raise one family alert. Default 3 within 1h.
	FamilyDevices int           `yaml:"family_devices"`
	Window        time.Duration `yaml:"window"`
	// Repeated failures in a row with one cause raise a device alert. Default 3.
	Repeated int `yaml:"repeated"`
}

// Webhook is the webhook route.
type Webhook struct {
	// URL is an http or https URL; empty turns the route off.
	URL string `yaml:"url"`
	// Secret signs each body; SecretFile holds it instead (its content, trimmed). One of the
	// two is required with URL.
	Secret     string `yaml:"secret"`
	SecretFile string `yaml:"secret_file"`
}

// AlertNotifyPersistent is the Home Assistant route's persistent notifications, the
// add-on's default.
const AlertNotifyPersistent = "persistent_notification"

// minWebhookSecret is the shortest webhook secret accepted.
const minWebhookSecret = 16

// finish reads the secret file, normalizes "off" and validates.
func (a *Alerts) finish() []error {
	var errs []error
	if a.HomeAssistant == "off" {
		a.HomeAssistant = ""
	}
	if a.HomeAssistant != "" {
		if err := checkNotifyService(a.HomeAssistant); err != nil {
			errs = append(errs, fmt.Errorf("home_assistant: %w", err))
		}
	}
	if a.Webhook.SecretFile != "" {
		b, err := os.ReadFile(a.Webhook.SecretFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("webhook.secret_file: %w", err))
		}
		a.Webhook.Secret = strings.TrimSpace(string(b))
	}
	if a.Webhook.URL != "" {
		if err := checkWebhookURL(a.Webhook.URL); err != nil {
			errs = append(errs, fmt.Errorf("webhook.url: %w", err))
		}
	}
	if err := checkWebhookSecret(a.Webhook.URL, a.Webhook.Secret); err != nil {
		errs = append(errs, fmt.Errorf("webhook.secret: %w", err))
	}
	if a.PerHour < 0 || a.Burst < 0 || a.FamilyDevices < 0 || a.Window < 0 || a.Repeated < 0 {
		errs = append(errs, errors.New("per_hour, burst, family_devices, window and repeated cannot be negative"))
	}
	return errs
}

// checkNotifyService checks a Home Assistant route: persistent_notification, off or
// notify.<service> with a service name of a-z, 0-9 and '_'.
func checkNotifyService(s string) error {
	if s == AlertNotifyPersistent || s == "off" {
		return nil
	}
	name, ok := strings.CutPrefix(s, "notify.")
	valid := ok && name != "" && len(name) <= 255
	for _, r := range name {
		valid = valid && (r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_')
	}
	if !valid {
		return fmt.Errorf("%q is not persistent_notification, off or notify.<service> (a-z, 0-9, _)", s)
	}
	return nil
}

// checkWebhookURL checks an absolute http or https URL with a host.
func checkWebhookURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http:// or https:// URL", s)
	}
	return nil
}

// checkWebhookSecret requires a secret of at least minWebhookSecret bytes with a URL.
func checkWebhookSecret(url, secret string) error {
	switch {
	case url == "" && secret != "":
		return errors.New("a webhook secret is set but no webhook URL")
	case url != "" && len(secret) < minWebhookSecret:
		return fmt.Errorf("the webhook needs a secret of at least %d characters to sign its body", minWebhookSecret)
	}
	return nil
}
