package device

import (
	"errors"
	"time"
)

// ErrNotEnrolled means the state directory holds no identity, no pinned CA or no hub
// settings: run Enroll (hearth-agent enroll) first.
var ErrNotEnrolled = errors.New("device: not enrolled")

// ErrLocked means another agent process (or Agent) holds the state directory.
var ErrLocked = errors.New("device: state directory in use by another agent")

// ErrFingerprintMismatch means the hub's root CA is not the one whose fingerprint the
// operator gave to Enroll. Nothing was sent to the hub and nothing was written.
var ErrFingerprintMismatch = errors.New("device: hub CA fingerprint mismatch")

// ErrBadChain means a certificate chain from the hub was refused: it does not verify against
// the pinned CA, does not match the key the agent generated, or names another device.
var ErrBadChain = errors.New("device: certificate chain refused")

// ErrNoReply means the hub did not answer a request or a commit before the deadline.
var ErrNoReply = errors.New("device: no reply from the hub")

// ErrNotCommitted means a new certificate was installed but the hub did not acknowledge its
// commit. Renew rolled back to the previous pair; after an enrollment (no previous pair) the
// new one is kept and Agent.Run sends the commit again.
var ErrNotCommitted = errors.New("device: commit not acknowledged")

// HubError is an error reply from the hub (a cert or ack message carrying an error code).
type HubError struct {
	// Code is the protocol error code, e.g. protocol.CodeUnauthorized.
	Code string
	// Message is the hub's explanation.
	Message string
	// RetryAfter is how long the hub asks the agent to wait before trying again; zero when
	// the code is not retryable.
	RetryAfter time.Duration
}

// Error describes the reply.
func (e *HubError) Error() string { return "hub refused: " + e.Code + ": " + e.Message }
