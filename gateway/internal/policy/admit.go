package policy

import (
	"fmt"
	"strings"
	"time"
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

// Profile is what the CA puts in an admitted leaf certificate.
type Profile struct {
	// Class is the name of the device's class.
	Class string
	// Lifetime is the validity from now; Backdate is subtracted from not-before.
	Lifetime time.Duration
	Backdate time.Duration
	// NotBefore and NotAfter are now (UTC, truncated to the second) minus
	// Backdate and plus Lifetime.
	NotBefore time.Time
	NotAfter  time.Time
	// DNSNames are the requested DNS SANs the class allows (lowercased); never
	// names the CSR did not ask for.
	DNSNames []string
	// ServerAuth adds the serverAuth extended key usage (clientAuth is always set).
	ServerAuth bool
	// Verify tells the agent how to prove the certificate before committing.
	Verify VerifyMode
}

// Decision is Admit's answer.
type Decision struct {
	// Allowed is true when the CSR may be signed with Profile.
	Allowed bool
	// Class is the device's class.
	Class string
	// Rule is the setting that refused ("classes.camera.keys", "request.reason"),
	// or, when allowed, the rule that chose the class.
	Rule string
	// Reason explains the decision to a person.
	Reason string
	// Profile is set when Allowed.
	Profile Profile
	// Dropped lists requested DNS names left out of the certificate because the
	// class does not allow them (the request is still admitted).
	Dropped []string
}

// admission is the input of the checks.
type admission struct {
	class *Class
	csr   CSRInfo
	now   time.Time
}

// check is one small admission rule, in the style of cert-manager's
// policies.Func: it returns refused=true with the rule and a readable reason.
type check func(a *admission) (rule, reason string, refused bool)

// chain runs checks in order; the first refusal wins (cert-manager's
// policies.Chain).
type chain []check

func (c chain) evaluate(a *admission) (rule, reason string, refused bool) {
	for _, f := range c {
		if rule, reason, refused := f(a); refused {
			return rule, reason, true
		}
	}
	return "", "", false
}

// Admit decides whether the CSR of subject s may be signed now, and with which
// profile. A refusal names the rule that refused (Decision.Rule) and says why.
func (p *Policy) Admit(s Subject, csr CSRInfo, now time.Time) Decision {
	c, why := p.ClassFor(s)
	a := &admission{class: c, csr: csr, now: now}
	// Well-formed first, then the key, then its freshness, then expiry.
	checks := chain{checkReason, checkReplaces, checkKey, checkRekey, checkExpiry}
	if rule, reason, refused := checks.evaluate(a); refused {
		return Decision{Class: c.Name, Rule: rule, Reason: reason}
	}
	names, dropped := filterNames(c.DNSNames, s.DeviceID, csr.DNSNames)
	start := now.UTC().Truncate(time.Second)
	d := Decision{
		Allowed: true,
		Class:   c.Name,
		Rule:    why.Rule,
		Profile: Profile{
			Class:      c.Name,
			Lifetime:   c.Lifetime,
			Backdate:   p.Backdate,
			NotBefore:  start.Add(-p.Backdate),
			NotAfter:   start.Add(c.Lifetime),
			DNSNames:   names,
			ServerAuth: c.ServerAuth,
			Verify:     c.Verify,
		},
		Dropped: dropped,
	}
	d.Reason = fmt.Sprintf("admitted (%s): %s key, %s certificate", why.Text, keyName(csr), formatDuration(c.Lifetime))
	if len(dropped) > 0 {
		d.Reason += fmt.Sprintf("; DNS names left out (not allowed by classes.%s.dns_names): %s", c.Name, strings.Join(dropped, ", "))
	}
	return d
}

func checkReason(a *admission) (string, string, bool) {
	switch a.csr.Reason {
	case CSREnroll, CSRWindow, CSRCommand, CSRRekey, CSRRecovery:
		return "", "", false
	}
	return "request.reason", fmt.Sprintf("request reason %q is not one of enroll, window, command, rekey, recovery", a.csr.Reason), true
}

func checkReplaces(a *admission) (string, string, bool) {
	if a.csr.Reason != CSREnroll && a.csr.ReplacesSerial == "" {
		return "request.replaces", fmt.Sprintf("a %s request must name the serial of the certificate it replaces", a.csr.Reason), true
	}
	if a.csr.Reason == CSRRecovery && a.csr.CurrentNotAfter.IsZero() {
		return "request.recovery", fmt.Sprintf("recovery needs the expired certificate %s, which the hub does not know", a.csr.ReplacesSerial), true
	}
	return "", "", false
}

func checkKey(a *admission) (string, string, bool) {
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
			return rule, fmt.Sprintf("RSA key of %d bits is too small for class %q: it needs at least %d bits", a.csr.KeyBits, c.Name, k.MinBits), true
		}
		return "", "", false
	}
	msg := fmt.Sprintf("%s key is not allowed for class %q (allowed: %s)", keyName(a.csr), c.Name, strings.Join(allowed, ", "))
	if a.csr.KeyAlgorithm == KeyRSA {
		msg += "; RSA is for legacy classes only"
	}
	return rule, msg, true
}

func checkRekey(a *admission) (string, string, bool) {
	if !a.csr.SameKeyAsCurrent {
		return "", "", false
	}
	if a.csr.Reason == CSRRekey {
		return "request.rekey", "a rekey request must carry a new key, but the CSR has the current certificate's key", true
	}
	if a.class.Rekey {
		return "classes." + a.class.Name + ".rekey", fmt.Sprintf("class %q requires a new key on every renewal, but the CSR has the current certificate's key", a.class.Name), true
	}
	return "", "", false
}

func checkExpiry(a *admission) (string, string, bool) {
	na := a.csr.CurrentNotAfter
	if a.csr.Reason == CSREnroll || na.IsZero() || !a.now.After(na) {
		return "", "", false
	}
	late := a.now.Sub(na)
	c := a.class
	if late <= c.Grace {
		return "", "", false
	}
	rule := "classes." + c.Name + ".grace"
	ago := formatDuration(late.Truncate(time.Second))
	if c.Grace == 0 {
		return rule, fmt.Sprintf("certificate %s expired %s ago and class %q allows no renewal after expiry: enroll the device again with a new token", a.csr.ReplacesSerial, ago, c.Name), true
	}
	return rule, fmt.Sprintf("certificate %s expired %s ago, beyond the %s class %q allows: enroll the device again with a new token", a.csr.ReplacesSerial, ago, formatDuration(c.Grace), c.Name), true
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
