package monitor

import (
	"slices"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
)

func TestProblems(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	cert := func(notAfter time.Time, st inventory.Status) *inventory.Certificate {
		return &inventory.Certificate{Serial: "aa", NotAfter: notAfter, Status: st, ActivatedAt: now.Add(-time.Hour)}
	}
	active := inventory.Device{ID: "d", State: inventory.StateActive, Mechanism: inventory.MechanismAgent}
	with := func(f func(*inventory.Device)) inventory.Device { d := active; f(&d); return d }
	tests := []struct {
		name string
		dev  inventory.Device
		cert *inventory.Certificate
		want []string
	}{
		{"healthy", active, cert(now.Add(20*24*time.Hour), inventory.StatusActive), nil},
		{"expiring", active, cert(now.Add(6*24*time.Hour), inventory.StatusActive), []string{ProblemExpiring}},
		{"expired", active, cert(now.Add(-time.Second), inventory.StatusActive), []string{ProblemExpired}},
		{"expires now", active, cert(now, inventory.StatusActive), []string{ProblemExpired}},
		{"revoked", active, cert(now.Add(20*24*time.Hour), inventory.StatusRevoked), []string{ProblemRevoked}},
		{"quarantined", with(func(d *inventory.Device) { d.State = inventory.StateQuarantined }), nil, []string{ProblemRevoked}},
		{"no certificate", active, nil, []string{ProblemNoCertificate}},
		{"enrolling", with(func(d *inventory.Device) { d.State = inventory.StateEnrolling }), nil, nil},
		{"manual without certificate", with(func(d *inventory.Device) { d.Mechanism = inventory.MechanismManual }), nil, nil},
		{"renewal failing", with(func(d *inventory.Device) { d.Renewal.State = inventory.RenewalFailing }),
			cert(now.Add(20*24*time.Hour), inventory.StatusActive), []string{ProblemRenewalFailing}},
		{"clock skew", with(func(d *inventory.Device) {
			d.Health = inventory.Health{At: now, ClockSkew: -10 * time.Minute, ReportedSerial: "aa"}
		}),
			cert(now.Add(20*24*time.Hour), inventory.StatusActive), []string{ProblemClockSkew}},
		{"small skew", with(func(d *inventory.Device) {
			d.Health = inventory.Health{At: now, ClockSkew: time.Minute, ReportedSerial: "aa"}
		}),
			cert(now.Add(20*24*time.Hour), inventory.StatusActive), nil},
		{"unexpected serial", with(func(d *inventory.Device) { d.Health = inventory.Health{At: now, ReportedSerial: "bb"} }),
			cert(now.Add(20*24*time.Hour), inventory.StatusActive), []string{ProblemUnexpectedSerial}},
		{"report older than the activation", with(func(d *inventory.Device) {
			d.Health = inventory.Health{At: now.Add(-2 * time.Hour), ReportedSerial: "bb"}
		}),
			cert(now.Add(20*24*time.Hour), inventory.StatusActive), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Problems(tt.dev, tt.cert, now); !slices.Equal(got, tt.want) {
				t.Errorf("Problems() = %v, want %v", got, tt.want)
			}
		})
	}
	s := Summary(active, cert(now.Add(6*24*time.Hour), inventory.StatusActive), now)
	if s.Serial != "aa" || len(s.Problems) != 1 {
		t.Errorf("Summary() = %+v, want serial aa and one problem", s)
	}
}
