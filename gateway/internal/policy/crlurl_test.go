package policy

import (
	"slices"
	"testing"
	"time"
)

// TestCRLURL: crl_url reaches every admitted profile, survives Marshal and shows in Diff.
func TestCRLURL(t *testing.T) {
	p, err := Parse([]byte("crl_url: http://hub.local:8099/crl\n"))
	if err != nil {
		t.Fatalf("Parse() = %v", err)
	}
	if p.CRLURL != "http://hub.local:8099/crl" {
		t.Fatalf("CRLURL = %q", p.CRLURL)
	}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(b)
	if err != nil || back.CRLURL != p.CRLURL {
		t.Errorf("Parse(Marshal()) CRLURL = %q, %v, want %q", back.CRLURL, err, p.CRLURL)
	}
	if d := Diff(Default(), p); !slices.Contains(d, `crl_url: "" -> "http://hub.local:8099/crl"`) {
		t.Errorf("Diff() = %q, want the crl_url change", d)
	}
	if Default().CRLURL != "" {
		t.Error("the default policy names a CRL distribution point")
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	d := p.Admit(Subject{DeviceID: "plug"}, CSRInfo{KeyAlgorithm: KeyP256, Reason: CSREnroll}, now)
	if !d.Allowed() || !slices.Equal(d.Profile.CRLDistributionPoints, []string{p.CRLURL}) {
		t.Errorf("Admit() profile CRLDistributionPoints = %q, want [%q]", d.Profile.CRLDistributionPoints, p.CRLURL)
	}
	if d := Default().Admit(Subject{DeviceID: "plug"}, CSRInfo{KeyAlgorithm: KeyP256, Reason: CSREnroll}, now); d.Profile.CRLDistributionPoints != nil {
		t.Errorf("Admit() without crl_url: CRLDistributionPoints = %q", d.Profile.CRLDistributionPoints)
	}
}
