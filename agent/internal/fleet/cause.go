package fleet

import (
	"context"
	"errors"

	"github.com/hearth-pki/hearth/agent/device"
	"github.com/hearth-pki/hearth/agent/internal/hub"
)

// Causes of failures that carry no protocol error code. A failure the hub answered with an
// error is counted under the protocol code instead (protocol.Code*: "busy", "rate_limited",
// "not_presented", …).
const (
	CauseNoReply        = "no_reply"        // no cert or ack before the device's timeout
	CauseNotCommitted   = "not_committed"   // the hub acknowledged another serial, or nothing
	CauseBadChain       = "bad_chain"       // the chain failed the device's checks
	CauseFingerprint    = "ca_fingerprint"  // the hub's root is not the pinned one
	CauseConnectionLost = "connection_lost" // the session dropped during the exchange
	CauseRefused        = "connect_refused" // the broker refused CONNECT
	CauseDial           = "dial"            // TCP or TLS failed
	CauseTimeout        = "timeout"         // a deadline passed
	CauseOther          = "other"
)

// cause names why err happened, for counting: the hub's protocol error code when it sent
// one, else one of the Cause constants.
func cause(err error) string {
	var he *device.HubError
	var refused *hub.RefusedError
	var dial *hub.DialError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &he):
		return he.Code
	case errors.Is(err, device.ErrNoReply):
		return CauseNoReply
	case errors.Is(err, device.ErrFingerprintMismatch):
		return CauseFingerprint
	case errors.Is(err, device.ErrBadChain):
		return CauseBadChain
	case errors.Is(err, hub.ErrConnectionLost):
		return CauseConnectionLost
	case errors.As(err, &refused):
		return CauseRefused
	case errors.As(err, &dial):
		return CauseDial
	case errors.Is(err, device.ErrNotCommitted):
		return CauseNotCommitted
	case errors.Is(err, context.DeadlineExceeded):
		return CauseTimeout
	}
	return CauseOther
}
