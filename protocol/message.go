package protocol

import (
	"errors"
	"time"
)

// Reason says why an agent sends a CSR.
type Reason string

// The CSR reasons.
const (
	ReasonEnroll   Reason = "enroll"   // first certificate, authenticated by a token
	ReasonWindow   Reason = "window"   // the agent reached its renewal window
	ReasonCommand  Reason = "command"  // the hub sent a renew or rekey command
	ReasonRekey    Reason = "rekey"    // a fresh key was required (incident, campaign)
	ReasonRecovery Reason = "recovery" // the certificate expired while the device was offline
)

// Outcome is the result of an install that an agent reports in a Commit.
type Outcome string

// The commit outcomes.
const (
	OutcomeCommitted  Outcome = "committed"   // the new pair is installed and in use
	OutcomeRolledBack Outcome = "rolled_back" // the agent went back to its previous pair
)

// Action is what a Command asks of an agent.
type Action string

// The command actions.
const (
	ActionRenew  Action = "renew"  // renew now, with a fresh key
	ActionRekey  Action = "rekey"  // renew now; the hub will refuse the old key
	ActionReport Action = "report" // send a health report now
)

// Presence is a device's or the hub's connection state.
type Presence string

// The presence values.
const (
	Online  Presence = "online"
	Offline Presence = "offline"
)

// CSR is an agent's certificate signing request, published on "dev/<id>/csr".
type CSR struct {
	V         int       `json:"v"`
	RequestID string    `json:"request_id"`
	CSR       string    `json:"csr"` // PEM "CERTIFICATE REQUEST"
	Reason    Reason    `json:"reason"`
	Replaces  string    `json:"replaces,omitempty"`   // serial of the certificate being replaced
	CommandID string    `json:"command_id,omitempty"` // the command that caused it, if any
	Time      time.Time `json:"time"`                 // the agent's clock when sent
}

// Error is the error part of a reply.
type Error struct {
	Code       Code   `json:"code"`
	Message    string `json:"message"`
	RetryAfter int    `json:"retry_after,omitempty"` // seconds
}

// Error implements the error interface.
func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Cert is the hub's reply to a CSR, published on "dev/<id>/cert": the chain, or an error.
type Cert struct {
	V         int          `json:"v"`
	RequestID string       `json:"request_id"`
	Chain     string       `json:"chain,omitempty"`  // PEM, leaf first, then the intermediate
	Serial    string       `json:"serial,omitempty"` // the leaf's serial, lowercase hex
	Renewal   *RenewalInfo `json:"renewal,omitempty"`
	Error     *Error       `json:"error,omitempty"`
	HubTime   time.Time    `json:"hub_time"`
}

// Commit is an agent's report of an install, published on "dev/<id>/commit" after it
// reconnected with the new certificate (or rolled back).
type Commit struct {
	V         int       `json:"v"`
	RequestID string    `json:"request_id"`
	Serial    string    `json:"serial"`            // the serial the agent now uses
	Outcome   Outcome   `json:"outcome"`           // committed or rolled_back
	Detail    string    `json:"detail,omitempty"`  // why it rolled back
	Time      time.Time `json:"time"`              // the agent's clock
	Hook      *HookRun  `json:"hook,omitempty"`    // the --on-renew command's result
	Failed    string    `json:"failed,omitempty"`  // with rolled_back: the serial given up
	Attempt   int       `json:"attempt,omitempty"` // the agent's attempt count for this request
	Cause     Cause     `json:"cause,omitempty"`   // with rolled_back: why, one of Causes
}

// HookRun is the result of the command an agent runs once its new certificate is installed
// (--on-renew), reported in the same Commit.
type HookRun struct {
	ExitCode int    `json:"exit_code"`
	Output   string `json:"output,omitempty"` // the last bytes of its output
}

// Ack is the hub's answer to a Commit, published on "dev/<id>/ack". An agent that committed
// and sees no Ack before its deadline rolls back.
type Ack struct {
	V         int       `json:"v"`
	RequestID string    `json:"request_id"`
	Serial    string    `json:"serial,omitempty"` // the serial the hub now holds active
	Error     *Error    `json:"error,omitempty"`  // set when the commit was refused
	HubTime   time.Time `json:"hub_time"`
}

// Command is an order from the hub, published on "dev/<id>/cmd".
type Command struct {
	V         int       `json:"v"`
	CommandID string    `json:"command_id"`
	Action    Action    `json:"action"`
	Reason    string    `json:"reason,omitempty"` // why, for people
	Deadline  time.Time `json:"deadline"`         // ignore the command after this hub time
	HubTime   time.Time `json:"hub_time"`
}

// RenewalInfo is the hub's suggested renewal window for a device's active certificate,
// published retained on "dev/<id>/renewal" (the idea of ACME ARI, RFC 9773).
type RenewalInfo struct {
	V           int       `json:"v"`
	Serial      string    `json:"serial"`
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
	RetryAfter  int       `json:"retry_after,omitempty"` // seconds before asking again
	Explanation string    `json:"explanation,omitempty"`
	HubTime     time.Time `json:"hub_time"`
}

// Health is an agent's report of its certificate, published on "dev/<id>/health".
type Health struct {
	_            [0]func()    // not comparable: no equality function in the agent (its size budget)
	V            int          `json:"v"`
	Serial       string       `json:"serial"`
	Issuer       string       `json:"issuer"`
	NotBefore    time.Time    `json:"not_before"`
	NotAfter     time.Time    `json:"not_after"`
	ChainOK      bool         `json:"chain_ok"`
	ChainError   string       `json:"chain_error,omitempty"`
	KeyAlgorithm KeyAlgorithm `json:"key_algorithm"` // the certificate's key, e.g. "p256"
	KeyStorage   string       `json:"key_storage"`   // "file", or a hardware backend's name
	DeviceTime   time.Time    `json:"device_time"`
	ClockTrusted bool         `json:"clock_trusted"`        // false while the clock is clearly wrong
	SkewSeconds  int64        `json:"skew_seconds"`         // device time minus last hub time seen
	AgentVersion string       `json:"agent_version"`        // the agent's build version
	LastError    string       `json:"last_error,omitempty"` // the last renewal error, for people
	LastCause    Cause        `json:"last_cause,omitempty"` // LastError's cause, one of Causes
	// LastRequestID is the request id of the renewal attempt LastError ended (the agent draws
	// one at the start of every attempt, before it dials or makes a key): the hub records a
	// failed attempt under it once, however many reports repeat it.
	LastRequestID string    `json:"last_request_id,omitempty"`
	Manufacturer  string    `json:"manufacturer,omitempty"` // the device's maker, as its operator configured the agent
	Model         string    `json:"model,omitempty"`        // the device's model, likewise
	Arch          string    `json:"arch,omitempty"`         // the agent's CPU architecture, e.g. "arm64", "mipsle"
	NextRenewal   time.Time `json:"next_renewal,omitzero"`
}

// State is a device's presence, published retained on "dev/<id>/state"; the offline form is
// the agent's Will.
type State struct {
	V            int      `json:"v"`
	State        Presence `json:"state"`
	AgentVersion string   `json:"agent_version,omitempty"`
}

// BridgeInfo describes the hub, published retained on "bridge/info".
type BridgeInfo struct {
	V             int       `json:"v"`
	Version       string    `json:"version"`
	Protocol      int       `json:"protocol"`
	CAFingerprint string    `json:"ca_fingerprint"`
	Broker        string    `json:"broker"` // the address agents connect to
	CAExpires     time.Time `json:"ca_expires"`
	Started       time.Time `json:"started"`
}

// DeviceSummary is one device as "bridge/device/<id>" and device/list show it.
type DeviceSummary struct {
	ID           string    `json:"id"`
	Name         string    `json:"name,omitempty"`
	Family       string    `json:"family,omitempty"`
	Class        string    `json:"class,omitempty"`
	State        string    `json:"state"`
	Online       bool      `json:"online"`
	Serial       string    `json:"serial,omitempty"`
	NotAfter     time.Time `json:"not_after,omitzero"`
	RenewalState string    `json:"renewal_state,omitempty"`
	LastSeen     time.Time `json:"last_seen,omitzero"`
	Problems     []string  `json:"problems,omitempty"`
	// ProblemDetails says what each of Problems means for this device, in the same order.
	ProblemDetails []Problem `json:"problem_details,omitempty"`
}

// Event is a hub event (renewal, revocation, alert), published on "bridge/event".
type Event struct {
	V        int               `json:"v"`
	Type     EventType         `json:"type"` // one of EventTypes, or a newer hub's type
	Time     time.Time         `json:"time"`
	DeviceID string            `json:"device_id,omitempty"`
	Message  string            `json:"message"`
	Data     map[string]string `json:"data,omitempty"`
}

// BridgeRequest is the common part of a request on "bridge/request/<op>": the transaction
// echoed in the response. Operation parameters sit beside it in the same object.
type BridgeRequest struct {
	Transaction string `json:"transaction,omitempty"`
}

// DeviceRequest is the payload of device/get, device/renew, device/remove and device/revoke.
// For device/revoke, Reason is a RevocationReason word ("" is unspecified), Serial selects
// one certificate instead of the whole device, and Note is free text for the audit log; for
// device/renew, Reason is free text.
type DeviceRequest struct {
	Transaction string `json:"transaction,omitempty"`
	ID          string `json:"id"`
	Reason      string `json:"reason,omitempty"`
	Serial      string `json:"serial,omitempty"`
	Note        string `json:"note,omitempty"`
}

// TokenRequest is the payload of token/create.
type TokenRequest struct {
	Transaction string `json:"transaction,omitempty"`
	ID          string `json:"id"`
	Name        string `json:"name,omitempty"`
	Family      string `json:"family,omitempty"`
	TTL         string `json:"ttl,omitempty"` // a Go duration, e.g. "24h"; default 24h
}

// BridgeResponse is the hub's reply on "bridge/response/<op>".
type BridgeResponse struct {
	Transaction string  `json:"transaction,omitempty"`
	Status      string  `json:"status"` // "ok" or "error"
	Data        RawJSON `json:"data,omitempty"`
	Error       string  `json:"error,omitempty"`
	Code        Code    `json:"code,omitempty"`
}

// RawJSON is a JSON value kept as its bytes, as json.RawMessage (which would link
// encoding/json into the agent): encoding/json and jsoncodec both write it as it is and
// read any value into it.
type RawJSON []byte

// MarshalJSON returns r, or null when r is empty.
func (r RawJSON) MarshalJSON() ([]byte, error) {
	if r == nil {
		return []byte("null"), nil
	}
	return r, nil
}

// UnmarshalJSON keeps a copy of data.
func (r *RawJSON) UnmarshalJSON(data []byte) error {
	if r == nil {
		return errors.New("protocol.RawJSON: UnmarshalJSON on nil pointer")
	}
	*r = append((*r)[0:0], data...)
	return nil
}
