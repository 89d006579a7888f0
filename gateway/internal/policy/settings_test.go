package policy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestParseBackdate pins that an unset backdate is the default minute and that every value
// written, 0s included, is the one used: 0s means no backdate (issue 9: it used to become a
// minute in the CA, the zero value standing for "default").
func TestParseBackdate(t *testing.T) {
	tests := []struct {
		name, text string
		want       time.Duration
		wantErr    string
	}{
		{name: "unset", text: "classes: []\n", want: time.Minute},
		{name: "no value", text: "backdate:\n", want: time.Minute},
		{name: "zero", text: "backdate: 0s\n", want: 0},
		{name: "bare zero", text: "backdate: 0\n", want: 0},
		{name: "seconds", text: "backdate: 30s\n", want: 30 * time.Second},
		{name: "an hour", text: "backdate: 1h\n", want: time.Hour},
		{name: "negative", text: "backdate: -1s\n", wantErr: "backdate: -1s must be between 0s and 1h"},
		{name: "too long", text: "backdate: 61m\n", wantErr: "backdate: 1h1m must be between 0s and 1h"},
		{name: "not a duration", text: "backdate: soon\n", wantErr: `backdate: "soon" is not a duration`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.text))
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) = %v, want an invalid-policy error containing %q", tt.text, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q) = %v", tt.text, err)
			}
			if p.Backdate != tt.want {
				t.Errorf("Parse(%q).Backdate = %v, want %v", tt.text, p.Backdate, tt.want)
			}
			// What Admit hands the CA: not-before exactly Backdate before the signing second.
			now := time.Date(2026, 5, 1, 10, 0, 0, 500, time.UTC)
			d := p.Admit(Subject{DeviceID: "plug"}, CSRInfo{KeyAlgorithm: KeyP256, Reason: CSREnroll}, now)
			if !d.Allowed() {
				t.Fatalf("Admit() refused: %v", d.Refusal)
			}
			if got, want := d.Profile.NotBefore, now.Truncate(time.Second).Add(-tt.want); !got.Equal(want) {
				t.Errorf("Admit().Profile.NotBefore = %v, want %v", got, want)
			}
			// The canonical form keeps the value, 0s included.
			out, err := p.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if again := mustParse(t, string(out)); again.Backdate != tt.want {
				t.Errorf("Parse(Marshal()).Backdate = %v, want %v", again.Backdate, tt.want)
			}
		})
	}
}

// TestParseVerify pins the verify setting: reconnect (or unset) is accepted, local is refused
// with the reason, anything else is not a mode.
func TestParseVerify(t *testing.T) {
	class := func(v string) string { return "classes:\n  - name: default\n    verify: " + v + "\n" }
	tests := []struct {
		name, text string
		wantErr    string
	}{
		{name: "unset", text: "classes:\n  - name: default\n"},
		{name: "no value", text: class("")},
		{name: "reconnect", text: class("reconnect")},
		{name: "reconnect on another class", text: "classes:\n  - name: cam\n    match: {tags: [cam]}\n    verify: reconnect\n"},
		{name: "local", text: class("local"), wantErr: "classes[0].verify: local is not supported: a renewed certificate becomes active only when the device reconnects presenting it"},
		{name: "local on another class", text: "classes:\n  - name: cam\n    match: {tags: [cam]}\n    verify: local\n", wantErr: "classes[0].verify: local is not supported"},
		{name: "unknown", text: class("maybe"), wantErr: `classes[0].verify: "maybe" is not a verify mode (the only mode is reconnect)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.text))
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) = %v, want an invalid-policy error containing %q", tt.text, err, tt.wantErr)
				}
				if fes := FieldErrors(err); len(fes) != 1 || fes[0].Line != 3 && fes[0].Line != 4 {
					t.Errorf("Parse(%q) field errors = %v, want one with the line of the setting", tt.text, fes)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q) = %v", tt.text, err)
			}
			for _, c := range p.Classes {
				if c.Verify != VerifyReconnect {
					t.Errorf("Parse(%q): class %s verify = %q, want reconnect", tt.text, c.Name, c.Verify)
				}
			}
		})
	}
	// A Policy built in code is held to the same rule.
	p := Default()
	p.Classes[0].Verify = "local"
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "local is not supported") {
		t.Errorf("Validate() of a class with verify local = %v, want refused", err)
	}
}
