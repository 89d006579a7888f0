package inventory

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gorm.io/gorm"
)

// countQueries counts the queries the store's read pool runs through gorm from now on (its
// Query and Row callbacks: Find, and Raw or Rows).
func countQueries(t *testing.T, s *Store) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	name := fmt.Sprintf("test:count:%p", &n)
	count := func(*gorm.DB) { n.Add(1) }
	if err := s.r.Callback().Query().Before("gorm:query").Register(name, count); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.r.Callback().Query().Remove(name) })
	if err := s.r.Callback().Row().Before("gorm:row").Register(name, count); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.r.Callback().Row().Remove(name) })
	return &n
}

// fleet stores n devices d0000…; every even one has an active certificate, every third is
// online, and the others have a pending certificate only.
func fleet(t *testing.T, s *Store, n int) {
	t.Helper()
	items := make([]Issuance, n)
	for i := range n {
		id := fmt.Sprintf("d%04d", i)
		items[i] = issuance(id, fmt.Sprintf("%x", 0x1000+i), "r1", t0)
	}
	for i, err := range s.RecordIssuances(t.Context(), items) {
		if err != nil {
			t.Fatalf("RecordIssuances()[%d] = %v", i, err)
		}
	}
	for i := range n {
		id := fmt.Sprintf("d%04d", i)
		if i%2 == 0 {
			if _, _, err := s.Activate(t.Context(), id, fmt.Sprintf("%x", 0x1000+i), t0); err != nil {
				t.Fatal(err)
			}
		}
		if i%3 == 0 {
			if err := s.SetOnline(t.Context(), id, true, t0); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestDeviceRecords(t *testing.T) {
	s := openTest(t)
	const n = 1200 // more than two batches
	fleet(t, s, n)
	ids := []string{"nope", "d0003", "d0002", "d0002"}
	for i := range n {
		ids = append(ids, fmt.Sprintf("d%04d", i))
	}
	queries := countQueries(t, s)
	recs, err := s.DeviceRecords(t.Context(), ids)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := queries.Load(), int64(2*3); got != want {
		t.Errorf("DeviceRecords(%d ids) ran %d queries, want %d (two per batch of %d)", len(ids), got, want, MaxBatch)
	}
	if len(recs) != n {
		t.Fatalf("DeviceRecords() = %d records, want %d (unknown and repeated ids left out)", len(recs), n)
	}
	for i, r := range recs {
		id := fmt.Sprintf("d%04d", i)
		if r.Device.ID != id {
			t.Fatalf("DeviceRecords()[%d].Device.ID = %q, want %q (sorted)", i, r.Device.ID, id)
		}
		if (r.Active != nil) != (i%2 == 0) {
			t.Fatalf("DeviceRecords()[%d].Active = %+v, want a certificate only for even devices", i, r.Active)
		}
	}
	// The record is the same as the one-by-one reads, without the PEM.
	want, _ := s.ActiveCertificate(t.Context(), "d0002")
	want.PEM = ""
	if diff := cmp.Diff(&want, recs[2].Active); diff != "" {
		t.Errorf("DeviceRecords() active certificate differs from ActiveCertificate (-want +got):\n%s", diff)
	}
	dev, _ := s.Device(t.Context(), "d0003")
	if diff := cmp.Diff(dev, recs[3].Device); diff != "" {
		t.Errorf("DeviceRecords() device differs from Device (-want +got):\n%s", diff)
	}
	if recs, err := s.DeviceRecords(t.Context(), nil); err != nil || len(recs) != 0 {
		t.Errorf("DeviceRecords(nil) = %v, %v, want nothing", recs, err)
	}
}

func TestDevicePage(t *testing.T) {
	s := openTest(t)
	fleet(t, s, 25)
	online := true
	tests := []struct {
		name  string
		f     DeviceFilter
		limit int
		want  int // devices over every page
	}{
		{"all", DeviceFilter{}, 10, 25},
		{"online", DeviceFilter{Online: &online}, 4, 9},
		{"active", DeviceFilter{State: StateActive}, 5, 13},
		{"enrolling and online", DeviceFilter{State: StateEnrolling, Online: &online}, 3, 4},
		{"family", DeviceFilter{Family: "plug"}, 100, 25},
		{"no such family", DeviceFilter{Family: "lock"}, 100, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			queries := countQueries(t, s)
			var got []string
			after, pages := "", 0
			for {
				page, err := s.DevicePage(t.Context(), tt.f, after, tt.limit)
				if err != nil {
					t.Fatal(err)
				}
				pages++
				for _, r := range page {
					got = append(got, r.Device.ID)
					if tt.f.Online != nil && r.Device.Online != *tt.f.Online || tt.f.State != "" && r.Device.State != tt.f.State {
						t.Errorf("DevicePage(%+v) listed %+v", tt.f, r.Device)
					}
				}
				if len(page) < tt.limit {
					break
				}
				after = page[len(page)-1].Device.ID
			}
			if len(got) != tt.want {
				t.Errorf("DevicePage(%+v) pages list %d devices %v, want %d", tt.f, len(got), got, tt.want)
			}
			for i := 1; i < len(got); i++ {
				if got[i-1] >= got[i] {
					t.Fatalf("DevicePage() ids out of order or repeated: %v", got)
				}
			}
			if q := queries.Load(); q > int64(2*pages) {
				t.Errorf("DevicePage() ran %d queries for %d pages, want at most 2 per page", q, pages)
			}
		})
	}
}

func TestCountDevicesBy(t *testing.T) {
	s := openTest(t)
	if c, err := s.CountDevicesBy(t.Context()); err != nil || c.Total != 0 || len(c.States) != 0 {
		t.Errorf("CountDevicesBy(empty) = %+v, %v", c, err)
	}
	fleet(t, s, 25)
	if err := s.SetState(t.Context(), "d0000", StateQuarantined, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	c, err := s.CountDevicesBy(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := DeviceCounts{Total: 25, Online: 9, States: map[string]int{StateActive: 12, StateEnrolling: 12, StateQuarantined: 1}}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("CountDevicesBy() mismatch (-want +got):\n%s", diff)
	}
}
