// Package randvalue fills Go values with random content for differential fuzz tests of
// the JSON codec: strings with escapes, invalid UTF-8 and HTML characters, extreme numbers,
// nil and empty slices and maps, times in several zones.
package randvalue

import (
	"math"
	"math/rand/v2"
	"reflect"
	"time"
)

// Fill sets v to a random value drawn from r: strings with escapes, invalid UTF-8 and HTML
// characters, extreme numbers, nil and empty slices and maps, times in several zones.
func Fill(r *rand.Rand, v reflect.Value, depth int) {
	if !v.CanSet() {
		return
	}
	if v.Type() == reflect.TypeFor[time.Time]() {
		zones := []*time.Location{time.UTC, time.FixedZone("", 3600+1800), time.FixedZone("X", -7*3600)}
		var t time.Time
		switch r.IntN(4) {
		case 0: // zero
		case 1:
			t = time.Unix(r.Int64N(1<<34), r.Int64N(1e9)).In(zones[r.IntN(len(zones))])
		default:
			t = time.Unix(r.Int64N(1<<31), 0).UTC()
		}
		v.Set(reflect.ValueOf(t))
		return
	}
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 0)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n := []int64{0, 1, -1, math.MaxInt64, math.MinInt64, r.Int64(), r.Int64N(1000)}[r.IntN(7)]
		v.SetInt(n >> (64 - v.Type().Bits()))
		if v.Type().Bits() == 64 {
			v.SetInt(n)
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(r.Uint64() >> (64 - v.Type().Bits()) >> r.IntN(64))
	case reflect.Float32, reflect.Float64:
		f := []float64{0, 1e-7, 1e21, 123.456, -0.5, 1e300, 5e-324, r.NormFloat64() * 1e6, float64(r.Int64N(1e6)) / 8}[r.IntN(9)]
		if v.Kind() == reflect.Float32 && math.Abs(f) > math.MaxFloat32 {
			f = 1
		}
		v.SetFloat(f)
	case reflect.String:
		v.SetString(randString(r))
	case reflect.Pointer:
		if r.IntN(3) == 0 || depth > 3 {
			v.SetZero()
			return
		}
		p := reflect.New(v.Type().Elem())
		Fill(r, p.Elem(), depth+1)
		v.Set(p)
	case reflect.Slice:
		switch r.IntN(4) {
		case 0:
			v.SetZero()
		case 1:
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		default:
			n := r.IntN(4)
			if depth > 3 {
				n = 0
			}
			s := reflect.MakeSlice(v.Type(), n, n)
			for i := range n {
				Fill(r, s.Index(i), depth+1)
			}
			v.Set(s)
		}
	case reflect.Array:
		for i := range v.Len() {
			Fill(r, v.Index(i), depth+1)
		}
	case reflect.Map:
		switch r.IntN(4) {
		case 0:
			v.SetZero()
		case 1:
			v.Set(reflect.MakeMap(v.Type()))
		default:
			m := reflect.MakeMap(v.Type())
			for range r.IntN(4) {
				k := reflect.New(v.Type().Key()).Elem()
				k.SetString(randString(r))
				e := reflect.New(v.Type().Elem()).Elem()
				Fill(r, e, depth+1)
				m.SetMapIndex(k, e)
			}
			v.Set(m)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			Fill(r, v.Field(i), depth+1)
		}
	case reflect.Interface:
		if v.NumMethod() == 0 {
			choices := []any{nil, "s<&>", 1.5, true, []any{"a", 2.0}, map[string]any{"k": nil}}
			if c := choices[r.IntN(len(choices))]; c != nil {
				v.Set(reflect.ValueOf(c))
			}
		}
	}
}

func randString(r *rand.Rand) string {
	pieces := []string{"", "a", "thermostat-hall", "<", ">", "&", "\"", "\\", "\n", "\t", "\x00", "\x1f", "\x7f",
		"\u2028", "\u2029", "é", "\xff", "\xe2\x80", "😀", "\ud7ff", " ", "=", "/", "\b", "\f"}
	var s string
	for range r.IntN(5) {
		s += pieces[r.IntN(len(pieces))]
	}
	return s
}
