package policy

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func examplePolicy(t testing.TB) *Policy {
	t.Helper()
	p, err := Load(filepath.Join("testdata", "example.yaml"))
	if err != nil {
		t.Fatalf("Load(example.yaml) = %v", err)
	}
	return p
}

func TestClassFor(t *testing.T) {
	p := examplePolicy(t)
	tests := []struct {
		name      string
		subject   Subject
		wantClass string
		wantRule  string
	}{
		{"nothing matches", Subject{DeviceID: "plug-1", Family: "plug", Tags: []string{"kitchen"}}, "default", "classes.default"},
		{"empty subject", Subject{}, "default", "classes.default"},
		{"family", Subject{DeviceID: "cam-7", Family: "acme-cam-v3"}, "camera", "classes.camera.match.families"},
		{"tag", Subject{DeviceID: "x", Family: "plug", Tags: []string{"outdoor"}}, "camera", "classes.camera.match.tags"},
		{"tag beats family", Subject{DeviceID: "x", Family: "thermo-x", Tags: []string{"outdoor"}}, "camera", "classes.camera.match.tags"},
		{"id beats tag and family", Subject{DeviceID: "old-hub-1", Family: "acme-cam-v2", Tags: []string{"lock"}}, "legacy", "classes.legacy.match.devices"},
		{"tags of two classes: higher priority wins", Subject{DeviceID: "x", Tags: []string{"outdoor", "lock"}}, "high-risk", "classes.high-risk.match.tags"},
		{"high-risk by tag", Subject{DeviceID: "door", Family: "thermo-x", Tags: []string{"alarm"}}, "high-risk", "classes.high-risk.match.tags"},
		{"built-in tag replaced by file", Subject{DeviceID: "x", Tags: []string{"high-risk"}}, "default", "classes.default"},
		{"ids are exact", Subject{DeviceID: "OLD-HUB-1"}, "default", "classes.default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, why := p.ClassFor(tt.subject)
			if c.Name != tt.wantClass || why.Rule != tt.wantRule {
				t.Errorf("ClassFor(%+v) = %q (%s), want %q (%s)", tt.subject, c.Name, why.Rule, tt.wantClass, tt.wantRule)
			}
			if why.Text == "" || why.String() != why.Text {
				t.Errorf("ClassFor(%+v) reason %q is empty or not its String()", tt.subject, why.Text)
			}
		})
	}

	// In the default policy, the built-in high-risk class takes devices tagged
	// "high-risk".
	c, _ := Default().ClassFor(Subject{DeviceID: "lock-1", Tags: []string{"high-risk"}})
	if c.Name != HighRiskClass {
		t.Errorf("Default().ClassFor(tagged high-risk) = %q, want %q", c.Name, HighRiskClass)
	}
	// Tags of two classes of equal priority: the first in the list wins.
	two := mustParse(t, "classes:\n  - name: a\n    match: {tags: [x]}\n  - name: b\n    match: {tags: [y]}\n")
	if c, _ := two.ClassFor(Subject{Tags: []string{"y", "x"}}); c.Name != "a" {
		t.Errorf("ClassFor(tags y, x) = %q, want the first listed class %q", c.Name, "a")
	}
	// A policy without a default class (invalid) still answers.
	broken := &Policy{}
	if c, _ := broken.ClassFor(Subject{DeviceID: "x"}); c == nil || c.Name != DefaultClass {
		t.Errorf("empty Policy ClassFor = %v, want the shipped default class", c)
	}
}

func BenchmarkClassFor(b *testing.B) {
	p := examplePolicy(b)
	s := Subject{DeviceID: "plug-1", Family: "plug", Tags: []string{"kitchen", "upstairs"}}
	for b.Loop() {
		p.ClassFor(s)
	}
}

// TestClassHash: ClassHash changes with what ClassFor reads (names, order, priorities,
// match lists) and with nothing else.
func TestClassHash(t *testing.T) {
	base := examplePolicy(t)
	edit := func(f func(p *Policy)) *Policy {
		p := examplePolicy(t)
		f(p)
		return p
	}
	tests := []struct {
		name string
		p    *Policy
		same bool
	}{
		{"the same file again", examplePolicy(t), true},
		{"a lifetime", edit(func(p *Policy) { p.Classes[0].Lifetime *= 2 }), true},
		{"a window and the backdate", edit(func(p *Policy) { p.Classes[1].RenewBefore, p.Backdate = time.Hour, 0 }), true},
		{"a family added", edit(func(p *Policy) { p.Classes[1].Match.Families = append(p.Classes[1].Match.Families, "cam-x") }), false},
		{"a tag removed", edit(func(p *Policy) { p.Classes[1].Match.Tags = nil }), false},
		{"a device id", edit(func(p *Policy) { p.Classes[2].Match.Devices = []string{"old-hub-2"} }), false},
		{"a priority", edit(func(p *Policy) { p.Classes[3].Priority++ }), false},
		{"a class renamed", edit(func(p *Policy) { p.Classes[3].Name = "heating" }), false},
		{"two classes swapped", edit(func(p *Policy) { p.Classes[1], p.Classes[3] = p.Classes[3], p.Classes[1] }), false},
		{"a family moved to the tags", edit(func(p *Policy) {
			p.Classes[3].Match.Families, p.Classes[3].Match.Tags = nil, []string{"thermo-x"}
		}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.ClassHash() == base.ClassHash(); got != tt.same {
				t.Errorf("ClassHash() equal to the file's = %v, want %v (%s)", got, tt.same, tt.p.ClassHash())
			}
		})
	}
	if d := Default().ClassHash(); d == base.ClassHash() || !strings.HasPrefix(d, "classes:") {
		t.Errorf("Default().ClassHash() = %q, want another classes: hash than the file's", d)
	}
}
