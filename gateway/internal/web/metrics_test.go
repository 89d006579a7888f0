package web

import (
	"bytes"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites the file with -update.
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
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run go test -update if the change is meant):\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

func TestMetricsGolden(t *testing.T) {
	f := newFixture(t, nil)
	resp, body := f.get(t, "/metrics")
	mustStatus(t, "GET /metrics", resp, body, http.StatusOK)
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("GET /metrics Content-Type = %q", ct)
	}
	golden(t, "metrics.txt", []byte(body))
	checkExposition(t, body)
	for _, want := range []string{
		`hearth_devices{state="active"} 4`, // kitchen-plug, hall-thermostat, porch-camera, odd
		`hearth_devices_online 2`,
		`hearth_certificate_expiry_timestamp_seconds{device="hall-thermostat"} ` + strconv.FormatInt(t0.Add(3*day).Unix(), 10),
		`hearth_certificate_expiry_timestamp_seconds{device="odd\"id\\x"} `,
		"hearth_certificates_expiring 2",
		`hearth_device_problems{problem="revoked"} 1`,
		`hearth_renewal_attempts_24h{outcome="success"} 2`,
		`hearth_renewal_attempts_24h{outcome="failure"} 1`,
		`hearth_ca_expiry_timestamp_seconds{ca="root"} ` + strconv.FormatInt(f.cfg.CA.RootNotAfter.Unix(), 10),
		`hearth_build_info{version="1.2.3-test"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /metrics lacks %q", want)
		}
	}
}

func TestMetricsEscaping(t *testing.T) {
	var b bytes.Buffer
	m := metricWriter{&b}
	m.family("hearth_test", "Help with a \\ backslash\nand a new line.")
	m.sample("hearth_test", 1, "a", "quote \" backslash \\ newline \n end", "b", "")
	want := "# HELP hearth_test Help with a \\\\ backslash\\nand a new line.\n# TYPE hearth_test gauge\n" +
		`hearth_test{a="quote \" backslash \\ newline \n end",b=""} 1` + "\n"
	if b.String() != want {
		t.Errorf("escaped exposition =\n%s\nwant\n%s", b.String(), want)
	}
	checkExposition(t, b.String())
}

func TestMetricsEmptyInventory(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Online = nil; c.Now = func() time.Time { return t0.Add(48 * time.Hour) } })
	for _, id := range seededOrder {
		if _, err := f.admin.Remove(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
	_, body := f.get(t, "/metrics")
	checkExposition(t, body)
	for _, want := range []string{`hearth_devices{state="active"} 0`, "hearth_devices_online 0",
		`hearth_renewal_attempts_24h{outcome="success"} 0`} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("GET /metrics on an empty inventory lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "hearth_certificate_expiry_timestamp_seconds{") {
		t.Errorf("GET /metrics on an empty inventory has expiry series:\n%s", body)
	}
}

var (
	metricName  = `[a-zA-Z_:][a-zA-Z0-9_:]*`
	labelPair   = `[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"`
	sampleLine  = regexp.MustCompile(`^(` + metricName + `)(\{` + labelPair + `(?:,` + labelPair + `)*\})? (-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|NaN|[+-]Inf)$`)
	helpLine    = regexp.MustCompile(`^# HELP (` + metricName + `) (?:[^\\\n]|\\[\\n])*$`)
	typeLine    = regexp.MustCompile(`^# TYPE (` + metricName + `) (counter|gauge|histogram|summary|untyped)$`)
	commentLine = regexp.MustCompile(`^#`)
)

// checkExposition parses text as the Prometheus text format 0.0.4: every line is a HELP,
// TYPE or other comment, or a sample `name{labels} value` whose family was typed before it;
// no series repeats; the text ends with a line feed.
func checkExposition(t *testing.T, text string) {
	t.Helper()
	if !strings.HasSuffix(text, "\n") {
		t.Errorf("exposition does not end with a line feed")
	}
	typed := map[string]bool{}
	series := map[string]bool{}
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		switch {
		case helpLine.MatchString(line):
		case typeLine.MatchString(line):
			name := typeLine.FindStringSubmatch(line)[1]
			if typed[name] {
				t.Errorf("line %d: family %s typed twice", i+1, name)
			}
			typed[name] = true
		case strings.HasPrefix(line, "# HELP") || strings.HasPrefix(line, "# TYPE"):
			t.Errorf("line %d: malformed HELP/TYPE line %q", i+1, line)
		case commentLine.MatchString(line):
		default:
			m := sampleLine.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("line %d: %q is neither a comment nor name{labels} value", i+1, line)
				continue
			}
			if !typed[m[1]] {
				t.Errorf("line %d: sample of %s before its TYPE line", i+1, m[1])
			}
			if key := m[1] + m[2]; series[key] {
				t.Errorf("line %d: series %s repeated", i+1, key)
			} else {
				series[key] = true
			}
		}
	}
}

// unescapeLabel reverses escapeLabel, reporting false on an invalid escape.
func unescapeLabel(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\n':
			return "", false
		case c != '\\':
			b.WriteByte(c)
		case i+1 == len(s):
			return "", false
		default:
			i++
			switch s[i] {
			case '\\':
				b.WriteByte('\\')
			case '"':
				b.WriteByte('"')
			case 'n':
				b.WriteByte('\n')
			default:
				return "", false
			}
		}
	}
	return b.String(), true
}

func FuzzEscapeLabel(f *testing.F) {
	for _, s := range []string{"", "plain", `q"uote`, `back\slash`, "new\nline", `\n`, `"\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := escapeLabel(s)
		got, ok := unescapeLabel(e)
		if !ok || got != s {
			t.Fatalf("unescape(escapeLabel(%q)) = %q, %v; want the input back", s, got, ok)
		}
		var b bytes.Buffer
		metricWriter{&b}.sample("hearth_fuzz", 1, "l", s)
		if !sampleLine.MatchString(strings.TrimSuffix(b.String(), "\n")) || strings.Count(b.String(), "\n") != 1 {
			t.Fatalf("sample with label %q = %q, not one valid line", s, b.String())
		}
	})
}
