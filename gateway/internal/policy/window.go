package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"
)

// CertInfo is what Window needs to know of a certificate.
type CertInfo struct {
	Serial    string
	NotBefore time.Time
	NotAfter  time.Time
}

// Window is when a certificate should be renewed, in the spirit of ACME ARI
// (RFC 9773): the hub publishes Start and End to the agent, which renews at a
// random instant between them. All times are UTC, truncated to the second, and
// Start <= End <= EmergencyAt <= Expiry.
type Window struct {
	// Serial is the certificate's serial; Class and Priority its device's class.
	Serial   string
	Class    string
	Priority int
	// Start is when renewal may begin: not-before + renew_at × lifetime (or
	// not-after − renew_before), moved by the certificate's jitter.
	Start time.Time
	// End is the middle of Start..EmergencyAt: the agent should have renewed by
	// then; the hub pushes a renew command to devices still on the certificate,
	// keeping the second half for retries before the emergency floor.
	End time.Time
	// EmergencyAt is when emergency_floor × lifetime is left: renew at once,
	// whatever the window and backoff say.
	EmergencyAt time.Time
	// Expiry is the certificate's not-after.
	Expiry time.Time
	// Reason explains how the window was computed and where now falls in it.
	Reason string
}

// Window computes the renewal window of a device's certificate under its class.
func (p *Policy) Window(s Subject, cert CertInfo, now time.Time) Window {
	c, _ := p.ClassFor(s)
	return c.Window(cert, now)
}

// Window computes the renewal window of cert under class c (see the Window
// type). The jitter is a pure function of the serial, so a certificate keeps the
// same window across restarts and on every hub that computes it, while the
// certificates issued in one burst spread over ±Jitter. Like cert-manager, a
// renew_before longer than the certificate's lifetime falls back to 2/3 of it.
func (c *Class) Window(cert CertInfo, now time.Time) Window {
	nb, na := cert.NotBefore.UTC(), cert.NotAfter.UTC()
	w := Window{Serial: cert.Serial, Class: c.Name, Priority: c.Priority, Expiry: na.Truncate(time.Second)}
	life := na.Sub(nb)
	if life <= 0 {
		w.Start, w.End, w.EmergencyAt = w.Expiry, w.Expiry, w.Expiry
		w.Reason = fmt.Sprintf("certificate %s has no validity period (not-after %s is not after not-before %s)",
			cert.Serial, stamp(na), stamp(nb))
		_, why := Due(w, now)
		w.Reason += "; " + why
		return w
	}
	jitter, floor := c.Jitter, c.EmergencyFloor
	if jitter < 0 || jitter > maxJitter {
		jitter = 0
	}
	if floor <= 0 || floor > maxEmergencyFloor {
		floor = 1.0 / 20.0
	}
	u := jitterUnit(cert.Serial)
	emergency := na.Add(-time.Duration(float64(life) * floor))

	var start time.Time
	var how string
	if c.RenewBefore > 0 && c.RenewBefore < life {
		start = na.Add(-time.Duration(float64(c.RenewBefore) * (1 - jitter*u)))
		how = fmt.Sprintf("%s before expiry", formatDuration(c.RenewBefore))
	} else {
		f := c.RenewAt
		how = fmt.Sprintf("%s of the %s lifetime", formatFraction(f), formatDuration(life))
		if c.RenewBefore > 0 || f <= 0 || f >= 1 {
			f = 2.0 / 3.0
			how = fmt.Sprintf("2/3 of the %s lifetime, as renew_before %s does not fit in it", formatDuration(life), formatDuration(c.RenewBefore))
		}
		start = nb.Add(time.Duration(float64(life) * f * (1 + jitter*u)))
	}
	how += fmt.Sprintf(", jitter %+.1f%%", jitter*u*100)
	if start.After(emergency) {
		start = emergency
		how += ", held at the emergency floor"
	}
	if start.Before(nb) {
		start = nb
	}
	w.Start = start.Truncate(time.Second)
	w.EmergencyAt = emergency.Truncate(time.Second)
	w.End = w.Start.Add(w.EmergencyAt.Sub(w.Start) / 2).Truncate(time.Second)
	_, why := Due(w, now)
	w.Reason = fmt.Sprintf("renew from %s (%s) to %s; at once from %s (%s of the lifetime left); expires %s; %s",
		stamp(w.Start), how, stamp(w.End), stamp(w.EmergencyAt), formatFraction(floor), stamp(w.Expiry), why)
	return w
}

// jitterUnit maps a serial to a number in [-1, 1), uniformly and always the
// same for the same serial.
func jitterUnit(serial string) float64 {
	h := sha256.Sum256([]byte("hearth/policy/window-jitter\x00" + serial))
	x := binary.BigEndian.Uint64(h[:8]) >> 11 // 53 bits: exact in a float64
	return float64(x)/(1<<53)*2 - 1
}

// Phase is where a moment falls in a certificate's renewal window.
type Phase int

// Phases, in the order time goes through them.
const (
	// PhaseWaiting: before Start; nothing to do.
	PhaseWaiting Phase = iota
	// PhaseOpen: between Start and End; the agent renews on its own.
	PhaseOpen
	// PhaseOverdue: between End and EmergencyAt; the hub pushes a renew command.
	PhaseOverdue
	// PhaseEmergency: between EmergencyAt and expiry; renew at once, no backoff.
	PhaseEmergency
	// PhaseExpired: at or after expiry; only recovery or a new enrollment helps.
	PhaseExpired
)

// String returns the phase's name.
func (p Phase) String() string {
	switch p {
	case PhaseWaiting:
		return "waiting"
	case PhaseOpen:
		return "open"
	case PhaseOverdue:
		return "overdue"
	case PhaseEmergency:
		return "emergency"
	case PhaseExpired:
		return "expired"
	}
	return fmt.Sprintf("Phase(%d)", int(p))
}

// Phase returns where now falls in w.
func (w Window) Phase(now time.Time) Phase {
	switch {
	case !now.Before(w.Expiry):
		return PhaseExpired
	case !now.Before(w.EmergencyAt):
		return PhaseEmergency
	case !now.Before(w.End):
		return PhaseOverdue
	case !now.Before(w.Start):
		return PhaseOpen
	}
	return PhaseWaiting
}

// Due reports whether the certificate of w should be renewed now, and why.
func Due(w Window, now time.Time) (bool, string) {
	switch w.Phase(now) {
	case PhaseExpired:
		return true, fmt.Sprintf("expired at %s, %s ago", stamp(w.Expiry), ago(now.Sub(w.Expiry)))
	case PhaseEmergency:
		return true, fmt.Sprintf("emergency: past the floor at %s, expires in %s; renew at once", stamp(w.EmergencyAt), ago(w.Expiry.Sub(now)))
	case PhaseOverdue:
		return true, fmt.Sprintf("overdue: the window closed at %s, expires in %s", stamp(w.End), ago(w.Expiry.Sub(now)))
	case PhaseOpen:
		return true, fmt.Sprintf("due: in the renewal window since %s, until %s", stamp(w.Start), stamp(w.End))
	}
	return false, fmt.Sprintf("not due: the window opens at %s, in %s", stamp(w.Start), ago(w.Start.Sub(now)))
}

// stamp formats a time for reasons.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// ago formats a span for reasons, to the minute ("19d2h13m", "0s" below one).
func ago(d time.Duration) string { return formatDuration(d.Truncate(time.Minute)) }
