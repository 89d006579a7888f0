package policy

import (
	"errors"
	"strings"
	"testing"
)

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
