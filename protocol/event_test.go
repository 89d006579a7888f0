package protocol

import (
	"bufio"
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const eventTypesGolden = "testdata/event_types.txt"

// TestEventTypesAppendOnly locks the event types against testdata/event_types.txt, one type
// a line followed by its data keys: the golden list must be a prefix of EventTypes, and each
// type may gain data keys but never lose one. With -update the file is rewritten, but only
// after that check passed, so -update can append and never remove.
func TestEventTypesAppendOnly(t *testing.T) {
	b, err := os.ReadFile(eventTypesGolden)
	if err != nil && !(*update && os.IsNotExist(err)) {
		t.Fatalf("reading %s (run with -update to create): %v", eventTypesGolden, err)
	}
	got := EventTypes()
	sc := bufio.NewScanner(bytes.NewReader(b))
	for i := 0; sc.Scan(); i++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			t.Fatalf("%s: line %d is empty", eventTypesGolden, i+1)
		}
		if i >= len(got) || got[i].Type != EventType(f[0]) {
			t.Fatalf("EventTypes()[%d] is not %q: event types are append-only (%s)", i, f[0], eventTypesGolden)
		}
		for _, k := range f[1:] {
			if !slices.Contains(got[i].Data, k) {
				t.Errorf("event type %q lost data key %q: keys may be added, never removed", f[0], k)
			}
		}
	}
	var want bytes.Buffer
	seen := map[EventType]bool{}
	for _, e := range got {
		if seen[e.Type] {
			t.Errorf("event type %q listed twice", e.Type)
		}
		seen[e.Type] = true
		if !strings.Contains(string(e.Type), ".") || e.Description == "" || !e.Published && !e.Recorded {
			t.Errorf("event type %+v: want a dotted name, a description, and published or recorded", e)
		}
		fmt.Fprintln(&want, strings.Join(append([]string{string(e.Type)}, e.Data...), " "))
	}
	if *update && !t.Failed() {
		if err := os.WriteFile(eventTypesGolden, want.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		b = want.Bytes()
	}
	if !bytes.Equal(b, want.Bytes()) {
		t.Errorf("%s =\n%s\nwant\n%s(run go test -run TestEventTypesAppendOnly -update after appending)", eventTypesGolden, b, want.Bytes())
	}
	if info, ok := EventType("from.the_future").Info(); ok || info.Type != "from.the_future" {
		t.Errorf("unknown type Info() = %+v, %v; want not known", info, ok)
	}
	if info, ok := EventCertIssued.Info(); !ok || info.Type != EventCertIssued {
		t.Errorf("EventCertIssued.Info() = %+v, %v", info, ok)
	}
}

// TestEventTypeConstantsListed checks that every EventType constant of event.go is in
// EventTypes and every listed type is a constant.
func TestEventTypeConstantsListed(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "event.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	consts := map[EventType]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			v := s.(*ast.ValueSpec)
			if id, ok := v.Type.(*ast.Ident); !ok || id.Name != "EventType" {
				continue
			}
			lit, err := strconv.Unquote(v.Values[0].(*ast.BasicLit).Value)
			if err != nil {
				t.Fatal(err)
			}
			consts[EventType(lit)] = v.Names[0].Name
		}
	}
	for _, e := range EventTypes() {
		if _, ok := consts[e.Type]; !ok {
			t.Errorf("event type %q is listed but has no constant", e.Type)
		}
		delete(consts, e.Type)
	}
	for typ, name := range consts {
		t.Errorf("constant %s (%q) is not in EventTypes", name, typ)
	}
}

// TestREADMEListsEventTypes keeps the specification's table of event types complete.
func TestREADMEListsEventTypes(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range EventTypes() {
		i := bytes.Index(readme, []byte("| `"+string(e.Type)+"` |"))
		if i < 0 {
			t.Errorf("README.md has no table row for event type %q", e.Type)
			continue
		}
		row, _, _ := bytes.Cut(readme[i:], []byte("\n"))
		for _, k := range e.Data {
			if !bytes.Contains(row, []byte("`"+k+"`")) {
				t.Errorf("README.md's row for %q does not name data key %q", e.Type, k)
			}
		}
	}
}
