package protocol

import (
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hearth-pki/hearth/protocol/jsoncodec"
)

// This file holds the bodies of the bridge operations (README.md, "Bridge API") besides the
// common BridgeRequest, DeviceRequest, TokenRequest and BridgeResponse: what each operation
// takes and the data of its ok response. Like those, they carry no "v".

// TokenCreated is the data of a token/create response. Token is shown only here; the hub
// keeps its hash.
type TokenCreated struct {
	ID        string    `json:"id"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	Command   string    `json:"command"` // the exact hearth-agent enroll command
}

// DeviceDetail is the data of a device/get response: the device's summary and its inventory
// records.
//
// The records (DeviceRecord, CertificateRecord, AttemptRecord, AuditEvent) follow the rules
// of every bridge body (README.md, "JSON conventions"): snake_case names, RFC 3339 times,
// fields left out rather than sent as zero values, durations in seconds. Until issue 16 they
// carried Go's field names (Serial, NotAfter), zero times and nanoseconds.
type DeviceDetail struct {
	DeviceSummary
	Device       DeviceRecord        `json:"device"`
	Certificates []CertificateRecord `json:"certificates"` // without their PEM
	Attempts     []AttemptRecord     `json:"attempts"`     // the last 20
	Events       []AuditEvent        `json:"events"`       // the last 20
}

// DeviceRecord is a device as the hub's inventory holds it.
type DeviceRecord struct {
	ID        string        `json:"id"`
	Name      string        `json:"name,omitempty"`
	Family    string        `json:"family,omitempty"`
	Model     string        `json:"model,omitempty"`
	Vendor    string        `json:"vendor,omitempty"`
	Firmware  string        `json:"firmware,omitempty"`
	Class     string        `json:"class,omitempty"` // the policy class
	Tags      []string      `json:"tags,omitempty"`
	Path      string        `json:"path,omitempty"`      // "direct", "gateway" or absent
	Via       string        `json:"via,omitempty"`       // the device this one is reached through
	Mechanism string        `json:"mechanism,omitempty"` // "agent", "manual" or absent
	CreatedAt time.Time     `json:"created_at,omitzero"`
	LastSeen  time.Time     `json:"last_seen,omitzero"`
	State     string        `json:"state"` // as DeviceSummary.State
	Online    bool          `json:"online"`
	Health    DeviceHealth  `json:"health,omitzero"`  // absent until the agent reports
	Renewal   DeviceRenewal `json:"renewal,omitzero"` // absent for a device never scheduled
}

// DeviceHealth is what the device's agent last reported (Health), as the hub recorded it.
// In JSON, ClockSkew is clock_skew_seconds.
type DeviceHealth struct {
	ReportedSerial   string        `json:"reported_serial,omitempty"`
	ReportedNotAfter time.Time     `json:"reported_not_after,omitzero"`
	ChainOK          bool          `json:"chain_ok"`
	ClockSkew        time.Duration `json:"-"` // device clock minus hub clock
	AgentVersion     string        `json:"agent_version,omitempty"`
	LastError        string        `json:"last_error,omitempty"`
	At               time.Time     `json:"reported_at,omitzero"` // when the report arrived
}

// deviceHealthJSON is DeviceHealth on the wire: the skew in seconds.
type deviceHealthJSON struct {
	plainDeviceHealth
	ClockSkewSeconds float64 `json:"clock_skew_seconds"`
}

type plainDeviceHealth DeviceHealth

// MarshalJSON writes the skew as clock_skew_seconds.
func (h DeviceHealth) MarshalJSON() ([]byte, error) {
	return jsoncodec.Marshal(deviceHealthJSON{plainDeviceHealth(h), h.ClockSkew.Seconds()})
}

// UnmarshalJSON reads clock_skew_seconds into ClockSkew.
func (h *DeviceHealth) UnmarshalJSON(b []byte) error {
	var j deviceHealthJSON
	if err := jsoncodec.Unmarshal(b, &j); err != nil {
		return err
	}
	*h = DeviceHealth(j.plainDeviceHealth)
	h.ClockSkew = secondsDuration(j.ClockSkewSeconds)
	return nil
}

// DeviceRenewal is the renewal scheduler's bookkeeping for a device.
type DeviceRenewal struct {
	State         string    `json:"state,omitempty"` // as DeviceSummary.RenewalState
	Failures      int       `json:"failures,omitempty"`
	NextAttemptAt time.Time `json:"next_attempt_at,omitzero"`
	LastCause     string    `json:"last_cause,omitempty"`
	WindowStart   time.Time `json:"window_start,omitzero"`
	WindowEnd     time.Time `json:"window_end,omitzero"`
}

// CertificateRecord is one certificate of a device as the inventory holds it.
type CertificateRecord struct {
	Serial       string       `json:"serial"`
	DeviceID     string       `json:"device_id"`
	NotBefore    time.Time    `json:"not_before,omitzero"`
	NotAfter     time.Time    `json:"not_after,omitzero"`
	Issuer       string       `json:"issuer,omitempty"`
	KeyAlgorithm KeyAlgorithm `json:"key_algorithm,omitempty"`
	Fingerprint  string       `json:"fingerprint,omitempty"` // Fingerprint.Hex
	Status       string       `json:"status"`                // "pending", "active", "superseded" or "revoked"
	PEM          string       `json:"pem,omitempty"`         // left out by device/get
	RequestID    string       `json:"request_id,omitempty"`
	Replaces     string       `json:"replaces,omitempty"`
	CreatedAt    time.Time    `json:"created_at,omitzero"`
	ActivatedAt  time.Time    `json:"activated_at,omitzero"`
	RevokedAt    time.Time    `json:"revoked_at,omitzero"`
	RevokeReason string       `json:"revoke_reason,omitempty"`
}

// AttemptRecord is one certificate request of a device as the inventory holds it. In JSON,
// Latency is latency_seconds.
type AttemptRecord struct {
	RequestID  string        `json:"request_id"`
	DeviceID   string        `json:"device_id"`
	Reason     string        `json:"reason,omitempty"` // a CSR Reason, or "import"
	Serial     string        `json:"serial,omitempty"`
	StartedAt  time.Time     `json:"started_at,omitzero"`
	FinishedAt time.Time     `json:"finished_at,omitzero"`
	Outcome    string        `json:"outcome,omitempty"`    // "issued", "committed", "rolled_back" or "failed"
	ErrorCode  Code          `json:"error_code,omitempty"` // of a failure or rollback
	Latency    time.Duration `json:"-"`                    // to issue (or to fail)
	// Cause is why a failed, rolled-back or expired attempt did not succeed, CauseClass its
	// class (see Causes), Detail the refusal's or the agent's explanation.
	Cause      Cause  `json:"cause,omitempty"`
	CauseClass Class  `json:"cause_class,omitempty"`
	Detail     string `json:"detail,omitempty"`
}

type plainAttemptRecord AttemptRecord

// attemptRecordJSON is AttemptRecord on the wire: the latency in seconds.
type attemptRecordJSON struct {
	plainAttemptRecord
	LatencySeconds float64 `json:"latency_seconds,omitempty"`
}

// MarshalJSON writes the latency as latency_seconds.
func (a AttemptRecord) MarshalJSON() ([]byte, error) {
	return jsoncodec.Marshal(attemptRecordJSON{plainAttemptRecord(a), a.Latency.Seconds()})
}

// UnmarshalJSON reads latency_seconds into Latency.
func (a *AttemptRecord) UnmarshalJSON(b []byte) error {
	var j attemptRecordJSON
	if err := jsoncodec.Unmarshal(b, &j); err != nil {
		return err
	}
	*a = AttemptRecord(j.plainAttemptRecord)
	a.Latency = secondsDuration(j.LatencySeconds)
	return nil
}

// secondsDuration converts seconds on the wire back to a Duration, to the nanosecond.
func secondsDuration(s float64) time.Duration {
	return time.Duration(math.Round(s * float64(time.Second)))
}

// AuditEvent is one record of the hub's audit log, in device/get and events responses. Hash
// chains the records: the SHA-256 over the record and PrevHash.
type AuditEvent struct {
	Seq      int64             `json:"seq"`
	Time     time.Time         `json:"time"`
	Kind     EventType         `json:"kind"`
	DeviceID string            `json:"device_id,omitempty"`
	Actor    string            `json:"actor,omitempty"` // who caused it, e.g. "hub", "cli" or "mqtt:<username>"
	Message  string            `json:"message,omitempty"`
	Data     map[string]string `json:"data,omitempty"`
	Hash     string            `json:"hash"`
	PrevHash string            `json:"prev_hash,omitempty"` // absent for the first record
}

// DeviceRenewed is the data of a device/renew response: Queued when the renewal scheduler
// took the device (it commands it at once when online, else when it reconnects, and retries
// until it commits), else the command sent.
type DeviceRenewed struct {
	ID        string    `json:"id"`
	CommandID string    `json:"command_id,omitempty"`
	Deadline  time.Time `json:"deadline,omitzero"`
	Queued    bool      `json:"queued,omitempty"`
	// AfterCurrent is set when the device was already renewing: the renewal asked for
	// follows once the current one ends.
	AfterCurrent bool   `json:"after_current,omitempty"`
	Message      string `json:"message,omitempty"` // what happens next, for people
}

// DeviceRevoked is the data of device/revoke and device/remove responses.
type DeviceRevoked struct {
	ID           string           `json:"id"`
	Revoked      int              `json:"revoked"`      // certificates revoked
	Disconnected int              `json:"disconnected"` // live sessions dropped
	Removed      bool             `json:"removed,omitempty"`
	Reason       RevocationReason `json:"reason,omitempty"`      // the RFC 5280 reason recorded
	Serial       string           `json:"serial,omitempty"`      // with one certificate revoked: its serial
	Quarantined  bool             `json:"quarantined,omitempty"` // the whole device was revoked: it must enroll again
}

// Limits of device/import and device/sign.
const (
	// MaxImportPEM bounds the PEM text of an imported chain (8 RSA-8192 certificates fit).
	MaxImportPEM = 48 << 10
	// MaxImportChain is the most certificates an imported chain may hold, leaf included.
	MaxImportChain = MaxChainCerts
	// MaxCSRPEM bounds the PEM text of an uploaded CSR.
	MaxCSRPEM = 16 << 10
)

// ManualDevice names a device without an agent and describes it, in device/import and
// device/sign requests. Empty descriptive fields keep what the inventory has.
type ManualDevice struct {
	Transaction string `json:"transaction,omitempty"`
	ID          string `json:"id"`
	Name        string `json:"name,omitempty"`
	Family      string `json:"family,omitempty"`
	Vendor      string `json:"vendor,omitempty"`
	Model       string `json:"model,omitempty"`
}

// Validate checks the id and the descriptive fields.
func (m *ManualDevice) Validate() error {
	if err := ValidateDeviceID(m.ID); err != nil {
		return err
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"transaction", m.Transaction, 128}, {"name", m.Name, 128}, {"family", m.Family, 64},
		{"vendor", m.Vendor, 64}, {"model", m.Model, 64}} {
		if len(f.v) > f.max {
			return invalid("%s is %d bytes, over the limit of %d", f.name, len(f.v), f.max)
		}
		if !utf8.ValidString(f.v) || strings.ContainsFunc(f.v, unicode.IsControl) {
			return invalid("%s %q must be UTF-8 text without control characters", f.name, f.v)
		}
	}
	return nil
}

// ImportRequest is the payload of device/import: PEM holds the device's certificate chain,
// leaf first; the chain may come from any CA.
type ImportRequest struct {
	ManualDevice
	PEM string `json:"pem"`
}

// Validate checks the device fields and the size of the PEM text.
func (r *ImportRequest) Validate() error {
	if len(r.PEM) > MaxImportPEM {
		return invalid("pem is %d bytes, over the limit of %d", len(r.PEM), MaxImportPEM)
	}
	return r.ManualDevice.Validate()
}

// SignRequest is the payload of device/sign: CSR is a PEM certificate request made on the
// device.
type SignRequest struct {
	ManualDevice
	CSR string `json:"csr"`
}

// Validate checks the device fields and the size of the CSR.
func (r *SignRequest) Validate() error {
	if len(r.CSR) > MaxCSRPEM {
		return invalid("csr is %d bytes, over the limit of %d", len(r.CSR), MaxCSRPEM)
	}
	return r.ManualDevice.Validate()
}

// DeviceImported is the data of a device/import response.
type DeviceImported struct {
	ID       string    `json:"id"`
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"not_after"`
	Issuer   string    `json:"issuer"`
	Status   string    `json:"status"` // as CertificateRecord.Status
	// Superseded is the certificate this one replaced as the device's active one.
	Superseded string `json:"superseded,omitempty"`
	// AlreadyImported is set when the inventory already had this certificate: nothing changed.
	AlreadyImported bool `json:"already_imported,omitempty"`
}

// DeviceSigned is the data of a device/sign response. Chain is the leaf then the hub's
// intermediate, in PEM.
type DeviceSigned struct {
	ID         string    `json:"id"`
	Serial     string    `json:"serial"`
	NotAfter   time.Time `json:"not_after"`
	Class      string    `json:"class"`
	Chain      string    `json:"chain"`
	Superseded string    `json:"superseded,omitempty"`
}

// CampaignSelector chooses the devices of a campaign: every agent device with an active
// certificate when All is set, else those of Family and/or of the policy class Class (both
// when both are set).
type CampaignSelector struct {
	Family string `json:"family,omitempty"`
	Class  string `json:"class,omitempty"`
	All    bool   `json:"all,omitempty"`
}

// Campaign is the payload of campaign/start: renew (or re-key) a selection of devices as one
// operation, e.g. a compromised family re-keyed or a fleet moved to a new intermediate.
type Campaign struct {
	// ID names the campaign: 1 to 64 letters, digits, '.', '_' or '-'.
	ID       string           `json:"id"`
	Selector CampaignSelector `json:"selector"`
	// Rate is the campaign's commands per minute, under the scheduler's own rate; 0 leaves
	// only the scheduler's rate.
	Rate float64 `json:"rate,omitempty"`
	// Canary is the number of devices commanded first; the others wait until every canary
	// committed, and a canary that fails aborts the campaign.
	Canary int `json:"canary,omitempty"`
	// AbortAfter stops the campaign once this fraction of its devices failed (0..1; 0:
	// never). Devices not yet commanded are then left untouched.
	AbortAfter float64 `json:"abort_after,omitempty"`
	// Action is ActionRenew (default) or ActionRekey.
	Action Action `json:"action,omitempty"`
}

// CampaignState is where a campaign stands.
type CampaignState string

// The campaign states.
const (
	CampaignRunning  CampaignState = "running"
	CampaignAborted  CampaignState = "aborted"  // its abort threshold was reached
	CampaignFinished CampaignState = "finished" // every device committed or failed
)

// CampaignStatus is a campaign with its progress: the data of a campaign/start response and
// each entry of a campaign/list response.
type CampaignStatus struct {
	Campaign
	State   CampaignState `json:"state"`
	Started time.Time     `json:"started"`
	Ended   time.Time     `json:"ended,omitzero"`
	Cause   string        `json:"cause,omitempty"` // why it was aborted
	// Total devices; Commanded so far; InFlight (commanded, no outcome yet); Committed
	// (a new certificate is active, commanded or not); Failed; Pending (not yet commanded).
	Total     int `json:"total"`
	Commanded int `json:"commanded"`
	InFlight  int `json:"in_flight"`
	Committed int `json:"committed"`
	Failed    int `json:"failed"`
	Pending   int `json:"pending"`
}

// PolicyReloaded is the data of a policy/reload response: the settings that changed.
type PolicyReloaded struct {
	Changed []string `json:"changed"`
}

// EventsRequest is the payload of events: the newest audit events, of one device when ID is
// set; Limit is clamped to 1..1000.
type EventsRequest struct {
	Transaction string `json:"transaction,omitempty"`
	ID          string `json:"id,omitempty"`
	Limit       int    `json:"limit"`
}

// AuditIntact is AuditVerified.Audit of an audit log whose hash chain verifies.
const AuditIntact = "intact"

// AuditVerified is the data of an audit/verify response; a broken log is an error response
// naming the first broken record.
type AuditVerified struct {
	Audit string `json:"audit"` // AuditIntact
}

// CACertificate describes one certificate of the hub's CA.
type CACertificate struct {
	Subject     string    `json:"subject"`
	Serial      string    `json:"serial"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	Fingerprint string    `json:"fingerprint"` // Fingerprint.String
}

// CAInfo is the data of a ca/show response.
type CAInfo struct {
	Intermediate CACertificate `json:"intermediate"`
	Root         CACertificate `json:"root"`
	// Previous is the intermediate a rotation replaced, while it is still trusted.
	Previous *CACertificate `json:"previous,omitempty"`
	// Rotation is the latest intermediate rotation, under way or retired.
	Rotation *CARotation `json:"rotation,omitempty"`
	// PreviousRoot is the root a root rotation replaced and Cross the certificate by which it
	// vouches for the root in force, while the previous root is still trusted.
	PreviousRoot *CACertificate `json:"previous_root,omitempty"`
	Cross        *CACertificate `json:"cross,omitempty"`
}
