// Package monitor judges the fleet's certificate health: which devices have a problem and
// why. Its functions are pure (the time is passed in), so the dashboard, the CLI, the bridge
// topics and Home Assistant all show the same verdict for the same inventory.
package monitor

import (
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/protocol"
)

// Problem names, as shown in bridge/devices, the dashboard and Home Assistant attributes.
const (
	ProblemExpired          = "expired"
	ProblemExpiring         = "expiring"
	ProblemRenewalFailing   = "renewal_failing"
	ProblemRevoked          = "revoked"
	ProblemClockSkew        = "clock_skew"
	ProblemUnexpectedSerial = "unexpected_serial"
	ProblemNoCertificate    = "no_certificate"
)

// Thresholds of the problems.
const (
	ExpiringWithin = 7 * 24 * time.Hour
	MaxClockSkew   = 5 * time.Minute
)

// Problems lists what is wrong with a device whose active certificate is active (nil when it
// has none), at now.
func Problems(d inventory.Device, active *inventory.Certificate, now time.Time) []string {
	var p []string
	switch {
	case d.State == inventory.StateQuarantined:
		p = append(p, ProblemRevoked)
	case active == nil && d.Mechanism != inventory.MechanismManual:
		if d.State != inventory.StateEnrolling {
			p = append(p, ProblemNoCertificate)
		}
	case active != nil && active.Status == inventory.StatusRevoked:
		p = append(p, ProblemRevoked)
	case active != nil && !now.Before(active.NotAfter):
		p = append(p, ProblemExpired)
	case active != nil && active.NotAfter.Sub(now) < ExpiringWithin:
		p = append(p, ProblemExpiring)
	}
	if d.Renewal.State == inventory.RenewalFailing {
		p = append(p, ProblemRenewalFailing)
	}
	h := d.Health
	if !h.At.IsZero() {
		if h.ClockSkew > MaxClockSkew || h.ClockSkew < -MaxClockSkew {
			p = append(p, ProblemClockSkew)
		}
		if active != nil && h.ReportedSerial != "" && h.ReportedSerial != active.Serial && h.At.After(active.ActivatedAt) {
			p = append(p, ProblemUnexpectedSerial)
		}
	}
	return p
}

// Summary is a device as the bridge topics and the CLI list it.
func Summary(d inventory.Device, active *inventory.Certificate, now time.Time) protocol.DeviceSummary {
	s := protocol.DeviceSummary{ID: d.ID, Name: d.Name, Family: d.Family, Class: d.Class, State: d.State, Online: d.Online,
		RenewalState: d.Renewal.State, LastSeen: d.LastSeen, Problems: Problems(d, active, now)}
	if active != nil {
		s.Serial, s.NotAfter = active.Serial, active.NotAfter
	}
	return s
}
