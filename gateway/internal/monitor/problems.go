// Package monitor judges the fleet's certificate health: which devices have a problem and
// why. Judge is the one function that decides; the bridge topics, device/list, the
// dashboard, the CLI, the metrics and Home Assistant all show its verdict, so they agree for
// the same inventory. Its functions are pure: the policy and the time are passed in.
package monitor

import (
	"fmt"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

// Problem codes: the one list, shown in bridge/device/<id>, device/list, the dashboard, the
// metrics and the "reasons" of Home Assistant's problem entity. The list is append-only
// (codes are on the wire); protocol/README.md "Problems" and addon/DOCS.md document each.
const (
	ProblemExpired          = "expired"
	ProblemExpiring         = "expiring"
	ProblemRenewalFailing   = "renewal_failing"
	ProblemRevoked          = "revoked"
	ProblemClockSkew        = "clock_skew"
	ProblemUnexpectedSerial = "unexpected_serial"
	ProblemNoCertificate    = "no_certificate"
)

// Codes returns every problem code, in the order of the list.
func Codes() []string {
	return []string{ProblemExpired, ProblemExpiring, ProblemRenewalFailing, ProblemRevoked, ProblemClockSkew,
		ProblemUnexpectedSerial, ProblemNoCertificate}
}

// MaxClockSkew is the largest difference between a device's clock and the hub's that is not
// a problem: TLS and certificate validity tolerate a few minutes.
const MaxClockSkew = 5 * time.Minute

// Verdict is what Judge decided about one device at one moment.
type Verdict struct {
	// Problems lists what is wrong, the certificate's problem (revoked, no certificate,
	// expired or expiring) first, then renewal_failing, clock_skew and unexpected_serial;
	// nil when nothing is.
	Problems []protocol.Problem
	// Until is the next moment at which the verdict changes by itself, without any change
	// to the device, its certificate or the policy: the end of the renewal window, the
	// emergency floor or the expiry, whichever comes next. Zero when only a change can
	// change it.
	Until time.Time
}

// Codes returns the codes of v's problems.
func (v Verdict) Codes() []string {
	if len(v.Problems) == 0 {
		return nil
	}
	out := make([]string, len(v.Problems))
	for i, p := range v.Problems {
		out[i] = p.Code
	}
	return out
}

// Has reports whether v lists the problem code.
func (v Verdict) Has(code string) bool {
	for _, p := range v.Problems {
		if p.Code == code {
			return true
		}
	}
	return false
}

// Judge decides what is wrong with device d at now. active is its active certificate (nil
// when it has none) and pol the policy in force (nil: policy.Default), whose class for the
// device gives the renewal window and emergency floor.
//
// "expiring" is relative to that window, not a fixed number of days (issue 10): a
// certificate is expiring once it is past its renewal window's end (the hub then pushes a
// renew command, and a manual device needs a person) or inside the emergency floor. So a
// 7-day certificate just issued is fine, and a year-long one past its window is not.
func Judge(d inventory.Device, active *inventory.Certificate, pol *policy.Policy, now time.Time) Verdict {
	var v Verdict
	add := func(code, format string, args ...any) {
		v.Problems = append(v.Problems, protocol.Problem{Code: code, Text: fmt.Sprintf(format, args...)})
	}
	switch {
	case d.State == inventory.StateQuarantined:
		add(ProblemRevoked, "the device is quarantined: its certificates are revoked until it enrolls again")
	case active == nil && d.Mechanism != inventory.MechanismManual:
		if d.State != inventory.StateEnrolling {
			add(ProblemNoCertificate, "no active certificate: the device has not proved one since it enrolled")
		}
	case active == nil:
	case active.Status == inventory.StatusRevoked:
		add(ProblemRevoked, "the active certificate %s is revoked%s", active.Serial, revokedText(active))
	default:
		v = judgeExpiry(v, d, active, pol, now)
	}
	if d.Renewal.State == inventory.RenewalFailing {
		cause := d.Renewal.LastCause
		if cause == "" {
			cause = "no cause recorded"
		}
		add(ProblemRenewalFailing, "%d renewal attempt(s) in a row failed, the last with: %s", d.Renewal.Failures, cause)
	}
	h := d.Health
	if !h.At.IsZero() {
		if h.ClockSkew > MaxClockSkew || h.ClockSkew < -MaxClockSkew {
			add(ProblemClockSkew, "the device's clock was %s off the hub's on %s (more than %s)",
				h.ClockSkew.Round(time.Second), stamp(h.At), MaxClockSkew)
		}
		if active != nil && h.ReportedSerial != "" && h.ReportedSerial != active.Serial && h.At.After(active.ActivatedAt) {
			add(ProblemUnexpectedSerial, "the device reported certificate %s on %s; the active one is %s",
				h.ReportedSerial, stamp(h.At), active.Serial)
		}
	}
	return v
}

// judgeExpiry adds the expiry problems of a usable active certificate, and sets Until.
func judgeExpiry(v Verdict, d inventory.Device, c *inventory.Certificate, pol *policy.Policy, now time.Time) Verdict {
	if pol == nil {
		pol = policy.Default()
	}
	w := pol.Window(policy.Subject{DeviceID: d.ID, Family: d.Family, Tags: d.Tags},
		policy.CertInfo{Serial: c.Serial, NotBefore: c.NotBefore, NotAfter: c.NotAfter}, now)
	switch w.Phase(now) {
	case policy.PhaseExpired:
		v.Problems = append(v.Problems, protocol.Problem{Code: ProblemExpired,
			Text: fmt.Sprintf("the certificate %s expired at %s", c.Serial, stamp(c.NotAfter))})
	case policy.PhaseEmergency:
		v.Problems = append(v.Problems, protocol.Problem{Code: ProblemExpiring,
			Text: fmt.Sprintf("inside the emergency floor since %s (class %s: renew at once); the certificate expires %s",
				stamp(w.EmergencyAt), w.Class, stamp(c.NotAfter))})
	case policy.PhaseOverdue:
		v.Problems = append(v.Problems, protocol.Problem{Code: ProblemExpiring,
			Text: fmt.Sprintf("past the end of its renewal window at %s (class %s); the certificate expires %s",
				stamp(w.End), w.Class, stamp(c.NotAfter))})
	}
	// The verdict changes at the next boundary: window end (→ expiring), emergency floor
	// (expiring, with another text), expiry (→ expired). NotAfter is used rather than
	// w.Expiry, which is truncated to the second.
	for _, t := range []time.Time{w.End, w.EmergencyAt, c.NotAfter} {
		if t.After(now) {
			v.Until = t
			break
		}
	}
	return v
}

// revokedText says when and why a certificate was revoked, when known.
func revokedText(c *inventory.Certificate) string {
	s := ""
	if !c.RevokedAt.IsZero() {
		s = " since " + stamp(c.RevokedAt)
	}
	if c.RevokeReason != "" {
		s += ": " + c.RevokeReason
	}
	return s
}

// stamp formats a time for problem texts: RFC 3339 in UTC, so a text does not change as time
// passes and a republished state stays byte for byte the same.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// Summary is a device as bridge/device/<id>, device/list and the CLI show it, judged by
// Judge.
func Summary(d inventory.Device, active *inventory.Certificate, pol *policy.Policy, now time.Time) protocol.DeviceSummary {
	return SummaryOf(d, active, Judge(d, active, pol, now))
}

// SummaryOf is Summary for a verdict already made.
func SummaryOf(d inventory.Device, active *inventory.Certificate, v Verdict) protocol.DeviceSummary {
	s := protocol.DeviceSummary{ID: d.ID, Name: d.Name, Family: d.Family, Class: d.Class, State: d.State, Online: d.Online,
		RenewalState: d.Renewal.State, LastSeen: d.LastSeen, Problems: v.Codes(), ProblemDetails: v.Problems}
	if active != nil {
		s.Serial, s.NotAfter = active.Serial, active.NotAfter
	}
	return s
}
