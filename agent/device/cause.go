package device

import (
	"crypto/x509"
	"errors"

	"github.com/hearth-pki/hearth/agent/internal/hub"
	"github.com/hearth-pki/hearth/protocol"
)

// causeError attaches a cause to a failure the error chain alone cannot name (a key that
// could not be generated, an install that failed, a hook that exited with an error).
type causeError struct {
	cause protocol.Cause
	err   error
}

func (e *causeError) Error() string { return e.err.Error() }
func (e *causeError) Unwrap() error { return e.err }

// withCause returns err marked with cause; nil stays nil.
func withCause(cause protocol.Cause, err error) error {
	if err == nil {
		return nil
	}
	return &causeError{cause: cause, err: err}
}

// causeOf returns the cause a failed renewal reports to the hub (protocol/README.md,
// "Causes"): a cause attached where the failure happened, else the hub's refusal code, else
// what the error chain says (chain refused, no reply, connection refused or lost).
func causeOf(err error) protocol.Cause {
	if err == nil {
		return ""
	}
	var ce *causeError
	var he *HubError
	var refused *hub.RefusedError
	var dialErr *hub.DialError
	var invalid x509.CertificateInvalidError
	var authority x509.UnknownAuthorityError
	switch {
	case errors.As(err, &ce):
		return ce.cause
	case errors.As(err, &he):
		return protocol.CauseOf(protocol.Code(he.Code))
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		// A certificate outside its validity at the device's time: the hub's (the TLS
		// handshake) or the pinned CA's. The clock is the suspect, not the certificate.
		return protocol.CauseClockSkew
	case errors.Is(err, ErrNotCommitted):
		return protocol.CauseCommitTimeout
	case errors.Is(err, ErrBadChain), errors.As(err, &authority):
		// An issued chain, or the hub's own certificate (a hub on another CA than the one
		// pinned), that does not verify against the pinned CA.
		return protocol.CauseChainVerification
	case errors.Is(err, ErrNoReply):
		return protocol.CauseTimeout
	case errors.As(err, &refused), errors.As(err, &dialErr) && dialErr.Alert:
		return protocol.CauseReconnectRefused
	case errors.As(err, &dialErr), errors.Is(err, hub.ErrConnectionLost):
		return protocol.CauseNetwork
	}
	return protocol.CauseUnknown
}
