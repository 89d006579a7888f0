package jsoncodec

import (
	"bytes"
	"encoding"
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxDepth is the deepest nesting of arrays and objects Unmarshal accepts, as encoding/json.
const MaxDepth = 10000

// ErrSyntax is wrapped by every error for input that is not JSON.
var ErrSyntax = errors.New("jsoncodec: invalid JSON")

// ErrType is wrapped by the error for a JSON value that does not fit the Go value.
var ErrType = errors.New("jsoncodec: cannot unmarshal")

// Unmarshal parses the JSON data into the value v points to, accepting and refusing what
// json.Unmarshal accepts and refuses. After an error, v may be partly filled.
func Unmarshal(data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("%w: Unmarshal needs a non-nil pointer, not %T", ErrType, v)
	}
	if !Valid(data) {
		// As encoding/json, check the whole input before changing anything.
		_, err := (&decoder{data: data}).checkAll()
		return err
	}
	d := &decoder{data: data}
	if err := d.value(rv.Elem()); err != nil {
		return err
	}
	return nil
}

// Valid reports whether data is one JSON value, with space around it only.
func Valid(data []byte) bool {
	_, err := (&decoder{data: data}).checkAll()
	return err == nil
}

type decoder struct {
	data  []byte
	pos   int
	depth int
}

func (d *decoder) checkAll() (int, error) {
	if err := d.skip(); err != nil {
		return 0, err
	}
	d.space()
	if d.pos != len(d.data) {
		return 0, d.syntax("invalid character %q after top-level value", d.data[d.pos])
	}
	return d.pos, nil
}

func (d *decoder) syntax(format string, args ...any) error {
	if d.pos >= len(d.data) {
		return fmt.Errorf("%w: unexpected end of JSON input", ErrSyntax)
	}
	return fmt.Errorf("%w: offset %d: %s", ErrSyntax, d.pos, fmt.Sprintf(format, args...))
}

func (d *decoder) space() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// peek returns the next significant byte, or 0 at the end.
func (d *decoder) peek() byte {
	d.space()
	if d.pos < len(d.data) {
		return d.data[d.pos]
	}
	return 0
}

// skip parses one value without storing it.
func (d *decoder) skip() error {
	switch c := d.peek(); c {
	case '{', '[':
		d.depth++
		if d.depth > MaxDepth {
			return d.syntax("exceeded max depth")
		}
		d.pos++
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		if d.peek() == end {
			d.pos++
			d.depth--
			return nil
		}
		for {
			if c == '{' {
				if d.peek() != '"' {
					return d.syntax("expected a member name")
				}
				if _, err := d.scanString(false); err != nil {
					return err
				}
				if d.peek() != ':' {
					return d.syntax("expected ':' after a member name")
				}
				d.pos++
			}
			if err := d.skip(); err != nil {
				return err
			}
			switch d.peek() {
			case ',':
				d.pos++
			case end:
				d.pos++
				d.depth--
				return nil
			default:
				return d.syntax("expected ',' or %q", end)
			}
		}
	case '"':
		_, err := d.scanString(false)
		return err
	case 't':
		return d.literal("true")
	case 'f':
		return d.literal("false")
	case 'n':
		return d.literal("null")
	case 0:
		return d.syntax("unexpected end of JSON input")
	default:
		_, err := d.number()
		return err
	}
}

func (d *decoder) literal(word string) error {
	if !bytes.HasPrefix(d.data[d.pos:], []byte(word)) {
		return d.syntax("invalid literal")
	}
	d.pos += len(word)
	return nil
}

// number parses a number and returns its text.
func (d *decoder) number() ([]byte, error) {
	start, p := d.pos, d.pos
	digits := func() int {
		n := 0
		for p < len(d.data) && d.data[p] >= '0' && d.data[p] <= '9' {
			p++
			n++
		}
		return n
	}
	if p < len(d.data) && d.data[p] == '-' {
		p++
	}
	switch {
	case p < len(d.data) && d.data[p] == '0':
		p++
	case digits() == 0:
		d.pos = p
		return nil, d.syntax("invalid number")
	}
	if p < len(d.data) && d.data[p] == '.' {
		p++
		if digits() == 0 {
			d.pos = p
			return nil, d.syntax("invalid number")
		}
	}
	if p < len(d.data) && (d.data[p] == 'e' || d.data[p] == 'E') {
		p++
		if p < len(d.data) && (d.data[p] == '+' || d.data[p] == '-') {
			p++
		}
		if digits() == 0 {
			d.pos = p
			return nil, d.syntax("invalid number")
		}
	}
	d.pos = p
	return d.data[start:p], nil
}

// str parses a string and returns its content, invalid UTF-8 replaced by U+FFFD.
func (d *decoder) str() (string, error) { return d.scanString(true) }

// scanString parses a string, and returns its content when keep is set.
func (d *decoder) scanString(keep bool) (string, error) {
	d.pos++ // the opening quote
	start := d.pos
	var b []byte // only when the string needs rewriting
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			s := d.data[start:d.pos]
			d.pos++
			if !keep {
				return "", nil
			}
			if b == nil {
				return string(s), nil
			}
			return string(append(b, s...)), nil
		case c < 0x20:
			return "", d.syntax("control character in string")
		case c == '\\':
			b = append(b, d.data[start:d.pos]...)
			if d.pos+1 >= len(d.data) {
				return "", d.syntax("unexpected end of JSON input")
			}
			e := d.data[d.pos+1]
			d.pos += 2
			switch e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r, ok := d.hex4()
				if !ok {
					return "", d.syntax("invalid \\u escape")
				}
				if utf16.IsSurrogate(r) {
					r2 := rune(-1)
					if d.pos+1 < len(d.data) && d.data[d.pos] == '\\' && d.data[d.pos+1] == 'u' {
						save := d.pos
						d.pos += 2
						var ok2 bool
						if r2, ok2 = d.hex4(); !ok2 {
							return "", d.syntax("invalid \\u escape")
						}
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							r, r2 = dec, -1
						} else {
							d.pos = save // the second escape stands on its own
							r2 = -1
						}
					}
					if utf16.IsSurrogate(r) {
						r = utf8.RuneError
					}
				}
				b = utf8.AppendRune(b, r)
			default:
				return "", d.syntax("invalid escape")
			}
			start = d.pos
		case c < utf8.RuneSelf:
			d.pos++
		default:
			r, size := utf8.DecodeRune(d.data[d.pos:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, d.data[start:d.pos]...)
				b = append(b, "\ufffd"...)
				d.pos++
				start = d.pos
				continue
			}
			d.pos += size
		}
	}
	return "", d.syntax("unexpected end of JSON input")
}

func (d *decoder) hex4() (rune, bool) {
	if d.pos+4 > len(d.data) {
		return 0, false
	}
	var r rune
	for _, c := range d.data[d.pos : d.pos+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	d.pos += 4
	return r, true
}

func typeError(what string, t reflect.Type) error {
	return fmt.Errorf("%w: %s into Go value of type %s", ErrType, what, t)
}

// value parses one value into v. The input was checked by Valid.
func (d *decoder) value(v reflect.Value) error {
	c := d.peek()
	// Methods, as encoding/json: through a pointer, allocating nil pointers on the way,
	// except that null sets a pointer to nil.
	for {
		if v.Kind() == reflect.Pointer && c == 'n' {
			break
		}
		if v.CanAddr() {
			pt := v.Addr().Type()
			if pt.Implements(unmarshalerType) {
				start := d.pos
				if err := d.skip(); err != nil {
					return err
				}
				return v.Addr().Interface().(Unmarshaler).UnmarshalJSON(bytes.Clone(d.data[start:d.pos]))
			}
			if pt.Implements(textUnmarshalerType) {
				switch c {
				case 'n':
					return d.literal("null")
				case '"':
					s, err := d.str()
					if err != nil {
						return err
					}
					return v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s))
				}
				return typeError("value", v.Type())
			}
		}
		if v.Kind() != reflect.Pointer {
			break
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		v = v.Elem()
	}
	switch c {
	case 'n':
		if err := d.literal("null"); err != nil {
			return err
		}
		switch v.Kind() {
		case reflect.Interface, reflect.Pointer, reflect.Map, reflect.Slice:
			v.SetZero()
		}
		return nil
	case 't', 'f':
		word := "true"
		if c == 'f' {
			word = "false"
		}
		if err := d.literal(word); err != nil {
			return err
		}
		switch {
		case v.Kind() == reflect.Bool:
			v.SetBool(c == 't')
		case v.Kind() == reflect.Interface && v.NumMethod() == 0:
			v.Set(reflect.ValueOf(c == 't'))
		default:
			return typeError("bool", v.Type())
		}
		return nil
	case '"':
		s, err := d.str()
		if err != nil {
			return err
		}
		switch {
		case v.Kind() == reflect.String:
			v.SetString(s)
		case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8:
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return fmt.Errorf("%w: %w", ErrType, err)
			}
			v.SetBytes(b)
		case v.Kind() == reflect.Interface && v.NumMethod() == 0:
			v.Set(reflect.ValueOf(s))
		default:
			return typeError("string", v.Type())
		}
		return nil
	case '{':
		return d.object(v)
	case '[':
		return d.array(v)
	}
	num, err := d.number()
	if err != nil {
		return err
	}
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(string(num), 10, 64)
		if err != nil || v.OverflowInt(n) {
			return typeError("number "+string(num), v.Type())
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		n, err := strconv.ParseUint(string(num), 10, 64)
		if err != nil || v.OverflowUint(n) {
			return typeError("number "+string(num), v.Type())
		}
		v.SetUint(n)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(string(num), v.Type().Bits())
		if err != nil || v.OverflowFloat(f) {
			return typeError("number "+string(num), v.Type())
		}
		v.SetFloat(f)
	case reflect.Interface:
		f, err := strconv.ParseFloat(string(num), 64)
		if err != nil || v.NumMethod() != 0 {
			return typeError("number "+string(num), v.Type())
		}
		v.Set(reflect.ValueOf(f))
	default:
		return typeError("number", v.Type())
	}
	return nil
}

func (d *decoder) object(v reflect.Value) error {
	var fields []field
	switch {
	case v.Kind() == reflect.Struct:
		fields = typeFields.of(v.Type())
	case v.Kind() == reflect.Map && v.Type().Key().Kind() == reflect.String:
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
	case v.Kind() == reflect.Interface && v.NumMethod() == 0:
		m := map[string]any{}
		mv := reflect.ValueOf(m)
		if err := d.object(mv); err != nil {
			return err
		}
		v.Set(mv)
		return nil
	default:
		return typeError("object", v.Type())
	}
	d.pos++ // {
	if d.peek() == '}' {
		d.pos++
		return nil
	}
	for {
		d.peek()
		name, err := d.str()
		if err != nil {
			return err
		}
		d.peek()
		d.pos++ // :
		if v.Kind() == reflect.Map {
			elem := reflect.New(v.Type().Elem()).Elem()
			if err := d.value(elem); err != nil {
				return err
			}
			v.SetMapIndex(reflect.ValueOf(name).Convert(v.Type().Key()), elem)
		} else if f := lookup(fields, name); f == nil {
			if err := d.skip(); err != nil {
				return err
			}
		} else {
			fv, err := fieldForSet(v, f.index)
			if err != nil {
				return err
			}
			if err := d.value(fv); err != nil {
				return err
			}
		}
		if d.peek() == ',' {
			d.pos++
			continue
		}
		d.pos++ // }
		return nil
	}
}

// lookup finds the member for name: exactly, else ignoring case, as encoding/json.
func lookup(fields []field, name string) *field {
	for i := range fields {
		if fields[i].name == name {
			return &fields[i]
		}
	}
	for i := range fields {
		if foldEqual(fields[i].name, name) {
			return &fields[i]
		}
	}
	return nil
}

func foldEqual(a, b string) bool { return bytes.EqualFold([]byte(a), []byte(b)) }

// fieldForSet follows index, allocating nil embedded pointers.
func fieldForSet(v reflect.Value, index []int) (reflect.Value, error) {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				if !v.CanSet() {
					return reflect.Value{}, fmt.Errorf("%w: embedded pointer to unexported struct %s", ErrType, v.Type().Elem())
				}
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v, nil
}

func (d *decoder) array(v reflect.Value) error {
	switch {
	case v.Kind() == reflect.Slice, v.Kind() == reflect.Array:
	case v.Kind() == reflect.Interface && v.NumMethod() == 0:
		var s []any
		sv := reflect.ValueOf(&s).Elem()
		if err := d.array(sv); err != nil {
			return err
		}
		v.Set(sv)
		return nil
	default:
		return typeError("array", v.Type())
	}
	d.pos++ // [
	n := 0
	if v.Kind() == reflect.Slice {
		v.SetLen(0)
	}
	if d.peek() != ']' {
		for {
			switch {
			case v.Kind() == reflect.Slice:
				if n >= v.Cap() {
					v.Grow(1)
				}
				v.SetLen(n + 1)
				elem := v.Index(n)
				elem.SetZero()
				if err := d.value(elem); err != nil {
					return err
				}
			case n < v.Len():
				elem := v.Index(n)
				elem.SetZero()
				if err := d.value(elem); err != nil {
					return err
				}
			default:
				if err := d.skip(); err != nil {
					return err
				}
			}
			n++
			if d.peek() == ',' {
				d.pos++
				continue
			}
			break
		}
	}
	d.pos++ // ]
	switch {
	case v.Kind() == reflect.Array:
		for i := n; i < v.Len(); i++ {
			v.Index(i).SetZero()
		}
	case v.IsNil():
		v.Set(reflect.MakeSlice(v.Type(), 0, 0))
	}
	return nil
}
