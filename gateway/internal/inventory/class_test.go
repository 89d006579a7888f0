package inventory

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestReclassify: Reclassify writes the class of every device whose class was chosen under
// another hash (in batches, more than one here), only those, and once; an issuance writes
// its class with its hash and keeps both when it names no class; StaleClasses lists what is
// left; the class filter of FleetQuery takes the stored classes of its hash and the devices
// named beside them.
func TestReclassify(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	n := reclassifyBatch + 20
	items := make([]Issuance, n)
	for i := range items {
		id := fmt.Sprintf("d-%04d", i)
		items[i] = issuance(id, fmt.Sprintf("%04x", 0x1000+i), "r-"+id, t0)
		items[i].Device.Family = []string{"cam", "plug"}[i%2]
		if i%5 == 0 {
			items[i].Device.Tags = []string{"outdoor"}
		}
	}
	items[3].Device.Class, items[3].Device.ClassHash = "camera", "classes:old" // chosen at its issuance
	for i, err := range s.RecordIssuances(ctx, items) {
		if err != nil {
			t.Fatalf("RecordIssuances()[%d] = %v", i, err)
		}
	}
	calls := 0
	classOf := func(sub ClassSubject) string {
		calls++
		switch {
		case slices.Contains(sub.Tags, "outdoor"):
			return "outside"
		case sub.Family == "cam":
			return "camera"
		}
		return "default"
	}
	if got, more, err := s.StaleClasses(ctx, "classes:new", 10); err != nil || len(got) != 10 || !more || got[0].ID != "d-0000" || !cmp.Equal(got[0].Tags, []string{"outdoor"}) {
		t.Fatalf("StaleClasses(new, 10) = %+v, %v, %v; want the first 10 by id, more", got, more, err)
	}
	written, err := s.Reclassify(ctx, "classes:new", classOf)
	if err != nil || written != n || calls != n {
		t.Fatalf("Reclassify() = %d, %v (%d calls), want %d written", written, err, calls, n)
	}
	if written, err := s.Reclassify(ctx, "classes:new", classOf); err != nil || written != 0 || calls != n {
		t.Fatalf("Reclassify() again = %d, %v (%d calls in all), want nothing to do", written, err, calls)
	}
	if got, more, err := s.StaleClasses(ctx, "classes:new", 10); err != nil || len(got) != 0 || more {
		t.Fatalf("StaleClasses(new) after Reclassify = %+v, %v, %v; want none", got, more, err)
	}
	for i, want := range map[int]string{0: "outside", 1: "default", 3: "default", 4: "camera"} {
		d, err := s.Device(ctx, items[i].Device.ID)
		if err != nil || d.Class != want || d.ClassHash != "classes:new" {
			t.Errorf("Device(%s) = class %q under %q, %v; want %q under classes:new", d.ID, d.Class, d.ClassHash, err, want)
		}
	}

	// A renewal's issuance names no class: the stored one stays, with its hash. An issuance
	// that names one writes both.
	renew := issuance("d-0004", "aaaa", "r-renew", t0.Add(time.Hour))
	renew.Device = Device{ID: "d-0004"}
	mustIssue(t, s, renew)
	moved := issuance("d-0006", "bbbb", "r-moved", t0.Add(time.Hour))
	moved.Device = Device{ID: "d-0006", Family: "cam", Class: "camera", ClassHash: "classes:newer"}
	mustIssue(t, s, moved)
	for id, want := range map[string][2]string{"d-0004": {"camera", "classes:new"}, "d-0006": {"camera", "classes:newer"}} {
		if d, err := s.Device(ctx, id); err != nil || d.Class != want[0] || d.ClassHash != want[1] {
			t.Errorf("Device(%s) after an issuance = %q under %q, %v; want %q under %q", id, d.Class, d.ClassHash, err, want[0], want[1])
		}
	}
	if got, more, err := s.StaleClasses(ctx, "classes:new", 10); err != nil || len(got) != 1 || got[0].ID != "d-0006" || more {
		t.Errorf("StaleClasses(new) = %+v, %v, %v; want d-0006 alone", got, more, err)
	}

	for _, tc := range []struct {
		name string
		q    FleetQuery
		want func(i int) bool
	}{
		{"stored class", FleetQuery{Class: "outside", ClassHash: "classes:new"}, func(i int) bool { return i%5 == 0 }},
		{"stored class and one named", FleetQuery{Class: "default", ClassHash: "classes:new", ClassAlso: []string{"d-0006"}},
			func(i int) bool { return i%5 != 0 && i%2 == 1 || i == 6 }},
		{"another hash: only the named", FleetQuery{Class: "camera", ClassHash: "classes:newer", ClassAlso: []string{"d-0001"}},
			func(i int) bool { return i == 1 || i == 6 }},
		{"with a family", FleetQuery{Class: "camera", ClassHash: "classes:new", Family: "cam"},
			func(i int) bool { return i%5 != 0 && i%2 == 0 && i != 6 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want []string
			for i := range items {
				if tc.want(i) {
					want = append(want, items[i].Device.ID)
				}
			}
			recs, err := s.FleetPage(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range recs {
				got = append(got, r.Device.ID)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("FleetPage(%+v) (-want +got):\n%s", tc.q, diff)
			}
			if c, err := s.CountFleet(ctx, tc.q); err != nil || c != len(want) {
				t.Errorf("CountFleet(%+v) = %d, %v, want %d", tc.q, c, err, len(want))
			}
		})
	}

	counts, err := s.ClassCounts(ctx, "classes:new", 3)
	// 520 devices: a fifth tagged outdoor (104), the other cams (208 less d-0006) and plugs (208).
	want := map[string]ClassMembers{"outside": {104, []string{"d-0000", "d-0005", "d-0010"}},
		"camera": {207, []string{"d-0002", "d-0004", "d-0008"}}, "default": {208, []string{"d-0001", "d-0003", "d-0007"}}}
	if diff := cmp.Diff(want, counts); err != nil || diff != "" {
		t.Errorf("ClassCounts(new, 3) = %v (-want +got):\n%s", err, diff)
	}

	if _, err := s.Reclassify(ctx, "", classOf); err == nil {
		t.Error("Reclassify with an empty hash succeeded")
	}
	bad := func(ClassSubject) string { return "bad\xffclass" }
	if _, err := s.Reclassify(ctx, "classes:bad", bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("Reclassify(a class that is not UTF-8) = %v, want ErrInvalid", err)
	}
	if d, err := s.Device(ctx, "d-0000"); err != nil || d.ClassHash != "classes:new" {
		t.Errorf("Device(d-0000) after a refused Reclassify = %q, %v; want its class under classes:new kept", d.ClassHash, err)
	}
}

// BenchmarkReclassify is the pass a policy put in force costs at 10,000 devices: every
// class chosen again and written (each op alternates between two policies' hashes), and
// the pass when nothing is stale (the hub's start under the same classes).
func BenchmarkReclassify(b *testing.B) {
	s := openTest(b)
	const n = 10_000
	items := make([]Issuance, n)
	for i := range items {
		items[i] = issuance(fmt.Sprintf("dev-%05d", i), fmt.Sprintf("%08x", 0x10000000+i), fmt.Sprintf("r%d", i), t0)
		items[i].Device.Family = fmt.Sprintf("family-%d", i%10)
	}
	for chunk := range n / 500 {
		for _, err := range s.RecordIssuances(b.Context(), items[chunk*500:(chunk+1)*500]) {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	classOf := func(sub ClassSubject) string {
		if sub.Family == "family-1" || sub.Family == "family-2" {
			return "cameras"
		}
		return "default"
	}
	b.Run("all-10000", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if w, err := s.Reclassify(b.Context(), fmt.Sprintf("classes:%d", i%2), classOf); err != nil || w != n {
				b.Fatalf("Reclassify() = %d, %v, want %d", w, err, n)
			}
			i++
		}
	})
	b.Run("none-stale", func(b *testing.B) {
		for b.Loop() {
			if w, err := s.Reclassify(b.Context(), "classes:0", classOf); err != nil || w != 0 {
				b.Fatalf("Reclassify() = %d, %v, want 0", w, err)
			}
		}
	})
}
