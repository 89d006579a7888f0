package protocol

// Cause names why a renewal attempt failed, as the agent and the hub report it: in a
// rolled-back Commit, in a Health report's last_cause, on the hub's attempt records and in
// the renewal.failed event. The list is append-only, like the error codes and the event
// types: a cause is never renamed, removed or given another meaning, and new causes are added
// at the end of causes (testdata/causes.txt locks the order). A receiver shows a cause it
// does not know (a newer peer's) by its name and treats it as systemic.
type Cause string

// Class says whether a cause goes away by itself.
type Class string

// The classes of a cause.
const (
	// Transient causes clear without anyone acting: the next attempt may well succeed
	// (a network hiccup, a busy hub).
	Transient Class = "transient"
	// Systemic causes repeat until a person changes something: a policy, a clock, a disk, a
	// hook, a device's trust store.
	Systemic Class = "systemic"
)

// The causes, in the order they were added.
const (
	CauseNetwork           Cause = "network"            // the hub could not be reached, or the connection broke
	CauseTimeout           Cause = "timeout"            // the hub did not answer a request in time
	CauseHubBusy           Cause = "hub_busy"           // another request of the device was in flight
	CauseRateLimited       Cause = "rate_limited"       // the hub's issuance rate was exhausted
	CauseHubInternal       Cause = "hub_internal"       // the hub failed; nothing was issued
	CausePolicyRefused     Cause = "policy_refused"     // policy refused the request; the detail names the rule
	CauseBadRequest        Cause = "bad_request"        // the hub refused the request as malformed, weak or for another identity
	CauseUnauthorized      Cause = "unauthorized"       // the enrollment token is unknown, used or expired
	CauseRevoked           Cause = "revoked"            // the device or its certificate is revoked
	CauseExpired           Cause = "expired"            // the certificate expired beyond the recovery grace
	CauseChainVerification Cause = "chain_verification" // the issued chain did not verify against the pinned CA
	CauseClockSkew         Cause = "clock_skew"         // the device's clock is too far from the hub's to trust a certificate
	CauseKeyGeneration     Cause = "key_generation"     // the agent could not generate a key or a CSR
	CauseStorage           Cause = "storage"            // installing the key and certificate (or reading them back) failed
	CauseReconnectRefused  Cause = "reconnect_refused"  // the hub turned down the session with the new certificate
	CauseCommitTimeout     Cause = "commit_timeout"     // no acknowledged commit before the deadline (agent or hub side)
	CauseHookFailed        Cause = "hook_failed"        // the --on-renew command exited with an error
	CauseCommitRefused     Cause = "commit_refused"     // the hub refused the commit (unknown request, serial not presented)
	CauseInterrupted       Cause = "interrupted"        // the agent restarted in the middle of the request
	CauseUnknown           Cause = "unknown"            // none of the above, or a peer too old to say
)

// CauseInfo describes a cause: its class and what it means, for people.
type CauseInfo struct {
	Cause       Cause
	Class       Class
	Description string
}

// causes lists every cause with its class, in the order it was added. The descriptions
// are kept apart, in descriptions, so that a binary that only classes causes (the agent)
// does not carry them.
var causes = [...]struct {
	cause Cause
	class Class
}{
	{CauseNetwork, Transient},
	{CauseTimeout, Transient},
	{CauseHubBusy, Transient},
	{CauseRateLimited, Transient},
	{CauseHubInternal, Transient},
	{CausePolicyRefused, Systemic},
	{CauseBadRequest, Systemic},
	{CauseUnauthorized, Systemic},
	{CauseRevoked, Systemic},
	{CauseExpired, Systemic},
	{CauseChainVerification, Systemic},
	{CauseClockSkew, Systemic},
	{CauseKeyGeneration, Systemic},
	{CauseStorage, Systemic},
	{CauseReconnectRefused, Systemic},
	{CauseCommitTimeout, Transient},
	{CauseHookFailed, Systemic},
	{CauseCommitRefused, Systemic},
	{CauseInterrupted, Transient},
	{CauseUnknown, Systemic},
}

// descriptions[i] describes causes[i].
var descriptions = [len(causes)]string{
	"the hub could not be reached, or the connection broke",                             // CauseNetwork
	"the hub did not answer a request in time",                                          // CauseTimeout
	"another request of the device was in flight",                                       // CauseHubBusy
	"the hub's issuance rate was exhausted",                                             // CauseRateLimited
	"the hub failed; nothing was issued",                                                // CauseHubInternal
	"policy refused the request; the detail names the rule",                             // CausePolicyRefused
	"the hub refused the request as malformed, with a weak key or for another identity", // CauseBadRequest
	"the enrollment token is unknown, used or expired",                                  // CauseUnauthorized
	"the device or its certificate is revoked",                                          // CauseRevoked
	"the certificate expired beyond the recovery grace; enroll again",                   // CauseExpired
	"the issued chain did not verify against the CA the device pins",                    // CauseChainVerification
	"the device's clock is too far from the hub's to trust a certificate",               // CauseClockSkew
	"the agent could not generate a key or a CSR",                                       // CauseKeyGeneration
	"installing the key and certificate, or reading them back, failed",                  // CauseStorage
	"the hub turned down the session presenting the new certificate",                    // CauseReconnectRefused
	"no acknowledged commit before the deadline",                                        // CauseCommitTimeout
	"the --on-renew command exited with an error",                                       // CauseHookFailed
	"the hub refused the commit: unknown request, or a serial not presented",            // CauseCommitRefused
	"the agent restarted in the middle of the request",                                  // CauseInterrupted
	"the failure has no recorded cause",                                                 // CauseUnknown
}

// Causes returns every cause in the order it was added.
func Causes() []CauseInfo {
	all := make([]CauseInfo, len(causes))
	for i, c := range causes {
		all[i] = CauseInfo{c.cause, c.class, descriptions[i]}
	}
	return all
}

// Info returns the description of c, and false for a cause this version does not know (a
// newer peer's): such a cause is classed Systemic, so that it is looked at.
func (c Cause) Info() (CauseInfo, bool) {
	for i, k := range causes {
		if k.cause == c {
			return CauseInfo{c, k.class, descriptions[i]}, true
		}
	}
	return CauseInfo{Cause: c, Class: Systemic}, false
}

// Class returns c's class; an unknown cause is Systemic.
func (c Cause) Class() Class {
	for _, k := range causes {
		if k.cause == c {
			return k.class
		}
	}
	return Systemic
}

// CauseOf returns the cause of a refusal with code: the cause an agent reports, and the hub
// records, for a reply carrying that error code. An unknown code is CauseUnknown.
func CauseOf(code Code) Cause {
	switch code {
	case CodeBusy:
		return CauseHubBusy
	case CodeRateLimited, CodeQuotaExceeded:
		return CauseRateLimited
	case CodeInternal:
		return CauseHubInternal
	case CodePolicyDenied:
		return CausePolicyRefused
	case CodeBadRequest, CodeTooLarge, CodeUnsupportedVersion, CodeBadCSR, CodeIdentityMismatch, CodeWeakKey:
		return CauseBadRequest
	case CodeUnauthorized:
		return CauseUnauthorized
	case CodeRevoked:
		return CauseRevoked
	case CodeExpired:
		return CauseExpired
	case CodeUnknownRequest, CodeNotPresented:
		return CauseCommitRefused
	}
	return CauseUnknown
}
