package monitor

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hearth-pki/hearth/protocol"
)

var f0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// brief is what a test compares of a finding.
type brief struct {
	Key      string
	Resolved bool
	Devices  []string
}

func briefs(fs []Finding) []brief {
	var out []brief
	for _, f := range fs {
		out = append(out, brief{f.Key, f.Resolved, f.Devices})
	}
	return out
}

func fail(id, family string, cause protocol.Cause, at time.Time) Attempt {
	return Attempt{DeviceID: id, Family: family, Class: "default", Cause: cause, At: at}
}

func ok(id, family string, latency time.Duration, at time.Time) Attempt {
	return Attempt{DeviceID: id, Family: family, Class: "default", OK: true, Latency: latency, At: at}
}

func TestFamilyFailuresRaiseOneFinding(t *testing.T) {
	d := NewDetector(Rules{GroupDevices: 3, Window: time.Hour, Repeated: 99})
	var got []Finding
	for i := range 5 {
		got = append(got, d.Observe(fail(fmt.Sprintf("plug-%d", i), "plug", protocol.CauseTimeout, f0.Add(time.Duration(i)*time.Minute)))...)
	}
	want := []brief{{"family_failures/plug", false, []string{"plug-0", "plug-1", "plug-2"}}}
	if diff := cmp.Diff(want, briefs(got)); diff != "" {
		t.Fatalf("five failures of one family (-want +got):\n%s", diff)
	}
	if got[0].Family != "plug" || got[0].Cause != protocol.CauseTimeout {
		t.Errorf("finding = %+v, want family plug and cause timeout", got[0])
	}
	// Another family failing alone raises nothing.
	if fs := d.Observe(fail("cam-1", "cam", protocol.CauseTimeout, f0.Add(6*time.Minute))); len(fs) != 0 {
		t.Errorf("one camera failing: %v, want nothing", briefs(fs))
	}
	got = nil
	for i := range 5 {
		got = append(got, d.Observe(ok(fmt.Sprintf("plug-%d", i), "plug", 0, f0.Add(10*time.Minute)))...)
	}
	if diff := cmp.Diff([]brief{{"family_failures/plug", true, []string{"plug-0", "plug-1", "plug-2"}}}, briefs(got)); diff != "" {
		t.Errorf("every device renews (-want +got):\n%s", diff)
	}
	if len(d.Open()) != 0 {
		t.Errorf("Open() = %v after the family recovered", briefs(d.Open()))
	}
}

func TestGroupFailuresAgeOut(t *testing.T) {
	d := NewDetector(Rules{GroupDevices: 3, Window: time.Hour, Repeated: 99})
	d.Observe(fail("a", "plug", protocol.CauseNetwork, f0))
	d.Observe(fail("b", "lock", protocol.CauseNetwork, f0))
	// Three families of one class: a class finding, no family one.
	got := d.Observe(fail("c", "cam", protocol.CauseNetwork, f0.Add(time.Minute)))
	want := []brief{{"class_failures/default", false, []string{"a", "b", "c"}}}
	if diff := cmp.Diff(want, briefs(got)); diff != "" {
		t.Fatalf("two failures (-want +got):\n%s", diff)
	}
	if fs := d.Tick(f0.Add(30 * time.Minute)); len(fs) != 0 {
		t.Errorf("Tick inside the window = %v, want nothing", briefs(fs))
	}
	got = d.Tick(f0.Add(2 * time.Hour))
	slices.SortFunc(got, func(a, b Finding) int { return cmpString(a.Key, b.Key) })
	want = []brief{{"class_failures/default", true, []string{"a", "b", "c"}}}
	if diff := cmp.Diff(want, briefs(got)); diff != "" {
		t.Errorf("Tick after the window (-want +got):\n%s", diff)
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestRepeatedCause(t *testing.T) {
	d := NewDetector(Rules{GroupDevices: 99, Repeated: 3})
	steps := []struct {
		a    Attempt
		want []brief
	}{
		{fail("cam", "cam", protocol.CauseTimeout, f0), nil},
		{fail("cam", "cam", protocol.CauseTimeout, f0.Add(time.Minute)), nil},
		{fail("cam", "cam", protocol.CauseTimeout, f0.Add(2*time.Minute)), []brief{{"repeated_cause/cam/timeout", false, nil}}},
		{fail("cam", "cam", protocol.CauseTimeout, f0.Add(3*time.Minute)), nil}, // deduplicated
		// Another cause ends this finding and starts a new streak.
		{fail("cam", "cam", protocol.CauseStorage, f0.Add(4*time.Minute)), []brief{{"repeated_cause/cam/timeout", true, nil}}},
		{fail("cam", "cam", protocol.CauseStorage, f0.Add(5*time.Minute)), nil},
		{fail("cam", "cam", protocol.CauseStorage, f0.Add(6*time.Minute)), []brief{{"repeated_cause/cam/storage", false, nil}}},
		{ok("cam", "cam", 0, f0.Add(7*time.Minute)), []brief{{"repeated_cause/cam/storage", true, nil}}},
	}
	for i, s := range steps {
		if diff := cmp.Diff(s.want, briefs(d.Observe(s.a))); diff != "" {
			t.Errorf("step %d, %+v (-want +got):\n%s", i, s.a, diff)
		}
	}
}

func TestFamilyRateAboveBaseline(t *testing.T) {
	d := NewDetector(Rules{GroupDevices: 99, Repeated: 99, Window: time.Hour, RateAttempts: 10, RateFactor: 3})
	at := f0
	// A first window: 1 failure in 20, a 5% baseline.
	for i := range 20 {
		a := ok(fmt.Sprintf("p%d", i), "plug", 0, at)
		if i == 0 {
			a = fail("p0", "plug", protocol.CauseNetwork, at)
		}
		if fs := d.Observe(a); len(fs) != 0 {
			t.Fatalf("first window: %v, want nothing (no baseline yet)", briefs(fs))
		}
	}
	at = at.Add(61 * time.Minute)
	var got []Finding
	for i := range 10 {
		a := ok(fmt.Sprintf("p%d", i), "plug", 0, at)
		if i%2 == 0 {
			a = fail(fmt.Sprintf("p%d", i), "plug", protocol.CausePolicyRefused, at)
		}
		got = append(got, d.Observe(a)...)
	}
	if diff := cmp.Diff([]brief{{"family_failure_rate/plug", false, nil}}, briefs(got)); diff != "" {
		t.Fatalf("half failing against a 5%% baseline (-want +got):\n%s", diff)
	}
	got = d.Tick(at.Add(61 * time.Minute))
	if diff := cmp.Diff([]brief{{"family_failure_rate/plug", true, nil}}, briefs(got)); diff != "" {
		t.Errorf("the window ends (-want +got):\n%s", diff)
	}
}

func TestSlowRenewal(t *testing.T) {
	d := NewDetector(Rules{SlowSamples: 20, SlowFactor: 10})
	for i := range 30 {
		if fs := d.Observe(ok(fmt.Sprintf("p%d", i), "plug", 40*time.Millisecond, f0)); len(fs) != 0 {
			t.Fatalf("normal renewal: %v", briefs(fs))
		}
	}
	got := d.Observe(ok("slow", "plug", 2*time.Second, f0))
	if diff := cmp.Diff([]brief{{"slow_renewal/slow", false, nil}}, briefs(got)); diff != "" {
		t.Fatalf("a renewal 50× the median (-want +got):\n%s", diff)
	}
	got = d.Observe(ok("slow", "plug", 50*time.Millisecond, f0))
	if diff := cmp.Diff([]brief{{"slow_renewal/slow", true, nil}}, briefs(got)); diff != "" {
		t.Errorf("back to normal (-want +got):\n%s", diff)
	}
}

func TestDeviceAndHubFindings(t *testing.T) {
	d := NewDetector(Rules{HubWarning: 30 * 24 * time.Hour})
	steps := []struct {
		name string
		do   func() []Finding
		want []brief
	}{
		{"issuer changed", func() []Finding { return d.IssuerChanged("cam", "cam", "", "CN=Other CA", f0) }, []brief{{"issuer_changed/cam", false, nil}}},
		{"again", func() []Finding { return d.IssuerChanged("cam", "cam", "", "CN=Other CA", f0) }, nil},
		{"skipped", func() []Finding { return d.Skipped("cam", "cam", "", "window ended", f0) }, []brief{{"renewal_skipped/cam", false, nil}}},
		{"renewed", func() []Finding { return d.Renewed("cam", f0) }, []brief{{"renewal_skipped/cam", true, nil}, {"issuer_changed/cam", true, nil}}},
		{"reminder", func() []Finding { return d.Reminder("meter", "", "", "7d", f0.Add(7*24*time.Hour), f0) }, []brief{{"renewal_reminder/meter/7d", false, nil}}},
		{"same reminder", func() []Finding { return d.Reminder("meter", "", "", "7d", f0.Add(7*24*time.Hour), f0) }, nil},
		{"next reminder", func() []Finding { return d.Reminder("meter", "", "", "1d", f0.Add(24*time.Hour), f0) }, []brief{{"renewal_reminder/meter/1d", false, nil}}},
		{"meter imported again", func() []Finding { return d.Renewed("meter", f0) }, []brief{{"renewal_reminder/meter/1d", true, nil}, {"renewal_reminder/meter/7d", true, nil}}},
		{"hub fine", func() []Finding {
			return d.HubCertificates(map[string]time.Time{"broker": f0.Add(60 * 24 * time.Hour), "root": f0.Add(3650 * 24 * time.Hour)}, f0)
		}, nil},
		{"broker expiring", func() []Finding {
			return d.HubCertificates(map[string]time.Time{"broker": f0.Add(20 * 24 * time.Hour), "root": f0.Add(3650 * 24 * time.Hour)}, f0)
		}, []brief{{"hub_certificate_expiring/broker", false, nil}}},
		{"still expiring", func() []Finding {
			return d.HubCertificates(map[string]time.Time{"broker": f0.Add(19 * 24 * time.Hour)}, f0.Add(time.Hour))
		}, nil},
		{"broker replaced", func() []Finding {
			return d.HubCertificates(map[string]time.Time{"broker": f0.Add(90 * 24 * time.Hour)}, f0.Add(2*time.Hour))
		}, []brief{{"hub_certificate_expiring/broker", true, nil}}},
	}
	for _, s := range steps {
		if diff := cmp.Diff(s.want, briefs(s.do())); diff != "" {
			t.Errorf("%s (-want +got):\n%s", s.name, diff)
		}
	}
}
