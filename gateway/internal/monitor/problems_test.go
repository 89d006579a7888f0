package monitor

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
)

const day = 24 * time.Hour

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// certOf is an active certificate valid from notBefore for life.
func certOf(notBefore time.Time, life time.Duration) *inventory.Certificate {
	return &inventory.Certificate{Serial: "aa", NotBefore: notBefore, NotAfter: notBefore.Add(life),
		Status: inventory.StatusActive, ActivatedAt: notBefore}
}

func TestJudge(t *testing.T) {
	pol := policy.Default()
	active := inventory.Device{ID: "d", State: inventory.StateActive, Mechanism: inventory.MechanismAgent}
	with := func(f func(*inventory.Device)) inventory.Device { d := active; f(&d); return d }
	fresh := certOf(now.Add(-10*day), 30*day) // 20 days left, before its window's end
	tests := []struct {
		name string
		dev  inventory.Device
		cert *inventory.Certificate
		want []string
		text string // a part of the first problem's text
	}{
		{"healthy", active, fresh, nil, ""},
		{"past the window's end", active, certOf(now.Add(-27*day), 30*day), []string{ProblemExpiring}, "past the end of its renewal window"},
		{"inside the emergency floor", active, certOf(now.Add(-29*day), 30*day), []string{ProblemExpiring}, "inside the emergency floor"},
		{"expired", active, certOf(now.Add(-30*day-time.Second), 30*day), []string{ProblemExpired}, "expired at 2026-11-25T11:59:59Z"},
		{"expires now", active, certOf(now.Add(-30*day), 30*day), []string{ProblemExpired}, "expired"},
		{"revoked", active, func() *inventory.Certificate {
			c := *fresh
			c.Status, c.RevokedAt, c.RevokeReason = inventory.StatusRevoked, now.Add(-time.Hour), "key compromise"
			return &c
		}(), []string{ProblemRevoked}, "revoked since 2026-11-25T11:00:00Z: key compromise"},
		{"quarantined", with(func(d *inventory.Device) { d.State = inventory.StateQuarantined }), nil, []string{ProblemRevoked}, "quarantined"},
		{"no certificate", active, nil, []string{ProblemNoCertificate}, "no active certificate"},
		{"enrolling", with(func(d *inventory.Device) { d.State = inventory.StateEnrolling }), nil, nil, ""},
		{"manual without certificate", with(func(d *inventory.Device) { d.Mechanism = inventory.MechanismManual }), nil, nil, ""},
		{"renewal failing", with(func(d *inventory.Device) {
			d.Renewal = inventory.RenewalStatus{State: inventory.RenewalFailing, Failures: 5, LastCause: "command not sent"}
		}), fresh, []string{ProblemRenewalFailing}, "5 renewal attempt(s) in a row failed, the last with: command not sent"},
		{"clock skew", with(func(d *inventory.Device) {
			d.Health = inventory.Health{At: now, ClockSkew: -10 * time.Minute, ReportedSerial: "aa"}
		}), fresh, []string{ProblemClockSkew}, "-10m0s off"},
		{"small skew", with(func(d *inventory.Device) {
			d.Health = inventory.Health{At: now, ClockSkew: time.Minute, ReportedSerial: "aa"}
		}), fresh, nil, ""},
		{"unexpected serial", with(func(d *inventory.Device) { d.Health = inventory.Health{At: now, ReportedSerial: "bb"} }),
			fresh, []string{ProblemUnexpectedSerial}, "reported certificate bb"},
		{"report older than the activation", with(func(d *inventory.Device) {
			d.Health = inventory.Health{At: fresh.ActivatedAt.Add(-time.Hour), ReportedSerial: "bb"}
		}), fresh, nil, ""},
		{"two problems in order", with(func(d *inventory.Device) { d.Renewal.State = inventory.RenewalFailing }),
			certOf(now.Add(-29*day), 30*day), []string{ProblemExpiring, ProblemRenewalFailing}, "emergency floor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Judge(tt.dev, tt.cert, pol, now)
			if got := v.Codes(); !slices.Equal(got, tt.want) {
				t.Fatalf("Judge().Codes() = %v, want %v (%+v)", got, tt.want, v.Problems)
			}
			if tt.text != "" && !strings.Contains(v.Problems[0].Text, tt.text) {
				t.Errorf("Judge().Problems[0].Text = %q, want it to contain %q", v.Problems[0].Text, tt.text)
			}
			for _, code := range tt.want {
				if !v.Has(code) {
					t.Errorf("Judge().Has(%q) = false, want true", code)
				}
			}
		})
	}
}

// TestExpiringFollowsThePolicy is the regression test of issue 10 item 6: "expiring" was a
// fixed 7 days, so a device of the 7-day high-risk class was expiring right after enrolling
// and a manual device with 12 days left past its window showed nothing.
func TestExpiringFollowsThePolicy(t *testing.T) {
	pol := policy.Default()
	t.Run("a 7-day certificate just enrolled is not expiring", func(t *testing.T) {
		lock := inventory.Device{ID: "lock-front", Tags: []string{policy.HighRiskClass}, State: inventory.StateActive,
			Mechanism: inventory.MechanismAgent}
		c := certOf(now.Add(-time.Minute), 7*day)
		if v := Judge(lock, c, pol, now); v.Has(ProblemExpiring) || len(v.Problems) != 0 {
			t.Errorf("Judge(7-day high-risk certificate issued a minute ago) = %+v, want no problem", v.Problems)
		}
		// It becomes expiring at its own window's end, well inside the last 7 days.
		w := pol.Window(policy.Subject{DeviceID: lock.ID, Tags: lock.Tags},
			policy.CertInfo{Serial: c.Serial, NotBefore: c.NotBefore, NotAfter: c.NotAfter}, now)
		if w.Class != policy.HighRiskClass {
			t.Fatalf("window class = %q, want %q", w.Class, policy.HighRiskClass)
		}
		if v := Judge(lock, c, pol, w.End); !v.Has(ProblemExpiring) || !strings.Contains(v.Problems[0].Text, "(class high-risk)") {
			t.Errorf("Judge(at the window's end %s) = %+v, want expiring naming the class", w.End, v.Problems)
		}
	})
	t.Run("a manual device with 12 days left past its window is expiring", func(t *testing.T) {
		// An imported 90-day certificate: the default class renews from 2/3 of the lifetime
		// (±10 %), so its window ends 14 to 20 days before expiry.
		thermostat := inventory.Device{ID: "old-thermostat", State: inventory.StateActive, Mechanism: inventory.MechanismManual}
		c := certOf(now.Add(12*day-90*day), 90*day)
		v := Judge(thermostat, c, pol, now)
		if got := v.Codes(); !slices.Equal(got, []string{ProblemExpiring}) {
			t.Fatalf("Judge(manual, 12 days left of 90) = %v, want [expiring]", v.Problems)
		}
		if !strings.Contains(v.Problems[0].Text, "past the end of its renewal window") {
			t.Errorf("text = %q, want it to say the window's end passed", v.Problems[0].Text)
		}
	})
}

// TestJudgeUntil checks that a verdict holds until Until and changes there: the component that
// re-judges devices as time passes relies on it.
func TestJudgeUntil(t *testing.T) {
	pol := policy.Default()
	d := inventory.Device{ID: "d", State: inventory.StateActive, Mechanism: inventory.MechanismAgent}
	c := certOf(now.Add(-10*day), 30*day)
	at := now
	var seen []string
	for range 4 {
		v := Judge(d, c, pol, at)
		seen = append(seen, strings.Join(v.Codes(), ","))
		if v.Until.IsZero() {
			break
		}
		if !v.Until.After(at) {
			t.Fatalf("Judge(%s).Until = %s, not after", at, v.Until)
		}
		before := Judge(d, c, pol, v.Until.Add(-time.Second))
		if diff := cmp.Diff(v.Problems, before.Problems); diff != "" {
			t.Errorf("verdict changed before Until %s (-at +before):\n%s", v.Until, diff)
		}
		after := Judge(d, c, pol, v.Until)
		if cmp.Equal(v.Problems, after.Problems) {
			t.Errorf("verdict at Until %s = %+v, unchanged", v.Until, after.Problems)
		}
		at = v.Until
	}
	// Fine, then past the window (expiring), inside the floor (expiring), then expired for good.
	if want := []string{"", "expiring", "expiring", "expired"}; !slices.Equal(seen, want) {
		t.Errorf("verdicts over the certificate's life = %q, want %q", seen, want)
	}
	if v := Judge(d, nil, pol, now); !v.Until.IsZero() {
		t.Errorf("Judge(no certificate).Until = %s, want zero", v.Until)
	}
}

func TestSummary(t *testing.T) {
	d := inventory.Device{ID: "d", Name: "D", State: inventory.StateActive, Mechanism: inventory.MechanismAgent, Online: true}
	c := certOf(now.Add(-29*day), 30*day)
	s := Summary(d, c, nil, now)
	if s.Serial != "aa" || !s.NotAfter.Equal(c.NotAfter) || !slices.Equal(s.Problems, []string{ProblemExpiring}) ||
		len(s.ProblemDetails) != 1 || s.ProblemDetails[0].Code != ProblemExpiring {
		t.Errorf("Summary() = %+v, want serial aa, its expiry and one expiring problem with details", s)
	}
}

// TestDocsListEveryProblem keeps the documentation of problem codes equal to the list:
// issue 13 found reasons documented that were never produced, and produced ones undocumented.
func TestDocsListEveryProblem(t *testing.T) {
	for _, doc := range []string{"../../../protocol/README.md", "../../../addon/DOCS.md"} {
		b, err := os.ReadFile(filepath.FromSlash(doc))
		if err != nil {
			t.Fatal(err)
		}
		for _, code := range Codes() {
			if !strings.Contains(string(b), "`"+code+"`") {
				t.Errorf("%s does not document problem `%s`", doc, code)
			}
		}
		for _, gone := range []string{"`unexpected_issuer`"} {
			if strings.Contains(string(b), gone) {
				t.Errorf("%s documents %s, which the hub never reports as a problem", doc, gone)
			}
		}
	}
}
