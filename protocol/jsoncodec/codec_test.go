package jsoncodec

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/protocol/internal/randvalue"
)

// text is a type with text methods, as protocol.Fingerprint.
type text struct{ s string }

func (t text) MarshalText() ([]byte, error) {
	if t.s == "\x00" {
		return nil, errors.New("refused")
	}
	return []byte("T:" + t.s), nil
}

func (t *text) UnmarshalText(b []byte) error {
	s, ok := strings.CutPrefix(string(b), "T:")
	if !ok {
		return errors.New("no T: prefix")
	}
	t.s = s
	return nil
}

// raw is a json.RawMessage of its own, as protocol.RawJSON.
type raw []byte

func (r raw) MarshalJSON() ([]byte, error) {
	if r == nil {
		return []byte("null"), nil
	}
	return r, nil
}

func (r *raw) UnmarshalJSON(b []byte) error { *r = append((*r)[:0], b...); return nil }

type inner struct {
	A     string    `json:"a,omitempty"`
	Shade int       `json:"shade"` // hidden by outer's
	When  time.Time `json:"when,omitzero"`
}

type deeper struct {
	Deep   string `json:"deep"`
	Shade  int    `json:"shade"`
	Clash  string // two at the same depth: dropped
	Tagged string `json:"tagged"`
}

type other struct {
	Clash  string
	Tagged string
}

type plain struct {
	P1 string `json:"p1"`
}

type everything struct {
	inner
	*deeper
	other
	Plain   plain             `json:"plain,omitzero"`
	Shade   string            `json:"shade"`
	S       string            `json:"s"`
	SO      string            `json:"so,omitempty"`
	B       bool              `json:"b,omitempty"`
	I       int               `json:"i"`
	I8      int8              `json:"i8,omitempty"`
	I64     int64             `json:"i64"`
	U       uint              `json:"u,omitempty"`
	U16     uint16            `json:"u16"`
	F       float64           `json:"f"`
	F32     float32           `json:"f32,omitempty"`
	T       time.Time         `json:"t"`
	TZ      time.Time         `json:"tz,omitzero"`
	TP      *time.Time        `json:"tp,omitempty"`
	Bytes   []byte            `json:"bytes"`
	List    []string          `json:"list"`
	ListO   []int             `json:"list_o,omitempty"`
	Arr     [2]int            `json:"arr"`
	M       map[string]int    `json:"m"`
	MO      map[string]string `json:"mo,omitempty"`
	Ptr     *string           `json:"ptr"`
	PtrO    *inner            `json:"ptr_o,omitempty"`
	Any     any               `json:"any"`
	Text    text              `json:"text"`
	TextP   *text             `json:"text_p,omitempty"`
	Raw     raw               `json:"raw,omitempty"`
	Skipped string            `json:"-"`
	NoTag   string
	Nested  []everythingLeaf `json:"nested,omitempty"`
}

type everythingLeaf struct {
	K string            `json:"k"`
	V map[string][]byte `json:"v,omitempty"`
}

// same checks that Marshal gives json.Marshal's bytes, or an error where it errs.
func same(t *testing.T, v any) {
	t.Helper()
	want, wantErr := json.Marshal(v)
	got, err := Marshal(v)
	if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
		t.Fatalf("Marshal(%#v)\n got %s, %v\nwant %s, %v", v, got, err, want, wantErr)
	}
	wantI, _ := json.MarshalIndent(v, ">", "\t")
	gotI, _ := MarshalIndent(v, ">", "\t")
	if wantErr == nil && !bytes.Equal(gotI, wantI) {
		t.Fatalf("MarshalIndent\n got %s\nwant %s", gotI, wantI)
	}
}

func FuzzMarshal(f *testing.F) {
	f.Add(uint64(1), uint64(2))
	f.Fuzz(func(t *testing.T, a, b uint64) {
		r := rand.New(rand.NewPCG(a, b))
		var v everything
		randvalue.Fill(r, reflect.ValueOf(&v).Elem(), 0)
		if v.Raw != nil {
			v.Raw = raw([]string{`{"a":"<b>"}`, `[1, 2]`, ` "x\u2028" `, `null`, `{`}[r.IntN(5)])
		}
		same(t, v)
		same(t, &v)
		same(t, v.Nested)
		same(t, v.M)
	})
}

// decodeSame checks that Unmarshal accepts what json.Unmarshal accepts, with the same result.
func decodeSame[T any](t *testing.T, data []byte) {
	t.Helper()
	var want, got T
	wantErr := json.Unmarshal(data, &want)
	err := Unmarshal(data, &got)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("Unmarshal(%q) = %v; json.Unmarshal = %v", data, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("Unmarshal(%q)\n got %#v\nwant %#v", data, got, want)
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, s := range []string{
		`{"s":"x","i":-3,"t":"2026-01-02T03:04:05.5+01:00","bytes":"aGk=","list":[],"m":{},"any":[1,"a",null,{"b":true}]}`,
		`{"S":"case","SHADE":"x","deep":"d","a":"in","text":"T:v","text_p":"T:p","raw":{"x" : [1]},"arr":[1,2,3]}`,
		`{"f":1e400}`, `{"i8":300}`, `{"u":-1}`, `{"i":1.0}`, `{"s":"\ud800\udc00\ud800x\u00e9\uD834"}`,
		`{"ptr":null,"ptr_o":{"a":"x"},"tp":null,"nested":[{"k":"a","v":{"x":"AAEC"}}]}`,
		`[]`, `null`, `"s"`, `{"s":1}`, `{"text":"nope"}`, ` {"s":"a"} x`, "{\"s\":\"\xff\"}",
		`{"Clash":"c","Tagged":"t","tagged":"u","p1":"no","plain":{"P1":"yes"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		decodeSame[everything](t, data)
		decodeSame[[]everythingLeaf](t, data)
		decodeSame[any](t, data)
		decodeSame[map[string]*int](t, data)
		if Valid(data) != json.Valid(data) {
			t.Fatalf("Valid(%q) = %v", data, Valid(data))
		}
	})
}

func TestDepth(t *testing.T) {
	for _, n := range []int{MaxDepth - 1, MaxDepth, MaxDepth + 1} {
		data := []byte(strings.Repeat("[", n) + strings.Repeat("]", n))
		decodeSame[any](t, data)
		decodeSame[everything](t, []byte(`{"any":`+string(data)+`}`))
		decodeSame[everything](t, []byte(`{"unknown":`+string(data)+`}`))
	}
	var v any
	deep := []byte(strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1))
	if err := Unmarshal(deep, &v); !errors.Is(err, ErrSyntax) {
		t.Fatalf("Unmarshal(depth %d) = %v, want ErrSyntax", MaxDepth+1, err)
	}
}

func TestErrors(t *testing.T) {
	var v everything
	for _, tc := range []struct {
		in   string
		want error
	}{
		{`{"s":`, ErrSyntax},
		{`{"s":1}`, ErrType},
		{`{"i":"1"}`, ErrType},
		{`{"t":"yesterday"}`, nil}, // time's own error
	} {
		err := Unmarshal([]byte(tc.in), &v)
		if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("Unmarshal(%s) = %v, want %v", tc.in, err, tc.want)
		}
	}
	if _, err := Marshal(map[int]int{1: 1}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Marshal(map[int]int) = %v, want ErrUnsupported", err)
	}
	if err := Unmarshal([]byte(`{}`), v); err == nil {
		t.Error("Unmarshal into a non-pointer succeeded")
	}
}
