// Package log is the agent's structured logger: the part of log/slog's API the agent uses
// (Logger, With, Debug/Info/Warn/Error, attributes and group values, levels) writing the
// lines slog's TextHandler and JSONHandler write.
//
// It replaces log/slog in the agent for its size budget (agent/README.md, "Sizes"): log/slog
// imports encoding/json, which from Go 1.27 links encoding/json/v2 (about 0.6 MiB on mipsle);
// this package encodes values through protocol/jsoncodec instead.
package log

import (
	"encoding"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hearth-pki/hearth/protocol/jsoncodec"
)

// Level is a log level, with slog's values and names.
type Level int

// The levels, as slog's.
const (
	LevelDebug Level = -4
	LevelInfo  Level = 0
	LevelWarn  Level = 4
	LevelError Level = 8
)

// String returns the level's name as slog writes it: DEBUG, INFO, WARN, ERROR, with an
// offset such as INFO+2 between them.
func (l Level) String() string {
	name := func(base string, off Level) string {
		if off == 0 {
			return base
		}
		return fmt.Sprintf("%s%+d", base, int(off))
	}
	switch {
	case l < LevelInfo:
		return name("DEBUG", l-LevelDebug)
	case l < LevelWarn:
		return name("INFO", l-LevelInfo)
	case l < LevelError:
		return name("WARN", l-LevelWarn)
	default:
		return name("ERROR", l-LevelError)
	}
}

// ErrLevel is wrapped by UnmarshalText's error for an unknown level.
var ErrLevel = errors.New("unknown level name")

// UnmarshalText parses a level as slog does: a name in any case (debug, info, warn, error),
// optionally followed by an offset (warn+2).
func (l *Level) UnmarshalText(b []byte) error {
	s := string(b)
	name, offset := s, 0
	if i := strings.IndexAny(s, "+-"); i >= 0 {
		var err error
		name = s[:i]
		if offset, err = strconv.Atoi(s[i:]); err != nil {
			return fmt.Errorf("level %q: %w", s, err)
		}
	}
	switch strings.ToUpper(name) {
	case "DEBUG":
		*l = LevelDebug
	case "INFO":
		*l = LevelInfo
	case "WARN":
		*l = LevelWarn
	case "ERROR":
		*l = LevelError
	default:
		return fmt.Errorf("level %q: %w", s, ErrLevel)
	}
	*l += Level(offset)
	return nil
}

// Format is a line format.
type Format int

const (
	// Text is slog's TextHandler format: time=… level=INFO msg=… key=value.
	Text Format = iota
	// JSON is slog's JSONHandler format: one JSON object a line.
	JSON
)

// Logger writes log lines. Its methods are safe for concurrent use; a nil *Logger discards
// everything.
type Logger struct {
	out    *output
	min    Level
	format Format
	attrs  []byte // preformatted by With
}

// output serialises the lines of a logger and of those With derived from it.
type output struct {
	mu sync.Mutex
	w  io.Writer
}

// New returns a logger writing lines of format f at level min and above to w.
func New(w io.Writer, f Format, min Level) *Logger {
	return &Logger{out: &output{w: w}, min: min, format: f}
}

// Default returns a logger of text lines at info level on standard error, for callers that
// configure none.
func Default() *Logger { return New(os.Stderr, Text, LevelInfo) }

// Discard returns a logger that writes nothing. It is not nil, so that configurations which
// replace a nil logger by Default keep it.
func Discard() *Logger { return &Logger{} }

// With returns a logger that adds args (as for Info) to every line.
func (l *Logger) With(args ...any) *Logger {
	if l == nil || l.out == nil {
		return l
	}
	c := *l
	c.attrs = l.appendAttrs(append([]byte(nil), l.attrs...), args)
	return &c
}

// Enabled reports whether the logger writes lines of level.
func (l *Logger) Enabled(level Level) bool { return l != nil && l.out != nil && level >= l.min }

// Debug logs msg at debug level with args: alternating keys and values, or Attrs.
func (l *Logger) Debug(msg string, args ...any) { l.log(LevelDebug, msg, args) }

// Info logs msg at info level.
func (l *Logger) Info(msg string, args ...any) { l.log(LevelInfo, msg, args) }

// Warn logs msg at warn level.
func (l *Logger) Warn(msg string, args ...any) { l.log(LevelWarn, msg, args) }

// Error logs msg at error level.
func (l *Logger) Error(msg string, args ...any) { l.log(LevelError, msg, args) }

func (l *Logger) log(level Level, msg string, args []any) {
	if !l.Enabled(level) {
		return
	}
	now := time.Now()
	var b []byte
	if l.format == JSON {
		b = append(b, `{"time":`...)
		b = appendJSONTime(b, now)
		b = append(b, `,"level":`...)
		b = jsoncodec.AppendString(b, level.String(), false)
		b = append(b, `,"msg":`...)
		b = jsoncodec.AppendString(b, msg, false)
	} else {
		b = append(b, "time="...)
		b = appendRFC3339Millis(b, now)
		b = append(b, " level="...)
		b = append(b, level.String()...)
		b = append(b, " msg="...)
		b = appendTextString(b, msg)
	}
	b = append(b, l.attrs...)
	b = l.appendAttrs(b, args)
	if l.format == JSON {
		b = append(b, '}')
	}
	b = append(b, '\n')
	l.out.mu.Lock()
	defer l.out.mu.Unlock()
	_, _ = l.out.w.Write(b)
}

// appendAttrs appends args as attributes, each preceded by its separator.
func (l *Logger) appendAttrs(b []byte, args []any) []byte {
	for len(args) > 0 {
		var a Attr
		a, args = argsToAttr(args)
		if l.format == JSON {
			b = appendJSONAttr(b, a)
		} else {
			b = appendTextAttr(b, "", a)
		}
	}
	return b
}

// argsToAttr takes one attribute off args, as slog: a key and its value, an Attr, or a
// value without a key under !BADKEY.
func argsToAttr(args []any) (Attr, []any) {
	switch x := args[0].(type) {
	case string:
		if len(args) == 1 {
			return String("!BADKEY", x), nil
		}
		return Any(x, args[1]), args[2:]
	case Attr:
		return x, args[1:]
	default:
		return Any("!BADKEY", x), args[1:]
	}
}

// Kind is the kind of a Value.
type Kind int

// The kinds of values.
const (
	KindAny Kind = iota
	KindBool
	KindDuration
	KindFloat64
	KindInt64
	KindString
	KindTime
	KindUint64
	KindGroup
)

// Value is an attribute's value, as slog.Value.
type Value struct {
	kind  Kind
	s     string
	n     uint64
	f     float64
	t     time.Time
	group []Attr
	any   any
}

// Attr is a key and a value.
type Attr struct {
	Key   string
	Value Value
}

// LogValuer is implemented by values that log as another value, as slog.LogValuer.
type LogValuer interface {
	LogValue() Value
}

// StringValue returns a string Value.
func StringValue(s string) Value { return Value{kind: KindString, s: s} }

// TimeValue returns a time Value.
func TimeValue(t time.Time) Value { return Value{kind: KindTime, t: t} }

// GroupValue returns a Value of attributes, logged as key.name=… in text and as an object
// in JSON; an empty group is left out.
func GroupValue(as ...Attr) Value { return Value{kind: KindGroup, group: as} }

// AnyValue returns v as a Value of the kind slog.AnyValue gives it.
func AnyValue(v any) Value {
	switch x := v.(type) {
	case string:
		return StringValue(x)
	case int:
		return Value{kind: KindInt64, n: uint64(x)}
	case int64:
		return Value{kind: KindInt64, n: uint64(x)}
	case int32:
		return Value{kind: KindInt64, n: uint64(x)}
	case uint:
		return Value{kind: KindUint64, n: uint64(x)}
	case uint64:
		return Value{kind: KindUint64, n: x}
	case uint32:
		return Value{kind: KindUint64, n: uint64(x)}
	case float64:
		return Value{kind: KindFloat64, f: x}
	case float32:
		return Value{kind: KindFloat64, f: float64(x)}
	case bool:
		var n uint64
		if x {
			n = 1
		}
		return Value{kind: KindBool, n: n}
	case time.Duration:
		return Value{kind: KindDuration, n: uint64(x)}
	case time.Time:
		return TimeValue(x)
	case Value:
		return x
	case []Attr:
		return GroupValue(x...)
	}
	return Value{kind: KindAny, any: v}
}

// String returns a string attribute.
func String(key, v string) Attr { return Attr{key, StringValue(v)} }

// Time returns a time attribute.
func Time(key string, t time.Time) Attr { return Attr{key, TimeValue(t)} }

// Int returns an integer attribute.
func Int(key string, n int) Attr { return Attr{key, AnyValue(n)} }

// Bool returns a boolean attribute.
func Bool(key string, v bool) Attr { return Attr{key, AnyValue(v)} }

// Any returns an attribute of v's kind.
func Any(key string, v any) Attr { return Attr{key, AnyValue(v)} }

// Group returns a group attribute of args (as for Info).
func Group(key string, args ...any) Attr {
	var as []Attr
	for len(args) > 0 {
		var a Attr
		a, args = argsToAttr(args)
		as = append(as, a)
	}
	return Attr{key, GroupValue(as...)}
}

// resolve replaces a LogValuer by its value, as slog does (a bounded number of times).
func (v Value) resolve() Value {
	for range 100 {
		lv, ok := v.any.(LogValuer)
		if v.kind != KindAny || !ok {
			return v
		}
		v = lv.LogValue()
	}
	return StringValue("LogValue called too many times")
}

func appendTextAttr(b []byte, prefix string, a Attr) []byte {
	v := a.Value.resolve()
	if v.kind == KindGroup {
		if len(v.group) == 0 {
			return b
		}
		if a.Key != "" {
			prefix += a.Key + "."
		}
		for _, g := range v.group {
			b = appendTextAttr(b, prefix, g)
		}
		return b
	}
	if a.Key == "" && v.kind == KindAny && v.any == nil {
		return b
	}
	b = append(b, ' ')
	b = appendTextString(b, prefix+a.Key)
	b = append(b, '=')
	switch v.kind {
	case KindString:
		return appendTextString(b, v.s)
	case KindTime:
		return appendRFC3339Millis(b, v.t)
	case KindAny:
		if tm, ok := v.any.(encoding.TextMarshaler); ok {
			if t, err := tm.MarshalText(); err == nil {
				return appendTextString(b, string(t))
			}
		}
		if bs, ok := v.any.([]byte); ok {
			return strconv.AppendQuote(b, string(bs))
		}
		return appendTextString(b, fmt.Sprintf("%+v", v.any))
	}
	return v.appendScalar(b)
}

// appendScalar appends a bool, number or duration as slog's text handler writes it.
func (v Value) appendScalar(b []byte) []byte {
	switch v.kind {
	case KindBool:
		return strconv.AppendBool(b, v.n == 1)
	case KindDuration:
		return append(b, time.Duration(v.n).String()...)
	case KindFloat64:
		return strconv.AppendFloat(b, v.f, 'g', -1, 64)
	case KindInt64:
		return strconv.AppendInt(b, int64(v.n), 10)
	case KindUint64:
		return strconv.AppendUint(b, v.n, 10)
	}
	return b
}

func appendJSONAttr(b []byte, a Attr) []byte {
	v := a.Value.resolve()
	if v.kind == KindGroup {
		if len(v.group) == 0 {
			return b
		}
		if a.Key == "" {
			for _, g := range v.group {
				b = appendJSONAttr(b, g)
			}
			return b
		}
		b = append(b, ',')
		b = jsoncodec.AppendString(b, a.Key, false)
		b = append(b, ":{"...)
		start := len(b)
		for _, g := range v.group {
			b = appendJSONAttr(b, g)
		}
		if len(b) > start && b[start] == ',' {
			b = append(b[:start], b[start+1:]...)
		}
		return append(b, '}')
	}
	if a.Key == "" && v.kind == KindAny && v.any == nil {
		return b
	}
	b = append(b, ',')
	b = jsoncodec.AppendString(b, a.Key, false)
	b = append(b, ':')
	switch v.kind {
	case KindString:
		return jsoncodec.AppendString(b, v.s, false)
	case KindTime:
		return appendJSONTime(b, v.t)
	case KindDuration:
		return strconv.AppendInt(b, int64(v.n), 10)
	case KindFloat64:
		return appendJSONAny(b, v.f) // as encoding/json formats it
	case KindAny:
		return appendJSONAny(b, v.any)
	}
	return v.appendScalar(b)
}

// appendJSONAny writes an error as its message and other values as JSON.
func appendJSONAny(b []byte, x any) []byte {
	if _, ok := x.(jsoncodec.Marshaler); !ok {
		if err, ok := x.(error); ok {
			return jsoncodec.AppendString(b, err.Error(), false)
		}
	}
	if rv := reflect.ValueOf(x); rv.Kind() == reflect.String && !rv.Type().Implements(reflect.TypeFor[encoding.TextMarshaler]()) {
		return jsoncodec.AppendString(b, rv.String(), false) // a named string type, without HTML escapes as slog
	}
	j, err := jsoncodec.Marshal(x)
	if err != nil {
		return jsoncodec.AppendString(b, "!ERROR:"+err.Error(), false)
	}
	return append(b, j...)
}

// appendRFC3339Millis writes t as slog's text handler: RFC 3339 with milliseconds.
func appendRFC3339Millis(b []byte, t time.Time) []byte {
	const prefixLen = len("2006-01-02T15:04:05.000")
	n := len(b)
	t = t.Truncate(time.Millisecond).Add(time.Millisecond / 10)
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b[:n+prefixLen], b[n+prefixLen+1:]...) // drop the fourth digit
}

func appendJSONTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.Round(0).AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendTextString writes s bare, or quoted when slog's text handler quotes it.
func appendTextString(b []byte, s string) []byte {
	if needsQuoting(s) {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}

func needsQuoting(s string) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c == ' ' || c == '=' || c == '"' || c < 0x20 {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}
