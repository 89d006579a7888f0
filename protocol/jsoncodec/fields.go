package jsoncodec

import (
	"reflect"
	"slices"
	"strings"
	"sync"
)

// field is one JSON member of a struct type.
type field struct {
	name      string
	index     []int // through embedded structs
	tagged    bool
	omitEmpty bool
	omitZero  bool
}

// fieldCache remembers fieldsOf for every struct type the codec met in this process, as
// encoding/json's own cache does. It is a memo of a pure function of the type, so sharing it
// changes no result: a type's fields never change while the program runs, and the types met
// are the program's own, so it stays small. Computing them afresh for each Marshal or
// Unmarshal call cost the hub about a tenth of its allocations in a renewal storm (issue 11).
type fieldCache struct{ m sync.Map } // reflect.Type → []field

// typeFields is the process's fieldCache.
var typeFields fieldCache

func (c *fieldCache) of(t reflect.Type) []field {
	if f, ok := c.m.Load(t); ok {
		return f.([]field)
	}
	f, _ := c.m.LoadOrStore(t, fieldsOf(t))
	return f.([]field)
}

// fieldsOf returns t's JSON members in encoding/json's order and with its rules for
// embedded structs: the shallowest name wins, then the tagged one; other conflicts drop
// the name.
func fieldsOf(t reflect.Type) []field {
	type level struct {
		t     reflect.Type
		index []int
	}
	var all []field
	next := []level{{t: t}}
	visited := map[reflect.Type]bool{}
	for len(next) > 0 {
		current := next
		next = nil
		count := map[string]int{}
		var found []field
		for _, l := range current {
			if visited[l.t] {
				continue
			}
			visited[l.t] = true
			for i := range l.t.NumField() {
				sf := l.t.Field(i)
				ft := sf.Type
				if sf.Anonymous {
					if ft.Kind() == reflect.Pointer {
						ft = ft.Elem()
					}
					if !sf.IsExported() && ft.Kind() != reflect.Struct {
						continue
					}
				} else if !sf.IsExported() {
					continue
				}
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, opts, _ := strings.Cut(tag, ",")
				if !validName(name) {
					name = ""
				}
				index := append(slices.Clip(l.index), i)
				if sf.Anonymous && name == "" && ft.Kind() == reflect.Struct {
					next = append(next, level{t: ft, index: index})
					continue
				}
				f := field{name: name, index: index, tagged: name != ""}
				if f.name == "" {
					f.name = sf.Name
				}
				for opts != "" {
					var o string
					o, opts, _ = strings.Cut(opts, ",")
					switch o {
					case "omitempty":
						f.omitEmpty = true
					case "omitzero":
						f.omitZero = true
					}
				}
				count[f.name]++
				found = append(found, f)
			}
		}
		for _, f := range found {
			if slices.ContainsFunc(all, func(g field) bool { return g.name == f.name }) {
				continue // a shallower field of that name hides it
			}
			if count[f.name] > 1 {
				// Several at this depth: the only tagged one wins, else none.
				var tagged []field
				for _, g := range found {
					if g.name == f.name && g.tagged {
						tagged = append(tagged, g)
					}
				}
				if len(tagged) == 1 {
					all = append(all, tagged[0])
				} else {
					all = append(all, field{name: f.name}) // a placeholder that hides deeper ones
				}
				continue
			}
			all = append(all, f)
		}
	}
	out := all[:0]
	for _, f := range all {
		if f.index != nil {
			out = append(out, f)
		}
	}
	// In the order of the struct's fields (index sequences compared). An insertion sort: a
	// struct has a few dozen fields, and slices.SortFunc on []field would link a sort
	// instantiated for this type, 12 KB of the agent's size budget.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && slices.Compare(out[j-1].index, out[j].index) > 0; j-- {
			out[j-1], out[j] = out[j], out[j-1]
		}
	}
	return out
}

// validName reports whether a tag name is one encoding/json accepts.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c):
		case c == '\\' || c == '"' || c == '\'' || c == '`' || c == ',':
			return false
		case !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c > 127):
			return false
		}
	}
	return true
}
