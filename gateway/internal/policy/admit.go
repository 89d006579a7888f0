package policy

import (
	"fmt"
	"strings"
	"time"

	"github.com/hearth-pki/hearth/protocol"
)

// Why a CSR was sent, as CSRInfo.Reason.
const (
	CSREnroll   = "enroll"   // first certificate, with a one-time token
	CSRWindow   = "window"   // the agent's renewal window opened
	CSRCommand  = "command"  // the hub sent a renew command
	CSRRekey    = "rekey"    // the hub asked for a new key (campaign, compromise)
	CSRRecovery = "recovery" // the certificate expired while the device was offline
)

// CSRInfo is what Admit needs to know of a certificate request. The issuer fills
// it after checking the CSR's signature; the key's name and size come from
// protocol.KeyAlgorithmOf (its Family and Bits), the one naming of keys.
type CSRInfo struct {
	// KeyAlgorithm is KeyP256, KeyP384, KeyEd25519, KeyRSA or another name for
	// an algorithm no class allows ("p224", "p521", "unknown").
	KeyAlgorithm string
	// KeyBits is the RSA modulus size (ignored for other algorithms).
	KeyBits int
	// Reason is one of CSREnroll, CSRWindow, CSRCommand, CSRRekey, CSRRecovery.
	Reason string
	// ReplacesSerial is the serial of the certificate the request renews
	// (required for every reason but enroll).
	ReplacesSerial string
	// SameKeyAsCurrent is true when the CSR's public key is that of the
	// certificate it replaces (or of the device's active certificate).
	SameKeyAsCurrent bool
	// CurrentNotAfter is the not-after of the certificate being replaced; zero
	// when unknown. Required for recovery.
	CurrentNotAfter time.Time
	// DNSNames are the DNS SANs the CSR asks for.
	DNSNames []string
}

// Profile is what the CA puts in an admitted leaf certificate; ca.CA.SignLeaf signs
// exactly this. It is the one description of a leaf: Admit fills every field, and the
// zero value is no leaf at all (SignLeaf refuses it) rather than a default one.
type Profile struct {
	// Class is the name of the device's class.
	Class string
	// NotBefore is the signing instant (UTC, truncated to the second) minus the
	// policy's Backdate, exactly: a backdate of 0 gives the signing second.
	NotBefore time.Time
	// NotAfter is the signing instant plus the class's Lifetime.
	NotAfter time.Time
	// DNSNames are the requested DNS SANs the class allows (lowercased); never
	// names the CSR did not ask for.
	DNSNames []string
	// ServerAuth adds the serverAuth extended key usage (clientAuth is always set).
	ServerAuth bool
	// CRLDistributionPoints are the URLs of the leaf's CRL distribution point extension
	// (the policy's crl_url); none when empty.
	CRLDistributionPoints []string
}

// Refusal is why Admit refused a CSR: the wire code a front end answers with, the setting
// that refused and a reason a person can read. Front ends branch on Code, never on Rule or
// Reason.
type Refusal struct {
	// Code is the protocol error code of the refusal: protocol.CodeWeakKey for a key the
	// class does not allow, protocol.CodeExpired for a renewal past the class's grace,
	// protocol.CodeBadRequest for a malformed request, protocol.CodePolicyDenied otherwise.
	Code protocol.Code
	// Rule is the setting that refused ("classes.camera.keys", "request.reason").
	Rule string
	// Reason explains the refusal to a person.
	Reason string
}

// Error returns the reason and the rule: "… (rule classes.camera.keys)".
func (r *Refusal) Error() string { return r.Reason + " (rule " + r.Rule + ")" }

// Decision is Admit's answer.
type Decision struct {
	// Class is the device's class.
	Class string
	// Rule is the setting that refused ("classes.camera.keys", "request.reason"),
	// or, when allowed, the rule that chose the class.
	Rule string
	// Reason explains the decision to a person.
	Reason string
	// Refusal is set when the CSR is refused (with the same Rule and Reason); nil when
	// it is admitted.
	Refusal *Refusal
	// Profile is set when admitted.
	Profile Profile
	// Dropped lists requested DNS names left out of the certificate because the
	// class does not allow them (the request is still admitted).
	Dropped []string
}

// Allowed reports whether the CSR may be signed with d.Profile.
func (d Decision) Allowed() bool { return d.Refusal == nil }

// admission is the input of the checks.
type admission struct {
	class *Class
	csr   CSRInfo
	now   time.Time
}

// check is one small admission rule, in the style of cert-manager's
// policies.Func: it returns a refusal, or nil.
type check func(a *admission) *Refusal

// chain runs checks in order; the first refusal wins (cert-manager's
// policies.Chain).
type chain []check

func (c chain) evaluate(a *admission) *Refusal {
	for _, f := range c {
		if r := f(a); r != nil {
			return r
		}
	}
	return nil
}

// refuse builds a Refusal.
func refuse(code protocol.Code, rule, format string, args ...any) *Refusal {
	return &Refusal{Code: code, Rule: rule, Reason: fmt.Sprintf(format, args...)}
}

// Admit decides whether the CSR of subject s may be signed now, and with which
// profile. A refusal (Decision.Refusal) carries its wire code and names the rule
// that refused and says why.
func (p *Policy) Admit(s Subject, csr CSRInfo, now time.Time) Decision {
	c, why := p.ClassFor(s)
	a := &admission{class: c, csr: csr, now: now}
	// Well-formed first, then the key, then its freshness, then expiry.
	checks := chain{checkReason, checkReplaces, checkKey, checkRekey, checkExpiry}
	if r := checks.evaluate(a); r != nil {
		return Decision{Class: c.Name, Rule: r.Rule, Reason: r.Reason, Refusal: r}
	}
	names, dropped := filterNames(c.DNSNames, s.DeviceID, csr.DNSNames)
	start := now.UTC().Truncate(time.Second)
	d := Decision{
		Class: c.Name,
		Rule:  why.Rule,
		Profile: Profile{
			Class:      c.Name,
			NotBefore:  start.Add(-p.Backdate),
			NotAfter:   start.Add(c.Lifetime),
			DNSNames:   names,
			ServerAuth: c.ServerAuth,
		},
		Dropped: dropped,
	}
	if p.CRLURL != "" {
		d.Profile.CRLDistributionPoints = []string{p.CRLURL}
	}
	d.Reason = fmt.Sprintf("admitted (%s): %s key, %s certificate", why.Text, keyName(csr), formatDuration(c.Lifetime))
	if len(dropped) > 0 {
		d.Reason += fmt.Sprintf("; DNS names left out (not allowed by classes.%s.dns_names): %s", c.Name, strings.Join(dropped, ", "))
	}
	return d
}

func checkReason(a *admission) *Refusal {
	switch a.csr.Reason {
	case CSREnroll, CSRWindow, CSRCommand, CSRRekey, CSRRecovery:
		return nil
	}
	return refuse(protocol.CodeBadRequest, "request.reason", "request reason %q is not one of enroll, window, command, rekey, recovery", a.csr.Reason)
}

func checkReplaces(a *admission) *Refusal {
	if a.csr.Reason != CSREnroll && a.csr.ReplacesSerial == "" {
		return refuse(protocol.CodeBadRequest, "request.replaces", "a %s request must name the serial of the certificate it replaces", a.csr.Reason)
	}
	if a.csr.Reason == CSRRecovery && a.csr.CurrentNotAfter.IsZero() {
		return refuse(protocol.CodePolicyDenied, "request.recovery", "recovery needs the expired certificate %s, which the hub does not know", a.csr.ReplacesSerial)
	}
	return nil
}

func checkKey(a *admission) *Refusal {
	c := a.class
	rule := "classes." + c.Name + ".keys"
	allowed := make([]string, len(c.Keys))
	for i, k := range c.Keys {
		allowed[i] = k.String()
	}
	for _, k := range c.Keys {
		if k.Algorithm != a.csr.KeyAlgorithm {
			continue
		}
		if k.Algorithm == KeyRSA && a.csr.KeyBits < k.MinBits {
			return refuse(protocol.CodeWeakKey, rule, "RSA key of %d bits is too small for class %q: it needs at least %d bits", a.csr.KeyBits, c.Name, k.MinBits)
		}
		return nil
	}
	msg := fmt.Sprintf("%s key is not allowed for class %q (allowed: %s)", keyName(a.csr), c.Name, strings.Join(allowed, ", "))
	if a.csr.KeyAlgorithm == KeyRSA {
		msg += "; RSA is for legacy classes only"
	}
	return &Refusal{Code: protocol.CodeWeakKey, Rule: rule, Reason: msg}
}

func checkRekey(a *admission) *Refusal {
	if !a.csr.SameKeyAsCurrent {
		return nil
	}
	if a.csr.Reason == CSRRekey {
		return refuse(protocol.CodePolicyDenied, "request.rekey", "a rekey request must carry a new key, but the CSR has the current certificate's key")
	}
	if a.class.Rekey {
		return refuse(protocol.CodePolicyDenied, "classes."+a.class.Name+".rekey", "class %q requires a new key on every renewal, but the CSR has the current certificate's key", a.class.Name)
	}
	return nil
}

// checkExpiry refuses a renewal of a certificate expired longer than the class's grace with
// protocol.CodeExpired: the device must enroll again.
func checkExpiry(a *admission) *Refusal {
	na := a.csr.CurrentNotAfter
	if a.csr.Reason == CSREnroll || na.IsZero() || !a.now.After(na) {
		return nil
	}
	late := a.now.Sub(na)
	c := a.class
	if late <= c.Grace {
		return nil
	}
	rule := "classes." + c.Name + ".grace"
	ago := formatDuration(late.Truncate(time.Second))
	if c.Grace == 0 {
		return refuse(protocol.CodeExpired, rule, "certificate %s expired %s ago and class %q allows no renewal after expiry: enroll the device again with a new token", a.csr.ReplacesSerial, ago, c.Name)
	}
	return refuse(protocol.CodeExpired, rule, "certificate %s expired %s ago, beyond the %s class %q allows: enroll the device again with a new token", a.csr.ReplacesSerial, ago, formatDuration(c.Grace), c.Name)
}

// keyName names the CSR's key for messages: "p256", "rsa 1024-bit".
func keyName(csr CSRInfo) string {
	if csr.KeyAlgorithm == KeyRSA {
		return fmt.Sprintf("rsa %d-bit", csr.KeyBits)
	}
	if csr.KeyAlgorithm == "" {
		return "unknown"
	}
	return csr.KeyAlgorithm
}
