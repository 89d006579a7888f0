package protocol

import (
	"strings"
)

// RevocationReason is why a certificate was revoked: the RFC 5280 section 5.3.1 CRLReason,
// spelled as the RFC's ASN.1 names it ("keyCompromise"). The hub writes its number into
// the CRL entry's reasonCode extension. The list is the RFC's and does not grow.
type RevocationReason string

// The reasons a hub may give. cACompromise, certificateHold, removeFromCRL and
// aACompromise are not among them: the hub revokes end-entity certificates for good.
const (
	RevokeUnspecified          RevocationReason = "unspecified"          // 0
	RevokeKeyCompromise        RevocationReason = "keyCompromise"        // 1: the device's key is (or may be) known to someone else
	RevokeAffiliationChanged   RevocationReason = "affiliationChanged"   // 3: the device changed hands or household
	RevokeSuperseded           RevocationReason = "superseded"           // 4: replaced by a newer certificate
	RevokeCessationOfOperation RevocationReason = "cessationOfOperation" // 5: the device is retired
	RevokePrivilegeWithdrawn   RevocationReason = "privilegeWithdrawn"   // 9: the device may no longer connect
)

var revocationCodes = []struct {
	reason RevocationReason
	code   int
}{
	{RevokeUnspecified, 0},
	{RevokeKeyCompromise, 1},
	{RevokeAffiliationChanged, 3},
	{RevokeSuperseded, 4},
	{RevokeCessationOfOperation, 5},
	{RevokePrivilegeWithdrawn, 9},
}

// RevocationReasons returns every reason a hub may give, in code order.
func RevocationReasons() []RevocationReason {
	out := make([]RevocationReason, len(revocationCodes))
	for i, r := range revocationCodes {
		out[i] = r.reason
	}
	return out
}

// ParseRevocationReason returns the reason named s; "" is RevokeUnspecified. Any other word
// is an error that lists the reasons.
func ParseRevocationReason(s string) (RevocationReason, error) {
	if s == "" {
		return RevokeUnspecified, nil
	}
	for _, r := range revocationCodes {
		if string(r.reason) == s {
			return r.reason, nil
		}
	}
	words := make([]string, len(revocationCodes))
	for i, r := range revocationCodes {
		words[i] = string(r.reason)
	}
	return "", invalid("revocation reason %q is not one of %s", s, strings.Join(words, ", "))
}

// Code returns the reason's RFC 5280 CRLReason number, or -1 for a word that is not a reason.
func (r RevocationReason) Code() int {
	for _, c := range revocationCodes {
		if c.reason == r {
			return c.code
		}
	}
	return -1
}

// RevocationReasonOf returns the reason with the RFC 5280 CRLReason number code, and false
// for a number the hub never gives.
func RevocationReasonOf(code int) (RevocationReason, bool) {
	for _, c := range revocationCodes {
		if c.code == code {
			return c.reason, true
		}
	}
	return "", false
}
