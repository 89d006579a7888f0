package log

import (
	"bytes"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"
)

type word string

type pair struct{ serial string }

func (p pair) LogValue() Value {
	if p.serial == "" {
		return GroupValue()
	}
	return GroupValue(String("serial", p.serial), Time("not_after", time.Date(2027, 1, 2, 3, 4, 5, 6e6, time.UTC)))
}

func (p pair) slogValue() slog.Value {
	if p.serial == "" {
		return slog.GroupValue()
	}
	return slog.GroupValue(slog.String("serial", p.serial), slog.Time("not_after", time.Date(2027, 1, 2, 3, 4, 5, 6e6, time.UTC)))
}

type slogPair struct{ p pair }

func (s slogPair) LogValue() slog.Value { return s.p.slogValue() }

var stamp = regexp.MustCompile(`^time=\S+ |^\{"time":"[^"]*",`)

// TestSameLinesAsSlog checks that every line is the line slog's handlers write, the time
// of the line aside.
func TestSameLinesAsSlog(t *testing.T) {
	when := time.Date(2026, 12, 3, 13, 25, 18, 123456789, time.FixedZone("", 3600))
	cases := []struct {
		msg  string
		args []any
	}{
		{"agent running", []any{"hub", "mqtts://hearth.local:8883", "version", "0.1.0"}},
		{"renewal failed", []any{"err", errors.New(`hub: connect: dial tcp: "refused"`), "retry_in", 90 * time.Second}},
		{"quoting", []any{"empty", "", "space", "a b", "eq", "a=b", "quote", `a"b`, "nl", "a\nb", "utf8", "é", "bad", "\xff", "html", "<a&b>", "tab", "a\tb", "ls", "a\u2028b", "ctl", "\x01\x7f", "bs", "\b\f"}},
		{"numbers", []any{"n", 42, "neg", -7, "u", uint64(18446744073709551615), "f", 0.25, "skew_s", -3.5e-9, "big", 1e300, "ok", true, "no", false}},
		{"times", []any{"at", when, "utc", when.UTC(), "zero", time.Time{}}},
		{"types", []any{"action", word("renew"), "list", []string{"a", "b"}}},
		{"pair", []any{"pair", pair{"2a"}, "empty", pair{}}},
		{"bad", []any{"key-without-value"}},
		{"bad", []any{42, "x"}},
		{"with \"quotes\" and spaces", nil},
	}
	for _, format := range []Format{Text, JSON} {
		var got, want bytes.Buffer
		l := New(&got, format, LevelDebug).With("device", "thermostat-hall")
		opts := &slog.HandlerOptions{Level: slog.LevelDebug}
		var h slog.Handler = slog.NewTextHandler(&want, opts)
		if format == JSON {
			h = slog.NewJSONHandler(&want, opts)
		}
		s := slog.New(h).With("device", "thermostat-hall")
		for i, c := range cases {
			sargs := make([]any, len(c.args))
			for j, a := range c.args {
				if p, ok := a.(pair); ok {
					a = slogPair{p}
				}
				sargs[j] = a
			}
			switch i % 4 {
			case 0:
				l.Info(c.msg, c.args...)
				s.Info(c.msg, sargs...)
			case 1:
				l.Warn(c.msg, c.args...)
				s.Warn(c.msg, sargs...)
			case 2:
				l.Error(c.msg, c.args...)
				s.Error(c.msg, sargs...)
			case 3:
				l.Debug(c.msg, c.args...)
				s.Debug(c.msg, sargs...)
			}
		}
		gotLines, wantLines := strings.Split(got.String(), "\n"), strings.Split(want.String(), "\n")
		if len(gotLines) != len(wantLines) {
			t.Fatalf("format %d: %d lines, slog %d:\n%s\n%s", format, len(gotLines), len(wantLines), got.String(), want.String())
		}
		for i := range gotLines {
			g, w := stamp.ReplaceAllString(gotLines[i], ""), stamp.ReplaceAllString(wantLines[i], "")
			if g != w {
				t.Errorf("format %d line %d:\n got %s\nwant %s", format, i, g, w)
			}
		}
		if !stamp.MatchString(got.String()) {
			t.Errorf("format %d: no time at the start of %q", format, got.String())
		}
	}
}

// TestLineTime checks the line's own time stamp format against slog's.
func TestLineTime(t *testing.T) {
	when := time.Date(2026, 12, 3, 13, 25, 18, 120056789, time.FixedZone("", -7*3600))
	var want bytes.Buffer
	slog.New(slog.NewTextHandler(&want, nil)).Info("x", "t", when)
	got := appendTextAttr(nil, "", Time("t", when))
	if w := " t=" + strings.TrimSpace(strings.SplitN(want.String(), " t=", 2)[1]); string(got) != w {
		t.Errorf("text time = %q, want %q", got, w)
	}
	if got := string(appendJSONTime(nil, when)); got != `"2026-12-03T13:25:18.120056789-07:00"` {
		t.Errorf("JSON time = %s", got)
	}
}

func TestLevels(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Level
		name string
	}{
		{"debug", LevelDebug, "DEBUG"}, {"INFO", LevelInfo, "INFO"}, {"Warn", LevelWarn, "WARN"},
		{"error", LevelError, "ERROR"}, {"info+2", LevelInfo + 2, "INFO+2"}, {"warn-1", LevelInfo + 3, "INFO+3"},
	} {
		var l Level
		var s slog.Level
		if err := l.UnmarshalText([]byte(tc.in)); err != nil || l != tc.want || l.String() != tc.name {
			t.Errorf("level %q = %v (%s), %v; want %v (%s)", tc.in, int(l), l, err, tc.want, tc.name)
		}
		if err := s.UnmarshalText([]byte(tc.in)); err != nil || int(s) != int(l) || s.String() != l.String() {
			t.Errorf("level %q: slog reads %v", tc.in, s)
		}
	}
	var l Level
	if err := l.UnmarshalText([]byte("loud")); !errors.Is(err, ErrLevel) {
		t.Errorf("level loud: %v, want ErrLevel", err)
	}
	var b bytes.Buffer
	New(&b, Text, LevelWarn).Info("hidden")
	Discard().With("k", "v").Error("nothing")
	var none *Logger
	none.With("k", "v").Error("nothing")
	if Discard() == nil {
		t.Error("Discard() is nil, which device.Config would replace by Default")
	}
	if b.Len() != 0 {
		t.Errorf("an info line at warn level: %q", b.String())
	}
}
