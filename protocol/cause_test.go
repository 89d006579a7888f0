package protocol

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
)

const causesGolden = "testdata/causes.txt"

// TestCausesAppendOnly locks the causes against testdata/causes.txt, one cause and its class
// a line: the golden list must be a prefix of Causes, and a cause never changes class. With
// -update the file is rewritten, but only after that check passed, so -update can append
// and never remove.
func TestCausesAppendOnly(t *testing.T) {
	b, err := os.ReadFile(causesGolden)
	if err != nil && !(*update && os.IsNotExist(err)) {
		t.Fatalf("reading %s (run with -update to create): %v", causesGolden, err)
	}
	got := Causes()
	sc := bufio.NewScanner(bytes.NewReader(b))
	for i := 0; sc.Scan(); i++ {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			t.Fatalf("%s: line %d is not a cause and its class", causesGolden, i+1)
		}
		if i >= len(got) || got[i].Cause != Cause(f[0]) {
			t.Fatalf("Causes()[%d] is not %q: causes are append-only (%s)", i, f[0], causesGolden)
		}
		if got[i].Class != Class(f[1]) {
			t.Errorf("cause %q is %s, was %s: a cause never changes class", f[0], got[i].Class, f[1])
		}
	}
	var want bytes.Buffer
	seen := map[Cause]bool{}
	for _, c := range got {
		if seen[c.Cause] {
			t.Errorf("cause %q listed twice", c.Cause)
		}
		seen[c.Cause] = true
		if err := ValidateCause(c.Cause); err != nil || c.Cause == "" {
			t.Errorf("cause %q: %v", c.Cause, err)
		}
		if c.Class != Transient && c.Class != Systemic || c.Description == "" {
			t.Errorf("cause %+v: want a class and a description", c)
		}
		fmt.Fprintln(&want, c.Cause, c.Class)
	}
	if *update && !t.Failed() {
		if err := os.WriteFile(causesGolden, want.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		b = want.Bytes()
	}
	if !bytes.Equal(b, want.Bytes()) {
		t.Errorf("%s =\n%s\nwant\n%s(run go test -run TestCausesAppendOnly -update after appending)", causesGolden, b, want.Bytes())
	}
}

// TestCauseOf checks that every error code has a listed cause, and that the codes an agent
// retries by itself are transient while refusals a person must look at are systemic.
func TestCauseOf(t *testing.T) {
	tests := []struct {
		code Code
		want Cause
	}{
		{CodeBusy, CauseHubBusy},
		{CodeRateLimited, CauseRateLimited},
		{CodeQuotaExceeded, CauseRateLimited},
		{CodeInternal, CauseHubInternal},
		{CodePolicyDenied, CausePolicyRefused},
		{CodeWeakKey, CauseBadRequest},
		{CodeBadCSR, CauseBadRequest},
		{CodeUnauthorized, CauseUnauthorized},
		{CodeRevoked, CauseRevoked},
		{CodeExpired, CauseExpired},
		{CodeUnknownRequest, CauseCommitRefused},
		{"from_the_future", CauseUnknown},
	}
	for _, tt := range tests {
		if got := CauseOf(tt.code); got != tt.want {
			t.Errorf("CauseOf(%q) = %q, want %q", tt.code, got, tt.want)
		}
	}
	for _, c := range Codes() {
		cause := CauseOf(c.Code)
		if _, ok := cause.Info(); !ok {
			t.Errorf("CauseOf(%q) = %q, not a listed cause", c.Code, cause)
		}
		if c.Code == CodeBusy || c.Code == CodeRateLimited || c.Code == CodeInternal {
			if cause.Class() != Transient {
				t.Errorf("CauseOf(%q).Class() = %s, want transient: the agent retries it", c.Code, cause.Class())
			}
		}
		if !c.Retry && c.Code != CodeNotFound && cause.Class() != Systemic {
			t.Errorf("CauseOf(%q).Class() = %s, want systemic: retrying does not help", c.Code, cause.Class())
		}
	}
	if info, ok := Cause("from_the_future").Info(); ok || info.Class != Systemic {
		t.Errorf("unknown cause Info() = %+v, %v; want not known, systemic", info, ok)
	}
}

func TestValidateCause(t *testing.T) {
	tests := []struct {
		c  Cause
		ok bool
	}{
		{"", true},
		{CauseNetwork, true},
		{"a_newer_cause2", true},
		{"Network", false},
		{"net work", false},
		{"network\n", false},
		{Cause(strings.Repeat("a", 33)), false},
	}
	for _, tt := range tests {
		if err := ValidateCause(tt.c); (err == nil) != tt.ok {
			t.Errorf("ValidateCause(%q) = %v, want ok %v", tt.c, err, tt.ok)
		}
	}
}

// TestREADMEListsCauses keeps the specification's table of causes complete.
func TestREADMEListsCauses(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range Causes() {
		row := fmt.Sprintf("| `%s` | %s |", c.Cause, c.Class)
		if !bytes.Contains(readme, []byte(row)) {
			t.Errorf("README.md has no row %q", row)
		}
	}
}
