package policy

import (
	"cmp"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Limits a valid policy stays within, with the reason for each.
const (
	// maxBackdate: a clock more than an hour behind needs fixing, not a
	// certificate valid in the past.
	maxBackdate = time.Hour
	// minLifetime: below an hour, renewal traffic and clock skew dominate.
	minLifetime = time.Hour
	// maxLifetime: 825 days, the longest leaf lifetime Apple platforms accept
	// (the limit mkcert documents), so that a device that also serves TLS keeps
	// working in browsers.
	maxLifetime = 825 * 24 * time.Hour
	// maxJitter: beyond ±50 % the window no longer means "around renew_at".
	maxJitter = 0.5
	// maxEmergencyFloor: an emergency at more than half the lifetime left would
	// leave no room for an ordinary window.
	maxEmergencyFloor = 0.5
	// maxRSABits: larger keys take minutes to generate on a small device.
	maxRSABits = 16384
)

// Validate checks every setting of p and returns all problems found (each a
// *FieldError wrapping ErrInvalid), or nil. Parse calls it; call it after
// building or changing a Policy in code.
func (p *Policy) Validate() error {
	return join(validate(p, nil, 0))
}

// validator collects errors, locating each class setting with origins (nil for
// a Policy built in code: paths then use the index into Policy.Classes).
type validator struct {
	origins []origin
	errs    []*FieldError
}

// fail records a problem with setting key of class i; sub is the path below the
// class ("lifetime", "match.tags[2]").
func (v *validator) fail(i int, key, sub, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if v.origins == nil {
		v.errs = append(v.errs, &FieldError{Path: fmt.Sprintf("classes[%d].%s", i, sub), Msg: msg})
		return
	}
	o := v.origins[i]
	line := o.line
	if l, ok := o.lines[key]; ok {
		line = l
	}
	if !o.own(key) {
		msg += fmt.Sprintf(" (value inherited from class %q)", DefaultClass)
	}
	v.errs = append(v.errs, &FieldError{Path: o.path + "." + sub, Line: line, Msg: msg})
}

// own reports whether class i sets key itself. Checks of a single inherited value
// are skipped: the class it comes from is checked already.
func (v *validator) own(i int, key string) bool {
	return v.origins == nil || v.origins[i].own(key)
}

// validate checks p; origins and backdateLine locate settings in the text
// (nil and 0 for a Policy built in code). Errors come in text order, those of
// built-in classes the text does not mention last.
func validate(p *Policy, origins []origin, backdateLine int) []*FieldError {
	v := &validator{origins: origins}
	if p.Backdate < 0 || p.Backdate > maxBackdate {
		v.errs = append(v.errs, &FieldError{Path: "backdate", Line: backdateLine, Msg: fmt.Sprintf("%s must be between 0s and %s", formatDuration(p.Backdate), formatDuration(maxBackdate))})
	}
	if p.CRLURL != "" {
		if err := checkCRLURL(p.CRLURL); err != nil {
			v.errs = append(v.errs, &FieldError{Path: "crl_url", Msg: err.Error()})
		}
	}
	names := map[string]int{}
	for _, want := range []string{DefaultClass, HighRiskClass} {
		if p.class(want) == nil {
			v.errs = append(v.errs, &FieldError{Path: "classes", Msg: fmt.Sprintf("the built-in class %q is missing", want)})
		}
	}
	// Each device id, tag and family selects at most one class, so that the
	// class of a device hardly depends on the order classes are written in
	// (only for a device with tags of two classes of equal priority).
	claims := map[string]int{}
	for i := range p.Classes {
		c := &p.Classes[i]
		if !validName(c.Name) {
			v.fail(i, "name", "name", "%q is not a class name (lowercase letters, digits and '-', at most 63, not starting or ending with '-')", c.Name)
		} else if prev, dup := names[c.Name]; dup {
			v.fail(i, "name", "name", "%q is already the name of classes[%d]", c.Name, prev)
		}
		names[c.Name] = i
		v.match(p, i, c, claims)
		v.class(i, c)
	}
	if origins != nil {
		slices.SortStableFunc(v.errs, func(a, b *FieldError) int {
			return cmp.Compare(lineKey(a.Line), lineKey(b.Line))
		})
	}
	return v.errs
}

// lineKey sorts errors without a line after the others.
func lineKey(line int) int {
	if line == 0 {
		return math.MaxInt
	}
	return line
}

// anyOwn reports whether class i sets any of keys itself. A check across
// settings that are all inherited would repeat the error of the class they come
// from, so it is skipped.
func (v *validator) anyOwn(i int, keys ...string) bool {
	for _, k := range keys {
		if v.own(i, k) {
			return true
		}
	}
	return false
}

// match checks class i's match lists; claims maps "devices\x00id" to the class
// that claimed it first.
func (v *validator) match(p *Policy, i int, c *Class, claims map[string]int) {
	if c.Name == DefaultClass {
		if len(c.Match.Devices)+len(c.Match.Tags)+len(c.Match.Families) > 0 {
			v.fail(i, "match", "match", "the default class takes every device no other class matches: remove its match")
		}
		return
	}
	for _, l := range []struct {
		key, what string
		list      []string
	}{{"devices", "device", c.Match.Devices}, {"tags", "tag", c.Match.Tags}, {"families", "family", c.Match.Families}} {
		for j, s := range l.list {
			sub := fmt.Sprintf("match.%s[%d]", l.key, j)
			if s == "" || strings.TrimSpace(s) != s {
				v.fail(i, "match", sub, "%q: entries must be non-empty, without leading or trailing spaces", s)
				continue
			}
			k := l.key + "\x00" + s
			if prev, dup := claims[k]; dup {
				what := l.what
				if prev == i {
					v.fail(i, "match", sub, "%s %q is listed twice", what, s)
				} else {
					v.fail(i, "match", sub, "%s %q is already matched by class %q: a %s selects one class", what, s, p.Classes[prev].Name, what)
				}
				continue
			}
			claims[k] = i
		}
	}
}

// class checks the settings of class i.
func (v *validator) class(i int, c *Class) {
	if v.own(i, "keys") {
		if len(c.Keys) == 0 {
			v.fail(i, "keys", "keys", "empty: allow at least one key algorithm (p256, p384, ed25519, rsa)")
		}
		seen := map[string]bool{}
		for j, k := range c.Keys {
			sub := fmt.Sprintf("keys[%d]", j)
			switch k.Algorithm {
			case KeyP256, KeyP384, KeyEd25519:
				if k.MinBits != 0 {
					v.fail(i, "keys", sub, "%s takes no minimum size", k.Algorithm)
				}
			case KeyRSA:
				if k.MinBits < MinRSABits || k.MinBits > maxRSABits {
					v.fail(i, "keys", sub, "RSA minimum of %d bits is not allowed (use %d to %d)", k.MinBits, MinRSABits, maxRSABits)
				}
			default:
				v.fail(i, "keys", sub, "%q is not a key algorithm (use p256, p384, ed25519 or rsa)", k.Algorithm)
				continue
			}
			if seen[k.Algorithm] {
				v.fail(i, "keys", sub, "%s is listed twice", k.Algorithm)
			}
			seen[k.Algorithm] = true
		}
	}
	if v.own(i, "lifetime") && (c.Lifetime < minLifetime || c.Lifetime > maxLifetime) {
		v.fail(i, "lifetime", "lifetime", "%s must be between %s and %s", formatDuration(c.Lifetime), formatDuration(minLifetime), formatDuration(maxLifetime))
	}
	v.window(i, c)
	if v.anyOwn(i, "grace", "lifetime") && (c.Grace < 0 || c.Grace > c.Lifetime) {
		v.fail(i, "grace", "grace", "%s must be between 0s (no renewal after expiry) and the lifetime, %s", formatDuration(c.Grace), formatDuration(c.Lifetime))
	}
	switch {
	case !v.own(i, "verify") || c.Verify == VerifyReconnect:
	case c.Verify == "local":
		v.fail(i, "verify", "verify", "local is not supported: a renewed certificate becomes active only when the device "+
			"reconnects presenting it (commit by reconnect); remove the setting or write reconnect")
	default:
		v.fail(i, "verify", "verify", "%q is not a verify mode (the only mode is reconnect)", string(c.Verify))
	}
	if v.own(i, "priority") && (c.Priority < 0 || c.Priority > PriorityCritical) {
		v.fail(i, "priority", "priority", "%d is out of range (use low, normal, high, critical or a number from 0 to 100)", c.Priority)
	}
	if v.own(i, "dns_names") {
		seen := map[string]bool{}
		for j, pat := range c.DNSNames {
			sub := fmt.Sprintf("dns_names[%d]", j)
			if err := checkPattern(pat); err != nil {
				v.fail(i, "dns_names", sub, "%v", err)
			} else if seen[strings.ToLower(pat)] {
				v.fail(i, "dns_names", sub, "%q is listed twice", pat)
			}
			seen[strings.ToLower(pat)] = true
		}
	}
}

// window checks the renewal window settings, alone and against each other.
func (v *validator) window(i int, c *Class) {
	windowKey := "renew_at"
	if c.RenewBefore != 0 {
		windowKey = "renew_before"
	}
	own := v.own(i, windowKey)
	switch {
	case c.RenewAt != 0 && c.RenewBefore != 0:
		v.fail(i, windowKey, "renew_at", "set renew_at or renew_before, not both")
		return
	case c.RenewAt == 0 && c.RenewBefore == 0:
		v.fail(i, windowKey, "renew_at", "missing: set renew_at (a fraction of the lifetime) or renew_before (a duration)")
		return
	case c.RenewBefore == 0 && (c.RenewAt <= 0 || c.RenewAt >= 1):
		if own {
			v.fail(i, windowKey, "renew_at", "%s must be more than 0 and less than 1 (a fraction of the lifetime)", formatFraction(c.RenewAt))
		}
		return
	case c.RenewBefore != 0 && (c.RenewBefore < 0 || c.RenewBefore >= c.Lifetime):
		if own || v.own(i, "lifetime") {
			v.fail(i, windowKey, "renew_before", "%s must be more than 0s and less than the lifetime, %s", formatDuration(c.RenewBefore), formatDuration(c.Lifetime))
		}
		return
	}
	jitterOK := c.Jitter >= 0 && c.Jitter <= maxJitter
	if v.own(i, "jitter") && !jitterOK {
		v.fail(i, "jitter", "jitter", "%s must be between 0 and %s", formatFraction(c.Jitter), formatFraction(maxJitter))
	}
	floorOK := c.EmergencyFloor > 0 && c.EmergencyFloor <= maxEmergencyFloor
	if v.own(i, "emergency_floor") && !floorOK {
		v.fail(i, "emergency_floor", "emergency_floor", "%s must be more than 0 and at most %s (a fraction of the lifetime left)", formatFraction(c.EmergencyFloor), formatFraction(maxEmergencyFloor))
	}
	if !jitterOK || !floorOK {
		return
	}
	// The latest start the jitter can give must come before the emergency
	// floor, or the window would open already in an emergency.
	if c.RenewBefore == 0 {
		if !v.anyOwn(i, windowKey, "jitter", "emergency_floor") {
			return
		}
		if latest := c.RenewAt * (1 + c.Jitter); latest >= 1-c.EmergencyFloor {
			v.fail(i, windowKey, "renew_at", "%s with jitter %s can open the window at %.3g of the lifetime, past the emergency floor at %.3g: lower renew_at, jitter or emergency_floor",
				formatFraction(c.RenewAt), formatFraction(c.Jitter), latest, 1-c.EmergencyFloor)
		}
		return
	}
	if !v.anyOwn(i, windowKey, "jitter", "emergency_floor", "lifetime") {
		return
	}
	floor := time.Duration(float64(c.Lifetime) * c.EmergencyFloor)
	if latest := time.Duration(float64(c.RenewBefore) * (1 - c.Jitter)); latest <= floor {
		v.fail(i, windowKey, "renew_before", "%s with jitter %s can open the window %s before expiry, after the emergency floor (%s before expiry for a %s lifetime): raise renew_before or lower emergency_floor",
			formatDuration(c.RenewBefore), formatFraction(c.Jitter), formatDuration(latest), formatDuration(floor), formatDuration(c.Lifetime))
	}
}

// validName reports whether s can name a class: it appears in rule paths
// ("classes.camera.keys") and on the dashboard.
func validName(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
			return false
		}
	}
	return true
}

// checkCRLURL accepts an absolute http:// URL with a host: RFC 5280 section 4.2.1.13 has
// CRLs fetched over plain HTTP (a CRL is signed; TLS would need revocation checking itself).
func checkCRLURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "http" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%q is not an http:// URL with a host (for example http://hub.local:8099/crl)", s)
	}
	return nil
}
