package inventory

import (
	"errors"
	"fmt"
)

// Sentinel errors returned (wrapped with context) by Store methods. Callers branch on them
// with errors.Is.
var (
	// ErrNotFound reports that the device, certificate, attempt, token or setting does not exist.
	ErrNotFound = errors.New("not found")
	// ErrDuplicate reports that a row with the same key already exists (a certificate serial,
	// an attempt's request id for its device, a token hash).
	ErrDuplicate = errors.New("already exists")
	// ErrInvalid reports an argument the store refuses: a missing key, an unknown state or
	// status, text that is not valid UTF-8.
	ErrInvalid = errors.New("invalid value")
	// ErrRevoked reports an attempt to activate a revoked certificate.
	ErrRevoked = errors.New("certificate revoked")
	// ErrAbandoned reports an attempt to activate a certificate whose request ended without a
	// commit.
	ErrAbandoned = errors.New("certificate abandoned")
	// ErrTokenInvalid reports an enrollment token hash that is unknown or belongs to another
	// device.
	ErrTokenInvalid = errors.New("enrollment token invalid")
	// ErrTokenUsed reports an enrollment token that was already consumed.
	ErrTokenUsed = errors.New("enrollment token already used")
	// ErrTokenExpired reports an enrollment token past its expiry.
	ErrTokenExpired = errors.New("enrollment token expired")
	// ErrSchemaTooNew reports a database written by a newer Hearth whose schema this binary
	// does not know; it is never downgraded.
	ErrSchemaTooNew = errors.New("database schema is newer than this program")
	// ErrAuditBroken is matched (errors.Is) by every *AuditError.
	ErrAuditBroken = errors.New("audit chain broken")
)

// AuditError is returned by VerifyAudit when the event chain does not verify. Seq is the
// first event that fails; the events before it verified.
type AuditError struct {
	Seq    int64
	Reason string
}

// Error describes where and why the chain breaks.
func (e *AuditError) Error() string {
	return fmt.Sprintf("audit chain broken at seq %d: %s", e.Seq, e.Reason)
}

// Is makes errors.Is(err, ErrAuditBroken) true for an *AuditError.
func (e *AuditError) Is(target error) bool { return target == ErrAuditBroken }

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
