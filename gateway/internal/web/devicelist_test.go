package web

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
)

// seedMixedFleet adds n devices with every kind of state the list can show: lifetimes from
// an hour to a year at every point of their life (waiting, window open, overdue, emergency,
// expired), manual devices, devices without a certificate, failing renewal, clock skew, an
// unexpected serial, quarantined ones; in five families, one in three online.
func seedMixedFleet(t *testing.T, s *inventory.Store, n int) {
	t.Helper()
	ctx := t.Context()
	r := rand.New(rand.NewPCG(14, 6))
	lifetimes := []time.Duration{time.Hour, day, 7 * day, 30 * day, 365 * day}
	for i := range n {
		id := fmt.Sprintf("mix-%03d", i)
		d := inventory.Device{ID: id, Name: fmt.Sprintf("Mixed %d", r.IntN(50)), Family: fmt.Sprintf("fam-%d", i%5),
			Path: inventory.PathDirect, Mechanism: inventory.MechanismAgent}
		if r.IntN(10) == 0 {
			d.Mechanism = inventory.MechanismManual
		}
		life := lifetimes[r.IntN(len(lifetimes))]
		nb := t0.Add(-time.Duration(r.Float64() * 1.2 * float64(life))).Truncate(time.Second)
		serial := fmt.Sprintf("%06x", 0xa00000+i)
		err := s.RecordIssuance(ctx, inventory.Issuance{Device: d,
			Cert: inventory.Certificate{Serial: serial, NotBefore: nb, NotAfter: nb.Add(life), Issuer: "Hearth Intermediate",
				KeyAlgorithm: "ECDSA-P256", Fingerprint: fmt.Sprintf("%064x", 0xa00000+i)},
			Attempt: inventory.Attempt{RequestID: "req-" + id, Reason: "enroll", StartedAt: nb, FinishedAt: nb}})
		if err != nil {
			t.Fatal(err)
		}
		if r.IntN(15) != 0 { // else: enrolling, no active certificate
			if _, _, err := s.Activate(ctx, id, serial, nb); err != nil {
				t.Fatal(err)
			}
		}
		switch r.IntN(20) {
		case 0:
			err = s.SetRenewal(ctx, id, inventory.RenewalStatus{State: inventory.RenewalFailing, Failures: 5, LastCause: "timeout"})
		case 1:
			err = s.UpdateHealth(ctx, id, inventory.Health{ReportedSerial: serial, ChainOK: true, ClockSkew: 10 * time.Minute, At: t0.Add(-time.Hour)})
		case 2:
			err = s.UpdateHealth(ctx, id, inventory.Health{ReportedSerial: "beef", ChainOK: true, At: t0.Add(-time.Minute)})
		case 3:
			err = s.SetState(ctx, id, inventory.StateQuarantined, t0)
		}
		if err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			if err := s.SetOnline(ctx, id, true, t0.Add(-time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestPageDevicesAgreesWithTheFleet: the device list read page by page from the inventory
// (pageDevices) shows exactly what judging the whole fleet and paging it in memory
// (listDevices) shows, for every order, problem filter and page, under the default policy
// and under one with renew_before, jitter and emergency floors of its own.
func TestPageDevicesAgreesWithTheFleet(t *testing.T) {
	custom, err := policy.Parse([]byte(`version: 1
classes:
  - name: default
    renew_at: 0.5
    jitter: 0.3
    emergency_floor: 0.2
  - name: cams
    match:
      families: [fam-1, fam-2]
    renew_before: 10d
    jitter: 0.5
    emergency_floor: 0.1
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, pc := range []struct {
		name string
		pol  *policy.Policy
	}{{"default policy", policy.Default()}, {"custom policy", custom}} {
		t.Run(pc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			seedMixedFleet(t, f.store, 300)
			cfg := f.cfg
			cfg.FleetMaxAge = -1
			cfg.Policy = func() *policy.Policy { return pc.pol }
			s := &server{cfg: cfg}
			for _, now := range []time.Time{t0, t0.Add(3 * day)} {
				recs, err := f.store.Fleet(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				fleet := judgeFleet(recs, pc.pol, now)
				var queries []deviceQuery
				for _, sort := range deviceSorts {
					for _, problem := range []string{"", "any", "expiring", "no_certificate"} {
						for _, filter := range []deviceQuery{{}, {Family: "fam-1"}, {Q: "mixed 1", State: "active", Online: "no"}} {
							q := filter
							q.Sort, q.Problem = sort.Key, problem
							queries = append(queries, q)
						}
					}
				}
				for _, q := range queries {
					for pageNo := 1; ; pageNo++ {
						q.Page = pageNo
						want := listDevices(fleet, q)
						got, err := s.pageDevices(t.Context(), q, now)
						if err != nil {
							t.Fatalf("pageDevices(%+v) = %v", q, err)
						}
						ids := func(p devicePage) []string {
							var out []string
							for _, d := range p.Devices {
								out = append(out, d.ID+"/"+d.Severity)
							}
							return out
						}
						if diff := cmp.Diff(ids(want), ids(got)); diff != "" {
							t.Fatalf("at %s, %+v: devices (-fleet +page):\n%s", now, q, diff)
						}
						if got.Matched != want.Matched || got.Pages != want.Pages || got.Query.Page != want.Query.Page ||
							got.Total != want.Total || got.Online != want.Online {
							t.Fatalf("at %s, %+v: matched %d of %d, page %d of %d, online %d; want %d of %d, page %d of %d, online %d",
								now, q, got.Matched, got.Total, got.Query.Page, got.Pages, got.Online,
								want.Matched, want.Total, want.Query.Page, want.Pages, want.Online)
						}
						if !slices.Equal(got.Families, want.Families) || !slices.Equal(got.States, want.States) {
							t.Fatalf("filter choices = %v %v, want %v %v", got.Families, got.States, want.Families, want.States)
						}
						if pageNo >= want.Pages {
							break
						}
					}
				}
			}
		})
	}
}
