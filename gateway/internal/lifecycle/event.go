package lifecycle

import (
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/protocol"
)

// Event is something that happened to a device. The implementations are the types below.
type Event interface{ event() }

// SessionUp is a session of the device that authenticated: with its certificate (Serial
// set) or with an enrollment token (Serial "").
type SessionUp struct {
	Conn   Conn
	Serial string
}

// SessionDown is a session of the device whose connection closed.
type SessionDown struct{ Conn Conn }

// Subscribed is a session of the device that subscribed to its command topic.
type Subscribed struct{ Conn Conn }

// CSRReceived is a certificate request that arrived on a session of the device.
type CSRReceived struct {
	Conn      Conn
	RequestID string
	CommandID string // the command it answers, if any
}

// Issued is the certificate the issuer recorded (pending) for the request in flight.
type Issued struct {
	RequestID string
	Serial    string
}

// RequestRefused is the issuer's refusal of the request in flight: nothing was issued.
type RequestRefused struct{ RequestID string }

// CommitReceived is a commit report that arrived on a session of the device.
type CommitReceived struct {
	Conn      Conn
	Presented string // the serial the session presents
	RequestID string
	Serial    string // the serial the agent says it now uses
	Outcome   protocol.Outcome
	Failed    string // with rolled_back: the serial the agent gave up
	Cause     protocol.Cause
	Detail    string // with rolled_back: the agent's explanation
}

// CommandQueued is a renew command the renewal scheduler wants the device to get.
type CommandQueued struct{ Command Command }

// HealthReported is a health report that arrived on a session of the device.
type HealthReported struct {
	Conn   Conn
	Issuer string // the issuer the agent reports for its certificate
	Health inventory.Health
	// Failure is the renewal attempt the agent reports as its last failure (last_request_id,
	// last_cause, last_error); zero when it reports none, or names no attempt.
	Failure ReportedFailure
}

// ReportedFailure is a renewal attempt an agent says failed.
type ReportedFailure struct {
	RequestID string
	Cause     protocol.Cause
	Detail    string // the agent's last_error
}

// Tick is the passing of time: deadlines at or before now end.
type Tick struct{}

func (SessionUp) event()      {}
func (SessionDown) event()    {}
func (Subscribed) event()     {}
func (CSRReceived) event()    {}
func (Issued) event()         {}
func (RequestRefused) event() {}
func (CommitReceived) event() {}
func (CommandQueued) event()  {}
func (HealthReported) event() {}
func (Tick) event()           {}

// Effect is what the machine asks to be done. The implementations are the types below;
// effects of one Step are carried out in order, before the device's next event.
type Effect interface{ effect() }

// PresenceChanged records that the device went online (its first live certificate session)
// or offline (its last one closed).
type PresenceChanged struct{ Online bool }

// Proceed lets the request through single flight: run the issuance pipeline. Its answer
// comes back as Issued or RequestRefused.
type Proceed struct{ RequestID string }

// Refuse answers a request or commit with an error. Commit selects the ack topic (a
// commit) over the cert topic (a CSR).
type Refuse struct {
	Commit     bool
	RequestID  string
	Code       protocol.Code
	Message    string
	RetryAfter time.Duration
}

// Activate makes Serial the device's active certificate and acknowledges the commit, in
// that order: the acknowledgement is published only once the activation is durable.
// Rollback is set when the device went back to its previous certificate after a commit.
type Activate struct {
	RequestID string
	Serial    string
	Previous  string
	Rollback  bool
	Failed    string // with Rollback: the serial given up
}

// Reacknowledge answers a commit already recorded (its acknowledgement was lost).
type Reacknowledge struct {
	RequestID string
	Serial    string
}

// EndRequest records that the request in flight ended without a commit, and drops its
// pending certificate if one was issued. Acknowledge is set when the end answers the
// device's own rolled_back report (on the ack topic).
type EndRequest struct {
	RequestID   string
	Serial      string // the pending certificate, "" when none was issued
	Outcome     Outcome
	Cause       string         // what happened, for people
	Failure     protocol.Cause // why, one of protocol.Causes
	Acknowledge bool
	Current     string // with Acknowledge: the serial the device stays on
}

// Outcome is how a request in flight ended without a commit.
type Outcome string

// The outcomes of EndRequest.
const (
	OutcomeRolledBack Outcome = "rolled_back" // the agent reported it gave the request up
	OutcomeExpired    Outcome = "expired"     // the in-flight timeout passed
	OutcomeFailed     Outcome = "failed"      // the agent reported, in a health report, an attempt the hub never saw
)

// RecordFailure stores a failed attempt the agent reported and the hub has no record of
// (inventory.Store.RecordReportedFailure: once per request id, however often the report
// repeats).
type RecordFailure struct{ Failure ReportedFailure }

// SendCommand publishes the command on the device's command topic.
type SendCommand struct{ Command Command }

// CommandSeen records that the device acted on its command (or that its deadline passed:
// Expired), so it is sent no more.
type CommandSeen struct {
	ID      string
	Expired bool
}

// RecordHealth stores a health report; the device was seen now.
type RecordHealth struct{ Health inventory.Health }

// FindingKind is what a finding says is wrong.
type FindingKind int

// The findings.
const (
	// FindingDuplicateSession: one certificate presented on several connections at once, a
	// cloned device or a leaked key.
	FindingDuplicateSession FindingKind = iota + 1
	// FindingUnexpectedSerial: the agent reports a certificate that is neither the active
	// one nor the one in flight.
	FindingUnexpectedSerial
	// FindingUnexpectedIssuer: the agent reports a certificate from another issuer than the
	// hub's intermediate.
	FindingUnexpectedIssuer
)

// Found raises a finding about the device.
type Found struct {
	Kind   FindingKind
	Serial string // the certificate concerned
	Count  int    // FindingDuplicateSession: the connections presenting it
	Detail string // FindingUnexpectedSerial: the active serial; FindingUnexpectedIssuer: the issuer reported
}

func (PresenceChanged) effect() {}
func (Proceed) effect()         {}
func (Refuse) effect()          {}
func (Activate) effect()        {}
func (Reacknowledge) effect()   {}
func (EndRequest) effect()      {}
func (SendCommand) effect()     {}
func (CommandSeen) effect()     {}
func (RecordHealth) effect()    {}
func (RecordFailure) effect()   {}
func (Found) effect()           {}
