package protocol

// Code is a machine-readable error code carried in replies. The list is append-only: a code is
// never renamed, removed or given another meaning.
type Code string

// The error codes, in the order they were added.
const (
	CodeBadRequest         Code = "bad_request"         // malformed JSON, wrong types or missing fields
	CodeTooLarge           Code = "too_large"           // the payload exceeds MaxMessageSize
	CodeUnsupportedVersion Code = "unsupported_version" // "v" is not a version this hub speaks
	CodeBadCSR             Code = "bad_csr"             // the CSR does not parse or its signature is wrong
	CodeIdentityMismatch   Code = "identity_mismatch"   // the CSR, topic and session name different devices
	CodeWeakKey            Code = "weak_key"            // key algorithm or size refused
	CodePolicyDenied       Code = "policy_denied"       // policy refused the request; the message names the rule
	CodeUnauthorized       Code = "unauthorized"        // the token is unknown, used or expired
	CodeRevoked            Code = "revoked"             // the device or certificate is revoked
	CodeBusy               Code = "busy"                // another request of this device is in flight
	CodeRateLimited        Code = "rate_limited"        // the hub's issuance rate is exhausted
	CodeInternal           Code = "internal"            // the hub failed; nothing was issued
	CodeUnknownRequest     Code = "unknown_request"     // a commit names a request the hub does not know
	CodeNotPresented       Code = "not_presented"       // a commit's serial is not the one on the TLS session
	CodeExpired            Code = "expired"             // the certificate expired beyond the recovery grace
	CodeNotFound           Code = "not_found"           // a bridge request names a device, token or campaign the hub does not know
	CodeTokenUnknown       Code = "token_unknown"       // the hub knows no unused or used token of that value for the device
	CodeTokenUsed          Code = "token_used"          // the token enrolled a device already
	CodeTokenExpired       Code = "token_expired"       // the token's lifetime ended
	CodeLockedOut          Code = "locked_out"          // too many failed logins from this source; retry_after says how long
	CodeQuotaExceeded      Code = "quota_exceeded"      // a per-device quota is used up; retry_after says when it refills
	CodeForbidden          Code = "forbidden"           // the requester's role may not run the operation, or no one is logged in
	CodeNeedsApproval      Code = "needs_approval"      // the operation needs a second admin: propose it (change/propose)
)

// CodeInfo describes a code: whether a client should retry, and after how long by default.
type CodeInfo struct {
	Code        Code
	Retry       bool
	RetryAfter  int // seconds; a reply's own retry_after overrides it
	Description string
}

// codes lists every code with its retry advice, in the order it was added. The
// descriptions are kept apart, in codeDescriptions, so that a binary that only needs the
// advice (the agent) does not carry them.
var codes = [...]struct {
	code       Code
	retry      bool
	retryAfter int
}{
	{CodeBadRequest, false, 0},
	{CodeTooLarge, false, 0},
	{CodeUnsupportedVersion, false, 0},
	{CodeBadCSR, false, 0},
	{CodeIdentityMismatch, false, 0},
	{CodeWeakKey, false, 0},
	{CodePolicyDenied, false, 0},
	{CodeUnauthorized, false, 0},
	{CodeRevoked, false, 0},
	{CodeBusy, true, 5},
	{CodeRateLimited, true, 30},
	{CodeInternal, true, 60},
	{CodeUnknownRequest, false, 0},
	{CodeNotPresented, true, 5},
	{CodeExpired, false, 0},
	{CodeNotFound, false, 0},
	{CodeTokenUnknown, false, 0},
	{CodeTokenUsed, false, 0},
	{CodeTokenExpired, false, 0},
	{CodeLockedOut, true, 60},
	{CodeQuotaExceeded, true, 600},
	{CodeForbidden, false, 0},
	{CodeNeedsApproval, false, 0},
}

// codeDescriptions[i] describes codes[i].
var codeDescriptions = [len(codes)]string{
	"malformed JSON, wrong types or missing fields",                                       // CodeBadRequest
	"the payload exceeds the maximum message size",                                        // CodeTooLarge
	"the message's version is not spoken by the hub",                                      // CodeUnsupportedVersion
	"the CSR does not parse or its signature does not verify",                             // CodeBadCSR
	"the CSR, the topic and the session name different devices",                           // CodeIdentityMismatch
	"the key algorithm or size is not allowed",                                            // CodeWeakKey
	"policy refused the request; the message names the rule",                              // CodePolicyDenied
	"the enrollment token is unknown, used or expired",                                    // CodeUnauthorized
	"the device or certificate is revoked",                                                // CodeRevoked
	"another request of this device is in flight",                                         // CodeBusy
	"the hub's issuance rate is exhausted",                                                // CodeRateLimited
	"the hub failed; nothing was issued",                                                  // CodeInternal
	"the commit names a request the hub does not know",                                    // CodeUnknownRequest
	"the committed serial is not the one presented on the TLS session",                    // CodeNotPresented
	"the certificate expired beyond the recovery grace; enroll again",                     // CodeExpired
	"the device, token or campaign the request names is not known to the hub",             // CodeNotFound
	"the enrollment token is not one the hub issued for this device id",                   // CodeTokenUnknown
	"the enrollment token was already used to enroll the device",                          // CodeTokenUsed
	"the enrollment token expired before it was used",                                     // CodeTokenExpired
	"too many failed logins came from this source or for this name; wait retry_after",     // CodeLockedOut
	"a per-device quota (certificates per hour, renew requests per cool-down) is used up", // CodeQuotaExceeded
	"the requester's role may not run the operation, or no one is logged in",              // CodeForbidden
	"the operation needs a second admin's approval: propose it instead",                   // CodeNeedsApproval
}

// Codes returns every code in the order it was added.
func Codes() []CodeInfo {
	all := make([]CodeInfo, len(codes))
	for i, k := range codes {
		all[i] = CodeInfo{k.code, k.retry, k.retryAfter, codeDescriptions[i]}
	}
	return all
}

// Info returns the description of c, and false for a code this version does not know (a newer
// hub's code): treat such a code as not retryable.
func (c Code) Info() (CodeInfo, bool) {
	for i, k := range codes {
		if k.code == c {
			return CodeInfo{c, k.retry, k.retryAfter, codeDescriptions[i]}, true
		}
	}
	return CodeInfo{Code: c}, false
}

// Retry reports whether a client should retry a request refused with c, and after how many
// seconds by default (a reply's own retry_after overrides it). A code this version does not
// know is not retried.
func (c Code) Retry() (after int, ok bool) {
	for _, k := range codes {
		if k.code == c {
			return k.retryAfter, k.retry
		}
	}
	return 0, false
}
