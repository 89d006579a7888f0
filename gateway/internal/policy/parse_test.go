package policy

import (
	"bytes"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// golden compares got with testdata file name, rewriting it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run go test -update): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from golden (-want +got):\n%s", name, cmp.Diff(string(want), string(got)))
	}
}

func mustParse(t testing.TB, text string) *Policy {
	t.Helper()
	p, err := Parse([]byte(text))
	if err != nil {
		t.Fatalf("Parse(%q) = %v", text, err)
	}
	return p
}

func TestDefaultFollowsDesign(t *testing.T) {
	p := Default()
	if err := p.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	if p.Backdate != time.Minute {
		t.Errorf("Default().Backdate = %v, want 1m", p.Backdate)
	}
	d := p.class(DefaultClass)
	want := Class{
		Name:           DefaultClass,
		Keys:           []KeyRule{{Algorithm: KeyP256}, {Algorithm: KeyP384}, {Algorithm: KeyEd25519}},
		Lifetime:       30 * 24 * time.Hour,
		RenewAt:        2.0 / 3.0,
		Jitter:         0.1,
		EmergencyFloor: 0.05,
		Rekey:          true,
		Verify:         VerifyReconnect,
		Priority:       PriorityNormal,
	}
	if diff := cmp.Diff(want, *d); diff != "" {
		t.Errorf("default class (-want +got):\n%s", diff)
	}
	h := p.class(HighRiskClass)
	if h == nil || h.Lifetime != 7*24*time.Hour || h.Grace != 0 || h.Priority <= d.Priority || !h.Rekey {
		t.Errorf("high-risk class = %+v, want 7d, no grace, higher priority, rekey", h)
	}
}

func TestParseDefaultFile(t *testing.T) {
	p, err := Load(filepath.Join("testdata", "default.yaml"))
	if err != nil {
		t.Fatalf("Load(default.yaml) = %v", err)
	}
	if diff := cmp.Diff(Default(), p); diff != "" {
		t.Errorf("default.yaml differs from Default() (-want +got):\n%s", diff)
	}
	if p.Hash() != Default().Hash() {
		t.Errorf("default.yaml hash %s, want Default()'s %s", p.Hash(), Default().Hash())
	}
}

func TestParseEmpty(t *testing.T) {
	for _, text := range []string{"", "# only a comment\n", "~\n", "classes: []\n", "classes:\n"} {
		if p := mustParse(t, text); !cmp.Equal(p, Default()) {
			t.Errorf("Parse(%q) = %+v, want Default()", text, p)
		}
	}
}

func TestParseExampleGolden(t *testing.T) {
	p, err := Load(filepath.Join("testdata", "example.yaml"))
	if err != nil {
		t.Fatalf("Load(example.yaml) = %v", err)
	}
	out, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "example.golden.yaml", out)

	// Inheritance: unset settings come from the file's default class, a match
	// never does, and built-ins keep their own settings.
	cam := p.class("camera")
	if cam.Lifetime != 14*24*time.Hour || cam.RenewAt != 0 || cam.RenewBefore != 72*time.Hour {
		t.Errorf("camera = lifetime %v renew_at %v renew_before %v, want 14d, 0, 72h", cam.Lifetime, cam.RenewAt, cam.RenewBefore)
	}
	if hr := p.class(HighRiskClass); hr.Lifetime != 7*24*time.Hour || !cmp.Equal(hr.Match.Tags, []string{"lock", "alarm"}) {
		t.Errorf("high-risk = lifetime %v tags %v, want 7d [lock alarm]", hr.Lifetime, hr.Match.Tags)
	}
	if got := p.class(DefaultClass).Match; !cmp.Equal(got, Match{}) {
		t.Errorf("default match = %+v, want none", got)
	}
	// Re-parsing the canonical form gives the same policy.
	again, err := Parse(out)
	if err != nil {
		t.Fatalf("Parse(Marshal(example)) = %v", err)
	}
	if diff := cmp.Diff(p, again); diff != "" {
		t.Errorf("Parse(Marshal(p)) != p (-want +got):\n%s", diff)
	}
}

func TestParseErrorsGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "bad", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad policies: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Parse(data)
			if err == nil {
				t.Fatalf("Parse(%s) = %+v, want an error", name, p)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Parse(%s) error %v does not wrap ErrInvalid", name, err)
			}
			fes := FieldErrors(err)
			if len(fes) == 0 {
				t.Fatalf("Parse(%s) error %v holds no *FieldError", name, err)
			}
			golden(t, filepath.Join("bad", name+".err"), []byte(err.Error()+"\n"))
		})
	}
}

// TestParseErrorPaths pins the path and message of common mistakes, so a
// change in wording is a conscious one.
func TestParseErrorPaths(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"duration", "classes:\n  - name: a\n  - name: b\n    lifetime: 3x\n", `classes[1].lifetime: "3x" is not a duration`},
		{"unknown key", "classes:\n  - name: a\n    lifetme: 7d\n", `classes[0]: unknown key "lifetme" (allowed: name, match, keys,`},
		{"unknown top key", "clases: []\n", `unknown key "clases" (allowed: version, backdate, crl_url, classes)`},
		{"crl_url https", "crl_url: https://hub.local/crl\n", `crl_url: "https://hub.local/crl" is not an http:// URL with a host`},
		{"crl_url relative", "crl_url: /crl\n", `crl_url: "/crl" is not an http:// URL`},
		{"crl_url not a string", "crl_url: [a]\n", `crl_url: want a URL`},
		{"unknown match key", "classes:\n  - name: a\n    match: {device: [x]}\n", `classes[0].match: unknown key "device"`},
		{"key", "classes:\n  - name: default\n    keys: [p256, dsa]\n", `classes[0].keys[1]: "dsa" is not a key algorithm`},
		{"rsa bits", "classes:\n  - name: default\n    keys: [rsa1024]\n", `classes[0].keys[0]: RSA minimum of 1024 bits is not allowed (use 2048 to 16384)`},
		{"backdate", "backdate: -1m\n", `backdate: -1m must be between 0s and 1h`},
		{"built-in inherited", "classes:\n  - name: default\n    renew_before: 10d\n", `classes.high-risk.renew_before: 10d must be more than 0s and less than the lifetime, 7d (value inherited from class "default")`},
		{"jitter", "classes:\n  - name: default\n    jitter: 0.6\n", `classes[0].jitter: 0.6 must be between 0 and 0.5`},
		{"nan", "classes:\n  - name: default\n    jitter: .nan\n", `classes[0].jitter: ".nan" is not a fraction`},
		{"zero ratio", "classes:\n  - name: default\n    jitter: 1/0\n", `classes[0].jitter: "1/0" is not a fraction`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.text))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q) = %v, want an error containing %q", tt.text, err, tt.want)
			}
		})
	}
}

func TestParseReportsEveryError(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "bad", "out-of-range.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse(data)
	var paths []string
	for _, fe := range FieldErrors(err) {
		paths = append(paths, fe.Path)
		if fe.Path != "backdate" && fe.Line == 0 {
			t.Errorf("error %q has no line", fe)
		}
	}
	want := []string{"backdate", "classes[0].lifetime", "classes[0].jitter", "classes[0].grace", "classes[0].priority"}
	if diff := cmp.Diff(want, paths); diff != "" {
		t.Errorf("error paths (-want +got):\n%s", diff)
	}
}

func TestValidateInCode(t *testing.T) {
	p := Default()
	p.Classes[0].Keys = nil
	p.Classes[1].Verify = "sometimes"
	p.Classes = append(p.Classes, Class{Name: "x", Match: Match{Tags: []string{HighRiskClass}}})
	err := p.Validate()
	var paths []string
	for _, fe := range FieldErrors(err) {
		paths = append(paths, fe.Path)
	}
	for _, want := range []string{"classes[0].keys", "classes[1].verify", "classes[2].match.tags[0]", "classes[2].lifetime", "classes[2].renew_at"} {
		if !strings.Contains(strings.Join(paths, " "), want) {
			t.Errorf("Validate() paths = %v, want one %q", paths, want)
		}
	}
	p = Default()
	p.Classes = p.Classes[1:]
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), `the built-in class "default" is missing`) {
		t.Errorf("Validate() without default = %v, want missing default", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "nope.yaml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want fs.ErrNotExist", err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, bytes.Repeat([]byte("#"), MaxSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); !errors.Is(err, ErrInvalid) {
		t.Errorf("Load(too big) = %v, want ErrInvalid", err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("backdate: soon\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), `backdate: "soon" is not a duration`) {
		t.Errorf("Load(bad) = %v, want the path and the field", err)
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30d", 30 * 24 * time.Hour, true},
		{"1d12h", 36 * time.Hour, true},
		{"72h", 72 * time.Hour, true},
		{"1m", time.Minute, true},
		{"0", 0, true},
		{"0s", 0, true},
		{"3x", 0, false},
		{"30", 0, false},
		{"d", 0, false},
		{"1h2d", 0, false},
		{"-1d", 0, false},
		{"+1d", 0, false},
		{"1d-1h", 0, false},
		{"99999999d", 0, false},
		{"106751d23h47m16.854775807s", 1<<63 - 1, true},
		{"106751d23h47m16.854775808s", 0, false},
	}
	for _, tt := range tests {
		got, err := parseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if tt.ok {
			if back, err := parseDuration(formatDuration(got)); err != nil || back != got {
				t.Errorf("parseDuration(formatDuration(%v) = %q) = %v, %v", got, formatDuration(got), back, err)
			}
		}
	}
	for d, want := range map[time.Duration]string{
		720 * time.Hour: "30d", time.Hour: "1h", time.Minute: "1m", 90 * time.Second: "1m30s",
		36 * time.Hour: "1d12h", 1500 * time.Millisecond: "1.5s", 10 * time.Second: "10s", 0: "0s", -time.Minute: "-1m",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestFormatFraction(t *testing.T) {
	for x, want := range map[float64]string{2.0 / 3: "2/3", 0.05: "0.05", 0.1: "0.1", 0.66: "0.66", 1.0 / 7: "1/7", 0: "0", 0.123456789: "0.123456789"} {
		got := formatFraction(x)
		if got != want {
			t.Errorf("formatFraction(%v) = %q, want %q", x, got, want)
		}
		if back, err := parseFraction(got); err != nil || back != x {
			t.Errorf("parseFraction(%q) = %v, %v; want %v", got, back, err, x)
		}
	}
}

func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	bad, _ := filepath.Glob(filepath.Join("testdata", "bad", "*.yaml"))
	for _, s := range append(seeds, bad...) {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("classes: [{name: a, match: {tags: [x]}, lifetime: 1d1h, renew_at: 1/3, priority: 7}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if len(FieldErrors(err)) == 0 {
				t.Fatalf("Parse error %v holds no *FieldError", err)
			}
			return
		}
		out, err := p.Marshal()
		if err != nil {
			t.Fatalf("Marshal(Parse(%q)) = %v", data, err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Marshal(Parse(%q))) = %v\n%s", data, err, out)
		}
		if !cmp.Equal(p, again) {
			t.Fatalf("parse→marshal→parse changed the policy:\n%s", cmp.Diff(p, again))
		}
		if out2, _ := again.Marshal(); !bytes.Equal(out, out2) {
			t.Fatalf("Marshal not stable:\n%s\n---\n%s", out, out2)
		}
		if d := Diff(p, again); len(d) != 0 {
			t.Fatalf("Diff(p, reparsed) = %v, want none", d)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("testdata", "default.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}
