package admin

import (
	"strings"
	"testing"
	"time"
)

func TestIncidentCampaignID(t *testing.T) {
	at := time.Date(2026, 12, 3, 12, 0, 5, 0, time.UTC)
	for _, tc := range []struct{ family, want string }{
		{"acme-cam", "incident-acme-cam-20261203t120005z"},
		{"Acme Cam/v2", "incident-Acme-Cam-v2-20261203t120005z"},
		{strings.Repeat("x", 80), "incident-" + strings.Repeat("x", 32) + "-20261203t120005z"},
	} {
		got := incidentCampaignID(tc.family, at)
		if got != tc.want {
			t.Errorf("incidentCampaignID(%q) = %q, want %q", tc.family, got, tc.want)
		}
		if len(got) > 64 {
			t.Errorf("incidentCampaignID(%q) is %d characters, campaign ids have at most 64", tc.family, len(got))
		}
	}
}

func TestCapitalize(t *testing.T) {
	for in, want := range map[string]string{"porch camera": "Porch camera", "Porch": "Porch", "": "", "3rd lamp": "3rd lamp"} {
		if got := capitalize(in); got != want {
			t.Errorf("capitalize(%q) = %q, want %q", in, got, want)
		}
	}
}
