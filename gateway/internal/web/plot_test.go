package web

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/monitor"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

// wellFormed fails the test unless svg is well-formed XML with one <svg> root.
func wellFormed(t *testing.T, name, svg string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(svg))
	depth, roots := 0, 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v\n%s", name, err, svg)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
				if e.Name.Local != "svg" {
					t.Errorf("%s: root element %q, want svg", name, e.Name.Local)
				}
			}
			depth++
		case xml.EndElement:
			depth--
		}
	}
	if roots != 1 {
		t.Errorf("%s has %d root elements, want 1", name, roots)
	}
}

// TestPlots locks every SVG builder's output for fixed inputs (go test -run TestPlots
// -update rewrites testdata/plots/).
func TestPlots(t *testing.T) {
	now := t0
	marks := []timelineMark{
		{ID: "cam-1", Label: "Front <camera>", Group: "camera", NotAfter: now.Add(10 * day), WindowStart: now.Add(2 * day), WindowEnd: now.Add(6 * day), Severity: sevOK},
		{ID: "cam-2", Group: "camera", NotAfter: now.Add(-3 * day), Severity: sevBad},
		{ID: "lock-1", Group: "lock", NotAfter: now.Add(200 * day), WindowStart: now.Add(120 * day), WindowEnd: now.Add(160 * day), Severity: sevOK},
		{ID: "lock-2", Group: "lock", NotAfter: now.Add(2 * day), WindowStart: now.Add(-5 * day), WindowEnd: now.Add(-day), Severity: sevWarn},
		{ID: "new", Group: "", Severity: sevNone},
	}
	tests := []struct {
		name string
		svg  string
	}{
		{"timeline.svg", string(timelineSVG([]string{"", "camera", "lock"}, marks, now))},
		{"timeline-empty.svg", string(timelineSVG(nil, nil, now))},
		{"rate.svg", string(rateSVG("7 d", []rateBucket{{"Feb 23", 10, 0}, {"Feb 24", 0, 0}, {"Feb 25", 9, 1}, {"Feb 26", 1, 3}}))},
		{"bars.svg", string(barsSVG("Failures by cause", []bar{{Label: "policy_denied", N: 4, Severity: sevBad},
			{Label: "a label longer than twenty-four characters", N: 1, Severity: sevBad}}))},
		{"share.svg", string(barsSVG("Online", []bar{{Label: "valid", N: 3, Of: 4, Severity: sevOK}, {Label: "none", N: 0, Of: 1, Severity: sevBad}}))},
		{"lifetimes.svg", string(lifetimeSVG([]population{{Name: "camera", Counts: [6]int{0, 2, 5, 1, 0, 0}}, {Name: "lock & key", Counts: [6]int{0, 0, 0, 0, 3, 1}}}))},
		{"history.svg", string(historySVG([]historyCert{
			{Serial: "0b", Status: "active", NotBefore: now.Add(-5 * day), NotAfter: now.Add(25 * day), ActivatedAt: now.Add(-5*day + time.Hour)},
			{Serial: "0a", Status: "superseded", NotBefore: now.Add(-35 * day), NotAfter: now.Add(-5 * day), ActivatedAt: now.Add(-35 * day)},
			{Serial: "09", Status: "revoked", NotBefore: now.Add(-40 * day), NotAfter: now.Add(-10 * day)},
		}, now))},
		{"progress.svg", string(progressSVG(inventory.CampaignSummary{Total: 10, Committed: 5, Failed: 1, InFlight: 2, Pending: 2}))},
		{"window.svg", func() string {
			c := policy.Default().Classes[0]
			o, e, em := classWindow(c, now)
			return string(windowSVG(c, o, e, em))
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wellFormed(t, tt.name, tt.svg)
			golden(t, "plots/"+tt.name, []byte(tt.svg+"\n"))
		})
	}
	// One mark per device, whatever its expiry: past, beyond the horizon, none.
	if n := strings.Count(tests[0].svg, `<g class="mark `); n != len(marks) {
		t.Errorf("timelineSVG drew %d marks, want %d", n, len(marks))
	}
	if !strings.Contains(tests[0].svg, "cam-1 (Front &lt;camera&gt;): expires 2026-03-11 12:00 UTC, 10 d 0 h left") {
		t.Errorf("timelineSVG does not escape or describe the mark:\n%s", tests[0].svg)
	}
}

// TestUptimeBars: the share of time online per period for devices with and without a valid
// certificate, from each device's time online (golden plots/uptime.svg).
func TestUptimeBars(t *testing.T) {
	now := t0
	fleet := []fleetDevice{
		{DeviceSummary: protocol.DeviceSummary{ID: "a", NotAfter: now.Add(10 * day)}},
		{DeviceSummary: protocol.DeviceSummary{ID: "b", NotAfter: now.Add(10 * day)}},
		{DeviceSummary: protocol.DeviceSummary{ID: "expired", NotAfter: now.Add(-day)}},
		{DeviceSummary: protocol.DeviceSummary{ID: "revoked", NotAfter: now.Add(day), Problems: []string{monitor.ProblemRevoked}}},
	}
	online := []map[string]time.Duration{
		{"a": 24 * time.Hour, "b": 12 * time.Hour, "expired": 6 * time.Hour},
		{"a": 7 * day, "b": 30 * time.Hour, "revoked": 100 * day}, // more than the period counts as all of it
	}
	bars := uptimeBars(fleet, online, now)
	var got []string
	for _, b := range bars {
		got = append(got, b.Label+": "+b.Value)
	}
	want := []string{
		"valid certificate, 24 h: 75 % online, 2 device(s)", "no valid one, 24 h: 12 % online, 2 device(s)",
		"valid certificate, 7 d: 59 % online, 2 device(s)", "no valid one, 7 d: 50 % online, 2 device(s)",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("uptimeBars (-want +got):\n%s", diff)
	}
	if got := uptimeBars(nil, nil, now); got[0].Value != "0 device(s): none" {
		t.Errorf("uptimeBars of no fleet = %+v, want none", got[0])
	}
	svg := string(barsSVG("Share of time online", bars))
	wellFormed(t, "uptime", svg)
	golden(t, "plots/uptime.svg", []byte(svg+"\n"))
}

// TestSeededTimeline draws the timeline of the seeded inventory: the whole path from the
// inventory's rows through Judge and the policy's windows, a pure function of them and now.
func TestSeededTimeline(t *testing.T) {
	f := newFixture(t, nil)
	seedShowcase(t, f.store)
	recs, err := f.store.Fleet(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	fleet := judgeFleet(recs, policy.Default(), t0)
	completeFleet(fleet, policy.Default(), t0)
	o := buildOverview(fleet, nil, nil, nil, "family", t0)
	svg := string(o.Timeline)
	wellFormed(t, "seeded timeline", svg)
	golden(t, "plots/timeline-seeded.svg", []byte(svg+"\n"))
	if n := strings.Count(svg, `<g class="mark `); n != len(recs) {
		t.Errorf("seeded timeline has %d marks, want %d", n, len(recs))
	}
}

func TestQRCode(t *testing.T) {
	svg, err := qrSVG("hearth-agent enroll --hub mqtts://hub.test:8883 --id x --token hst_abc")
	if err != nil {
		t.Fatal(err)
	}
	wellFormed(t, "qr", string(svg))
	golden(t, "plots/qr.svg", []byte(string(svg)+"\n"))
	if _, err := qrSVG(strings.Repeat("x", 3000)); err == nil {
		t.Error("qrSVG(3000 bytes) = nil error, want one (too long for a QR code)")
	}
}

func TestAbout(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{10 * time.Minute, "less than an hour"}, {70 * time.Minute, "about an hour"}, {5 * time.Hour, "about 5 hours"},
		{3 * day, "about 3 days"}, {day + 13*time.Hour, "about 2 days"}, {20 * day, "about 3 weeks"},
		{7 * day * 3, "about 3 weeks"}, {90 * day, "about 3 months"}, {800 * day, "about 2 years"},
	} {
		if got := about(tt.d); got != tt.want {
			t.Errorf("about(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
	if got := latencyText(420 * time.Microsecond); got != "0.42 ms" {
		t.Errorf("latencyText(420µs) = %q, want 0.42 ms", got)
	}
	if got := latencyText(0); got != "—" {
		t.Errorf("latencyText(0) = %q, want —", got)
	}
}
