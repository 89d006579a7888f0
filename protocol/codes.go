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

var codeInfos = []CodeInfo{
	{CodeBadRequest, false, 0, "malformed JSON, wrong types or missing fields"},
	{CodeTooLarge, false, 0, "the payload exceeds the maximum message size"},
	{CodeUnsupportedVersion, false, 0, "the message's version is not spoken by the hub"},
	{CodeBadCSR, false, 0, "the CSR does not parse or its signature does not verify"},
	{CodeIdentityMismatch, false, 0, "the CSR, the topic and the session name different devices"},
	{CodeWeakKey, false, 0, "the key algorithm or size is not allowed"},
	{CodePolicyDenied, false, 0, "policy refused the request; the message names the rule"},
	{CodeUnauthorized, false, 0, "the enrollment token is unknown, used or expired"},
	{CodeRevoked, false, 0, "the device or certificate is revoked"},
	{CodeBusy, true, 5, "another request of this device is in flight"},
	{CodeRateLimited, true, 30, "the hub's issuance rate is exhausted"},
	{CodeInternal, true, 60, "the hub failed; nothing was issued"},
	{CodeUnknownRequest, false, 0, "the commit names a request the hub does not know"},
	{CodeNotPresented, true, 5, "the committed serial is not the one presented on the TLS session"},
	{CodeExpired, false, 0, "the certificate expired beyond the recovery grace; enroll again"},
	{CodeNotFound, false, 0, "the device, token or campaign the request names is not known to the hub"},
	{CodeTokenUnknown, false, 0, "the enrollment token is not one the hub issued for this device id"},
	{CodeTokenUsed, false, 0, "the enrollment token was already used to enroll the device"},
	{CodeTokenExpired, false, 0, "the enrollment token expired before it was used"},
	{CodeLockedOut, true, 60, "too many failed logins came from this source or for this name; wait retry_after"},
	{CodeQuotaExceeded, true, 600, "a per-device quota (certificates per hour, renew requests per cool-down) is used up"},
	{CodeForbidden, false, 0, "the requester's role may not run the operation, or no one is logged in"},
	{CodeNeedsApproval, false, 0, "the operation needs a second admin's approval: propose it instead"},
}

// Codes returns every code in the order it was added.
func Codes() []CodeInfo { return append([]CodeInfo(nil), codeInfos...) }

// Info returns the description of c, and false for a code this version does not know (a newer
// hub's code): treat such a code as not retryable.
func (c Code) Info() (CodeInfo, bool) {
	for _, i := range codeInfos {
		if i.Code == c {
			return i, true
		}
	}
	return CodeInfo{Code: c}, false
}
