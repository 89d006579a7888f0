package inventory

import (
	"testing"
	"time"
)

func TestCountActiveIssuedBy(t *testing.T) {
	s := openTest(t)
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i, serial := range []string{"a1", "a2", "b1"} {
		in := issuance("dev-"+serial, serial, "req-"+serial, at.Add(time.Duration(i)*time.Second))
		if serial[0] == 'b' {
			in.Cert.Issuer = "Hearth Intermediate 2"
		}
		mustIssue(t, s, in)
		if serial != "a2" { // a2 stays pending: not what the device uses
			if _, _, err := s.Activate(t.Context(), in.Device.ID, serial, at); err != nil {
				t.Fatalf("Activate(%s) = %v", serial, err)
			}
		}
	}
	for issuer, want := range map[string]int{"Hearth Intermediate": 1, "Hearth Intermediate 2": 1, "Other": 0} {
		if got, err := s.CountActiveIssuedBy(t.Context(), issuer); err != nil || got != want {
			t.Errorf("CountActiveIssuedBy(%q) = %d, %v; want %d", issuer, got, err, want)
		}
	}
}
