package protocol

import (
	"errors"
	"testing"
)

func TestRevocationReasons(t *testing.T) {
	// The numbers are RFC 5280 section 5.3.1's; a wrong one would put a lie in every CRL.
	want := map[RevocationReason]int{
		"unspecified": 0, "keyCompromise": 1, "affiliationChanged": 3, "superseded": 4,
		"cessationOfOperation": 5, "privilegeWithdrawn": 9,
	}
	if got := len(RevocationReasons()); got != len(want) {
		t.Fatalf("len(RevocationReasons()) = %d, want %d", got, len(want))
	}
	for _, r := range RevocationReasons() {
		if got := r.Code(); got != want[r] {
			t.Errorf("%q.Code() = %d, want %d", r, got, want[r])
		}
		back, ok := RevocationReasonOf(r.Code())
		if !ok || back != r {
			t.Errorf("RevocationReasonOf(%d) = %q, %v, want %q", r.Code(), back, ok, r)
		}
		parsed, err := ParseRevocationReason(string(r))
		if err != nil || parsed != r {
			t.Errorf("ParseRevocationReason(%q) = %q, %v", r, parsed, err)
		}
	}
}

func TestParseRevocationReasonRefuses(t *testing.T) {
	if r, err := ParseRevocationReason(""); err != nil || r != RevokeUnspecified {
		t.Errorf(`ParseRevocationReason("") = %q, %v, want unspecified`, r, err)
	}
	for _, s := range []string{"keycompromise", "key compromise", "certificateHold", "removeFromCRL", "cACompromise", "7", "1"} {
		if _, err := ParseRevocationReason(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseRevocationReason(%q) = %v, want ErrInvalid", s, err)
		}
	}
	for _, code := range []int{-1, 2, 6, 7, 8, 10, 11} {
		if r, ok := RevocationReasonOf(code); ok {
			t.Errorf("RevocationReasonOf(%d) = %q, true, want false", code, r)
		}
	}
	if got := RevocationReason("nope").Code(); got != -1 {
		t.Errorf(`RevocationReason("nope").Code() = %d, want -1`, got)
	}
}

// FuzzParseRevocationReason: any word either is a reason that round-trips through its code,
// or is refused with ErrInvalid; never a panic.
func FuzzParseRevocationReason(f *testing.F) {
	for _, r := range RevocationReasons() {
		f.Add(string(r))
	}
	f.Add("certificateHold")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRevocationReason(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseRevocationReason(%q) = %v, want ErrInvalid", s, err)
			}
			return
		}
		if back, ok := RevocationReasonOf(r.Code()); !ok || back != r {
			t.Errorf("ParseRevocationReason(%q) = %q, which does not round-trip through code %d", s, r, r.Code())
		}
	})
}
