package inventory

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hearth-pki/hearth/protocol"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

func appendN(t *testing.T, s *Store, n int) []Event {
	t.Helper()
	var out []Event
	for i := range n {
		e, err := s.AppendEvent(t.Context(), Event{
			Time: t0.Add(time.Duration(i) * time.Minute), Kind: []protocol.EventType{"ca.rotated", "policy.changed"}[i%2],
			DeviceID: fmt.Sprintf("dev-%d", i%3), Actor: "cli", Message: fmt.Sprintf("event %d", i),
			Data: map[string]string{"i": fmt.Sprint(i)},
		})
		if err != nil {
			t.Fatalf("AppendEvent(#%d) = %v", i, err)
		}
		out = append(out, e)
	}
	return out
}

func TestAppendEventChains(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	evs := appendN(t, s, 3)
	for i, e := range evs {
		wantPrev := ""
		if i > 0 {
			wantPrev = evs[i-1].Hash
		}
		if e.Seq != int64(i+1) || e.PrevHash != wantPrev || len(e.Hash) != 64 || e.Hash != eventHash(e) {
			t.Errorf("event %d: seq %d prev %q hash %q, want seq %d chained to %q", i, e.Seq, e.PrevHash, e.Hash, i+1, wantPrev)
		}
	}
	got, err := s.Events(ctx, EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(evs, got); diff != "" {
		t.Errorf("Events() differs from what AppendEvent returned (-want +got):\n%s", diff)
	}

	e, err := s.AppendEvent(WithActor(ctx, "admin:carol"), Event{Time: t0.Add(1500 * time.Millisecond).In(time.FixedZone("X", 3600)), Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Actor != "admin:carol" || !e.Time.Equal(t0.Add(time.Second)) || e.Time.Location() != time.UTC {
		t.Errorf("AppendEvent() = actor %q time %v, want admin:carol at %v UTC", e.Actor, e.Time, t0.Add(time.Second))
	}
	for _, bad := range []Event{{Kind: "k"}, {Time: t0}, {Time: t0, Kind: "k", Data: map[string]string{"k": "\xfe"}}} {
		if _, err := s.AppendEvent(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("AppendEvent(%+v) = %v, want %v", bad, err, ErrInvalid)
		}
	}
}

func TestEventsFilter(t *testing.T) {
	s := openTest(t)
	appendN(t, s, 9) // seq i+1: kind alternates, device dev-(i%3), minute i
	for _, tc := range []struct {
		name string
		f    EventFilter
		want []int64
	}{
		{"all", EventFilter{}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{"device", EventFilter{DeviceID: "dev-1"}, []int64{2, 5, 8}},
		{"kind", EventFilter{Kind: "policy.changed"}, []int64{2, 4, 6, 8}},
		{"since", EventFilter{Since: t0.Add(6 * time.Minute)}, []int64{7, 8, 9}},
		{"limit keeps the newest", EventFilter{Limit: 2}, []int64{8, 9}},
		{"combined", EventFilter{DeviceID: "dev-0", Kind: "ca.rotated", Since: t0.Add(time.Minute), Limit: 5}, []int64{7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := s.Events(t.Context(), tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, e := range evs {
				got = append(got, e.Seq)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Events(%+v) seqs (-want +got):\n%s", tc.f, diff)
			}
		})
	}
}

func TestEventsAreAppendOnly(t *testing.T) {
	s := openTest(t)
	appendN(t, s, 2)
	for _, q := range []string{"UPDATE events SET message = 'x' WHERE seq = 1", "DELETE FROM events WHERE seq = 2"} {
		if err := s.w.Exec(q).Error; err == nil {
			t.Errorf("%s succeeded, want the append-only trigger to refuse it", q)
		}
	}
	if err := s.VerifyAudit(t.Context()); err != nil {
		t.Errorf("VerifyAudit() = %v", err)
	}
}

func TestVerifyAuditDetectsTampering(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tamper  func(t *testing.T, s *Store, evs []Event)
		wantSeq int64
	}{
		{"untouched", func(*testing.T, *Store, []Event) {}, 0},
		{"edited message", func(t *testing.T, s *Store, _ []Event) {
			rawExec(t, s, "UPDATE events SET message = 'nothing happened' WHERE seq = 3")
		}, 3},
		{"edited data", func(t *testing.T, s *Store, _ []Event) {
			rawExec(t, s, `UPDATE events SET data = '{"i":"7"}' WHERE seq = 2`)
		}, 2},
		{"edited time", func(t *testing.T, s *Store, _ []Event) {
			rawExec(t, s, "UPDATE events SET time = time + 1 WHERE seq = 4")
		}, 4},
		{"edited actor of the first", func(t *testing.T, s *Store, _ []Event) {
			rawExec(t, s, "UPDATE events SET actor = 'admin' WHERE seq = 1")
		}, 1},
		{"deleted row", func(t *testing.T, s *Store, _ []Event) {
			rawExec(t, s, "DELETE FROM events WHERE seq = 3")
		}, 4},
		{"edited and rehashed", func(t *testing.T, s *Store, evs []Event) {
			e := evs[2]
			e.Message = "forged"
			rawExec(t, s, "UPDATE events SET message = ?, hash = ? WHERE seq = 3", e.Message, eventHash(e))
		}, 4},
		{"renumbered", func(t *testing.T, s *Store, _ []Event) {
			rawExec(t, s, "UPDATE events SET seq = 10 WHERE seq = 5")
		}, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t)
			evs := appendN(t, s, 5)
			if onPostgres() {
				rawExec(t, s, "DROP TRIGGER events_no_update ON events")
			} else {
				rawExec(t, s, "DROP TRIGGER events_no_update")
				rawExec(t, s, "DROP TRIGGER events_no_delete")
			}
			tc.tamper(t, s, evs)
			err := s.VerifyAudit(t.Context())
			if tc.wantSeq == 0 {
				if err != nil {
					t.Errorf("VerifyAudit() = %v, want nil", err)
				}
				return
			}
			var ae *AuditError
			if !errors.As(err, &ae) || ae.Seq != tc.wantSeq || !errors.Is(err, ErrAuditBroken) {
				t.Errorf("VerifyAudit() = %v, want an *AuditError at seq %d", err, tc.wantSeq)
			}
		})
	}
}

func rawExec(t *testing.T, s *Store, q string, args ...any) {
	t.Helper()
	if err := s.w.Exec(q, args...).Error; err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// TestEventHashGolden locks the canonical encoding: every stored chain depends on it.
func TestEventHashGolden(t *testing.T) {
	cases := []struct {
		name string
		e    Event
	}{
		{"minimal", Event{Seq: 1, Time: t0, Kind: "k"}},
		{"full", Event{Seq: 42, Time: t0, Kind: "cert.issued", DeviceID: "plug-1", Actor: "hub", Message: "issued",
			Data: map[string]string{"serial": "0a", "b": "2", "a": "1"}, PrevHash: strings.Repeat("ab", 32)}},
		{"unicode", Event{Seq: 7, Time: t0, Kind: "note", Message: "Küche ☃", Data: map[string]string{"": ""}}},
	}
	var b strings.Builder
	for _, tc := range cases {
		fmt.Fprintf(&b, "%s %s\n", tc.name, eventHash(tc.e))
	}
	path := filepath.Join("testdata", "event_hash.golden")
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create): %v", err)
	}
	if diff := cmp.Diff(string(want), b.String()); diff != "" {
		t.Errorf("eventHash changed (-golden +got):\n%s", diff)
	}
}

func TestEventHashSeparatesFields(t *testing.T) {
	base := Event{Seq: 1, Time: t0, Kind: "ab", DeviceID: "c"}
	for name, other := range map[string]Event{
		"boundary moved":   {Seq: 1, Time: t0, Kind: "a", DeviceID: "bc"},
		"field swapped":    {Seq: 1, Time: t0, Kind: "c", DeviceID: "ab"},
		"data vs message":  {Seq: 1, Time: t0, Kind: "ab", DeviceID: "c", Data: map[string]string{"": ""}},
		"seq":              {Seq: 2, Time: t0, Kind: "ab", DeviceID: "c"},
		"one second later": {Seq: 1, Time: t0.Add(time.Second), Kind: "ab", DeviceID: "c"},
		"prev hash":        {Seq: 1, Time: t0, Kind: "ab", DeviceID: "c", PrevHash: "00"},
	} {
		if eventHash(base) == eventHash(other) {
			t.Errorf("eventHash(%+v) == eventHash(%+v) (%s)", base, other, name)
		}
	}
}

// FuzzAppendEvent checks that any event is either refused as invalid or stored so that
// reading it back gives the same event and the same hash.
func FuzzAppendEvent(f *testing.F) {
	f.Add("cert.issued", "plug-1", "hub", "message", "serial", "0a", int64(1772366400))
	f.Add("", "", "", "", "", "", int64(0))
	f.Add("k", "\x00", "a\nb", "\xff", "<&>", "\"quoted\"", int64(-1))
	s, err := Open(f.Context(), filepath.Join(f.TempDir(), "fuzz.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	f.Fuzz(func(t *testing.T, kind, device, actor, message, key, value string, sec int64) {
		in := Event{Time: time.Unix(sec, 0), Kind: protocol.EventType(kind), DeviceID: device, Actor: actor, Message: message,
			Data: map[string]string{key: value}}
		e, err := s.AppendEvent(t.Context(), in)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("AppendEvent(%+v) = %v, want nil or ErrInvalid", in, err)
			}
			return
		}
		got, err := s.Events(t.Context(), EventFilter{Limit: 1})
		if err != nil || len(got) != 1 {
			t.Fatalf("Events(Limit 1) = %v, %v", got, err)
		}
		if diff := cmp.Diff(e, got[0]); diff != "" {
			t.Errorf("stored event differs (-appended +read):\n%s", diff)
		}
		if eventHash(got[0]) != got[0].Hash {
			t.Errorf("eventHash(read back) != stored Hash for %+v", got[0])
		}
	})
}
