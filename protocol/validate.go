package protocol

import (
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Limits on fields. They keep every message well under MaxMessageSize.
const (
	MaxDeviceIDLen  = 64
	MaxRequestIDLen = 64
	MaxSerialLen    = 64 // hex digits; RFC 5280 allows 20 octets
	MaxTextLen      = 1024
	MaxHookOutput   = 4096
	MaxChainCerts   = 8
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid message")

// invalidError is a validation error: errors.Is(err, ErrInvalid) holds, but its text is only
// what is wrong ("device id ... must be ..."), so the message a person reads through the CLI
// or a form carries no "invalid message:" prefix (issue 16).
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// ValidateRequestID checks a request or command id: 1 to 64 characters of A-Z, a-z, 0-9, '.',
// '_' and '-'.
func ValidateRequestID(id string) error {
	if id == "" || len(id) > MaxRequestIDLen {
		return invalid("request id %q must be 1 to %d characters", id, MaxRequestIDLen)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return invalid("request id %q: character %q not allowed", id, r)
		}
	}
	return nil
}

// ValidateSerial checks a certificate serial written as lowercase hexadecimal.
func ValidateSerial(s string) error {
	if s == "" || len(s) > MaxSerialLen {
		return invalid("serial %q must be 1 to %d hex digits", s, MaxSerialLen)
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return invalid("serial %q must be lowercase hexadecimal", s)
		}
	}
	return nil
}

func checkVersion(v int) error {
	if v != Version {
		return &VersionError{Got: v}
	}
	return nil
}

// VersionError reports a message whose "v" is not Version.
type VersionError struct{ Got int }

func (e *VersionError) Error() string {
	return fmt.Sprintf("unsupported protocol version %d (this side speaks %d)", e.Got, Version)
}

// Is makes errors.Is(err, ErrInvalid) true for a VersionError.
func (e *VersionError) Is(target error) bool { return target == ErrInvalid }

func checkText(field, s string, max int) error {
	if len(s) > max {
		return invalid("%s is %d bytes, over the limit of %d", field, len(s), max)
	}
	return nil
}

// minTime is the earliest time a hub may state: the hub's own clock is trusted.
var minTime = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

func checkHubTime(field string, t time.Time) error {
	if t.Before(minTime) || t.Year() > 9999 {
		return invalid("%s %s is not a plausible hub time", field, t.Format(time.RFC3339))
	}
	return nil
}

// checkDeviceTime accepts any time from 1970 on: devices without a real-time clock boot then.
func checkDeviceTime(field string, t time.Time) error {
	if t.Year() < 1970 || t.Year() > 9999 {
		return invalid("%s %s is out of range", field, t.Format(time.RFC3339))
	}
	return nil
}

// checkPEM checks that s holds between 1 and max PEM blocks, all of type blockType, and
// nothing else but white space.
func checkPEM(field, s, blockType string, max int) error {
	rest := []byte(s)
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != blockType {
			return invalid("%s holds a PEM block of type %q, want %q", field, b.Type, blockType)
		}
		n++
		if n > max {
			return invalid("%s holds more than %d PEM blocks", field, max)
		}
	}
	if n == 0 {
		return invalid("%s holds no PEM %q block", field, blockType)
	}
	if strings.TrimSpace(string(rest)) != "" {
		return invalid("%s has trailing data after its PEM blocks", field)
	}
	return nil
}

// Validate checks the message.
func (m *CSR) Validate() error {
	if err := checkVersion(m.V); err != nil {
		return err
	}
	if err := ValidateRequestID(m.RequestID); err != nil {
		return err
	}
	if err := checkPEM("csr", m.CSR, "CERTIFICATE REQUEST", 1); err != nil {
		return err
	}
	switch m.Reason {
	case ReasonEnroll, ReasonWindow, ReasonCommand, ReasonRekey, ReasonRecovery:
	default:
		return invalid("reason %q is not one of enroll, window, command, rekey, recovery", m.Reason)
	}
	if m.Replaces != "" {
		if err := ValidateSerial(m.Replaces); err != nil {
			return err
		}
	}
	if m.Reason != ReasonEnroll && m.Replaces == "" {
		return invalid("reason %q needs the serial it replaces", m.Reason)
	}
	if m.CommandID != "" {
		if err := ValidateRequestID(m.CommandID); err != nil {
			return err
		}
	}
	return checkDeviceTime("time", m.Time)
}

// Validate checks the message: exactly one of a chain and an error.
func (m *Cert) Validate() error {
	if err := checkVersion(m.V); err != nil {
		return err
	}
	if err := ValidateRequestID(m.RequestID); err != nil {
		return err
	}
	if err := checkHubTime("hub_time", m.HubTime); err != nil {
		return err
	}
	switch {
	case m.Error != nil && m.Chain != "":
		return invalid("cert carries both a chain and an error")
	case m.Error != nil:
		return m.Error.validate()
	}
	if err := checkPEM("chain", m.Chain, "CERTIFICATE", MaxChainCerts); err != nil {
		return err
	}
	if err := ValidateSerial(m.Serial); err != nil {
		return err
	}
	if m.Renewal != nil {
		return m.Renewal.Validate()
	}
	return nil
}

func (e *Error) validate() error {
	if e.Code == "" {
		return invalid("error without a code")
	}
	if err := checkText("error.code", string(e.Code), 64); err != nil {
		return err
	}
	if e.RetryAfter < 0 {
		return invalid("error.retry_after %d is negative", e.RetryAfter)
	}
	return checkText("error.message", e.Message, MaxTextLen)
}

// Validate checks the message.
func (m *Commit) Validate() error {
	if err := checkVersion(m.V); err != nil {
		return err
	}
	if err := ValidateRequestID(m.RequestID); err != nil {
		return err
	}
	if err := ValidateSerial(m.Serial); err != nil {
		return err
	}
	switch m.Outcome {
	case OutcomeCommitted, OutcomeRolledBack:
	default:
		return invalid("outcome %q is not committed or rolled_back", m.Outcome)
	}
	if m.Failed != "" {
		if err := ValidateSerial(m.Failed); err != nil {
			return err
		}
	}
	if m.Hook != nil {
		if err := checkText("hook.output", m.Hook.Output, MaxHookOutput); err != nil {
			return err
		}
	}
	if m.Attempt < 0 {
		return invalid("attempt %d is negative", m.Attempt)
	}
	if err := checkText("detail", m.Detail, MaxTextLen); err != nil {
		return err
	}
	if err := ValidateCause(m.Cause); err != nil {
		return err
	}
	return checkDeviceTime("time", m.Time)
}

// Validate checks the message.
func (m *Ack) Validate() error {
	if err := checkVersion(m.V); err != nil {
		return err
	}
	if err := ValidateRequestID(m.RequestID); err != nil {
		return err
	}
	if err := checkHubTime("hub_time", m.HubTime); err != nil {
		return err
	}
	if m.Error != nil {
		return m.Error.validate()
	}
	return ValidateSerial(m.Serial)
}

// Validate checks the message.
func (m *Command) Validate() error {
	if err := checkVersion(m.V); err != nil {
		return err
	}
	if err := ValidateRequestID(m.CommandID); err != nil {
		return err
	}
	switch m.Action {
	case ActionRenew, ActionRekey, ActionReport:
	default:
		return invalid("action %q is not one of renew, rekey, report", m.Action)
	}
	if err := checkHubTime("hub_time", m.HubTime); err != nil {
		return err
	}
	if err := checkHubTime("deadline", m.Deadline); err != nil {
		return err
	}
	if m.Deadline.Before(m.HubTime) {
		return invalid("deadline %s is before hub_time %s", m.Deadline.Format(time.RFC3339), m.HubTime.Format(time.RFC3339))
	}
	return checkText("reason", m.Reason, MaxTextLen)
}

// Validate checks the message.
func (m *RenewalInfo) Validate() error {
	if err := checkVersion(m.V); err != nil {
		return err
	}
	if err := ValidateSerial(m.Serial); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		t    time.Time
	}{{"window_start", m.WindowStart}, {"window_end", m.WindowEnd}, {"hub_time", m.HubTime}} {
		if err := checkHubTime(f.name, f.t); err != nil {
			return err
		}
	}
	if m.WindowEnd.Before(m.WindowStart) {
		return invalid("window_end is before window_start")
	}
	if m.RetryAfter < 0 {
		return invalid("retry_after %d is negative", m.RetryAfter)
	}
	return checkText("explanation", m.Explanation, MaxTextLen)
}

// Validate checks the report. A device may report no certificate (serial empty) when it has
// none; times are device times and may be from 1970.
func (m *Health) Validate() error {
	if err := checkVersion(m.V); err != nil {
		return err
	}
	if m.Serial != "" {
		if err := ValidateSerial(m.Serial); err != nil {
			return err
		}
		if m.NotAfter.Before(m.NotBefore) {
			return invalid("not_after is before not_before")
		}
	}
	for _, f := range []struct {
		name string
		t    time.Time
	}{{"not_before", m.NotBefore}, {"not_after", m.NotAfter}, {"device_time", m.DeviceTime}} {
		if !f.t.IsZero() {
			if err := checkDeviceTime(f.name, f.t); err != nil {
				return err
			}
		}
	}
	for _, f := range []struct {
		name, s string
	}{{"issuer", m.Issuer}, {"chain_error", m.ChainError}, {"key_algorithm", string(m.KeyAlgorithm)}, {"key_storage", m.KeyStorage}, {"agent_version", m.AgentVersion}, {"last_error", m.LastError},
		{"manufacturer", m.Manufacturer}, {"model", m.Model}, {"arch", m.Arch}} {
		if err := checkText(f.name, f.s, MaxTextLen); err != nil {
			return err
		}
	}
	if m.LastRequestID != "" {
		if err := ValidateRequestID(m.LastRequestID); err != nil {
			return invalid("last_request_id: %v", err)
		}
	}
	return ValidateCause(m.LastCause)
}

// Validate checks the message.
func (m *State) Validate() error {
	if err := checkVersion(m.V); err != nil {
		return err
	}
	if m.State != Online && m.State != Offline {
		return invalid("state %q is not online or offline", m.State)
	}
	return checkText("agent_version", m.AgentVersion, 64)
}

// Validate checks the message.
func (m *BridgeInfo) Validate() error {
	if err := checkVersion(m.V); err != nil {
		return err
	}
	if m.Protocol != Version {
		return invalid("protocol %d is not %d", m.Protocol, Version)
	}
	return checkText("version", m.Version, 64)
}

// Validate checks the message.
func (m *Event) Validate() error {
	if err := checkVersion(m.V); err != nil {
		return err
	}
	if m.Type == "" {
		return invalid("event without a type")
	}
	if m.DeviceID != "" {
		if err := ValidateDeviceID(m.DeviceID); err != nil {
			return err
		}
	}
	if err := checkHubTime("time", m.Time); err != nil {
		return err
	}
	return checkText("message", m.Message, MaxTextLen)
}

// Validate checks the request.
func (m *BridgeRequest) Validate() error { return checkText("transaction", m.Transaction, 128) }

// Validate checks the request.
func (m *DeviceRequest) Validate() error {
	if err := checkText("transaction", m.Transaction, 128); err != nil {
		return err
	}
	if err := ValidateDeviceID(m.ID); err != nil {
		return err
	}
	return checkText("reason", m.Reason, MaxTextLen)
}

// MaxTokenTTL is the longest life an enrollment token may be given.
const MaxTokenTTL = 30 * 24 * time.Hour

// Validate checks the request; an empty TTL means the hub's default.
func (m *TokenRequest) Validate() error {
	if err := checkText("transaction", m.Transaction, 128); err != nil {
		return err
	}
	if err := ValidateDeviceID(m.ID); err != nil {
		return err
	}
	if err := checkText("name", m.Name, 128); err != nil {
		return err
	}
	if err := checkText("family", m.Family, 64); err != nil {
		return err
	}
	if _, err := m.Lifetime(24 * time.Hour); err != nil {
		return err
	}
	return nil
}

// Lifetime returns the token's TTL, or def when none was asked for.
func (m *TokenRequest) Lifetime(def time.Duration) (time.Duration, error) {
	if m.TTL == "" {
		return def, nil
	}
	d, err := time.ParseDuration(m.TTL)
	if err != nil {
		return 0, invalid("ttl %q is not a duration such as 24h", m.TTL)
	}
	if d < time.Minute || d > MaxTokenTTL {
		return 0, invalid("ttl %s must be between 1m and %s", d, MaxTokenTTL)
	}
	return d, nil
}

// Validate checks the response.
func (m *BridgeResponse) Validate() error {
	if m.Status != "ok" && m.Status != "error" {
		return invalid("status %q is not ok or error", m.Status)
	}
	if m.Status == "error" && m.Error == "" {
		return invalid("an error response needs an error message")
	}
	return checkText("transaction", m.Transaction, 128)
}

// maxCauseLen bounds a cause's name; a newer peer's cause is accepted if it is a short word.
const maxCauseLen = 32

// ValidateCause checks that c is empty or a cause name: 1 to 32 of a-z, 0-9 and '_'. A
// cause this version does not list is valid (a newer peer's); see Cause.Info.
func ValidateCause(c Cause) error {
	if len(c) > maxCauseLen {
		return invalid("cause is longer than %d bytes", maxCauseLen)
	}
	for _, r := range c {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return invalid("cause %q is not a word of a-z, 0-9 and _", c)
		}
	}
	return nil
}
