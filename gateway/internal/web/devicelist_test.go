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
		if i%7 == 0 { // not from r: the other devices stay as they were
			d.Tags = []string{"outdoor"}
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
// (listDevices) shows, for every order, problem filter ("no problem" included), class
// filter and page, under the default policy and under one with classes by family, tag and
// id and renew_before, jitter and emergency floors of its own; and the class filter does
// so whatever the stored classes are: never chosen (as seeded), chosen under this policy
// (inventory.Reclassify), under the other policy, half and half, and with more stale ones
// than the list chooses itself.
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
  - name: outside
    match:
      tags: [outdoor]
      devices: [mix-004, mix-011]
    lifetime: 7d
`))
	if err != nil {
		t.Fatal(err)
	}
	classOf := func(pol *policy.Policy) func(inventory.ClassSubject) string {
		return func(s inventory.ClassSubject) string {
			c, _ := pol.ClassFor(policy.Subject{DeviceID: s.ID, Family: s.Family, Tags: s.Tags})
			return c.Name
		}
	}
	var queries, classQueries []deviceQuery
	for _, sort := range deviceSorts {
		for _, problem := range []string{"", "any", "none", "expiring", "no_certificate"} {
			for _, filter := range []deviceQuery{{}, {Family: "fam-1"}, {Q: "mixed 1", State: "active", Online: "no"},
				{Class: "cams"}, {Class: "default", Online: "yes"}, {Class: "outside", Family: "fam-1"}} {
				q := filter
				q.Sort, q.Problem = sort.Key, problem
				queries = append(queries, q)
				if q.Class != "" && (problem == "" || problem == "none") {
					classQueries = append(classQueries, q)
				}
			}
		}
	}
	for _, pc := range []struct {
		name       string
		pol, other *policy.Policy
	}{{"default policy", policy.Default(), custom}, {"custom policy", custom, policy.Default()}} {
		t.Run(pc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			seedMixedFleet(t, f.store, 300)
			cfg := f.cfg
			cfg.FleetMaxAge = -1
			cfg.Policy = func() *policy.Policy { return pc.pol }
			for _, sc := range []struct {
				name    string
				prepare func(t *testing.T)
				limit   int
				queries []deviceQuery
			}{
				{"classes never chosen", func(*testing.T) {}, 0, classQueries},
				{"classes of more stale devices than the list chooses", func(*testing.T) {}, 10, classQueries},
				{"classes under the other policy", func(t *testing.T) {
					if _, err := f.store.Reclassify(t.Context(), pc.other.ClassHash(), classOf(pc.other)); err != nil {
						t.Fatal(err)
					}
				}, 0, classQueries},
				{"classes of every other device under this policy, the rest under the other", func(t *testing.T) {
					// As an issuance writes a class: with the family and tags, through UpsertDevice.
					for i, sub := range stale(t, f.store, pc.other.ClassHash()) {
						if i%2 == 0 {
							continue
						}
						d := inventory.Device{ID: sub.ID, Class: classOf(pc.pol)(sub), ClassHash: pc.pol.ClassHash()}
						if err := f.store.UpsertDevice(t.Context(), d); err != nil {
							t.Fatal(err)
						}
					}
				}, 0, classQueries},
				{"classes under this policy", func(t *testing.T) {
					for _, want := range []bool{true, false} {
						n, err := f.store.Reclassify(t.Context(), pc.pol.ClassHash(), classOf(pc.pol))
						if err != nil || (n > 0) != want {
							t.Fatalf("Reclassify() = %d, %v; want devices written: %v", n, err, want)
						}
					}
				}, 0, queries},
			} {
				t.Run(sc.name, func(t *testing.T) {
					sc.prepare(t)
					s := &server{cfg: cfg, staleLimit: sc.limit}
					for _, now := range []time.Time{t0, t0.Add(3 * day)} {
						agreePages(t, s, f.store, pc.pol, now, sc.queries)
					}
					agreeClassMembers(t, s, f.store, pc.pol)
				})
			}
		})
	}
}

// agreePages checks every page of every query of pageDevices against listDevices over the
// whole fleet judged at now.
func agreePages(t *testing.T, s *server, store *inventory.Store, pol *policy.Policy, now time.Time, queries []deviceQuery) {
	t.Helper()
	recs, err := store.Fleet(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	fleet := judgeFleet(recs, pol, now)
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
					out = append(out, d.ID+"/"+d.Severity+"/"+d.Class)
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
			if want := classNames(pol); !slices.Equal(got.Classes, want) {
				t.Fatalf("class choices = %v, want the policy's %v", got.Classes, want)
			}
			if pageNo >= want.Pages {
				break
			}
		}
	}
}

// stale returns every device whose class was not chosen under hash.
func stale(t *testing.T, store *inventory.Store, hash string) []inventory.ClassSubject {
	t.Helper()
	out, more, err := store.StaleClasses(t.Context(), hash, 100_000)
	if err != nil || more {
		t.Fatalf("StaleClasses() = %d devices, more %v, %v", len(out), more, err)
	}
	return out
}

// agreeClassMembers checks the policy page's devices per class (classMembers) against the
// whole fleet judged.
func agreeClassMembers(t *testing.T, s *server, store *inventory.Store, pol *policy.Policy) {
	t.Helper()
	recs, err := store.Fleet(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]inventory.ClassMembers{}
	for _, d := range judgeFleet(recs, pol, t0) {
		m := want[d.Class]
		m.Count++
		if len(m.Sample) < classSample {
			m.Sample = append(m.Sample, d.ID)
		}
		want[d.Class] = m
	}
	got, err := s.classMembers(t.Context(), pol, t0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("classMembers() (-fleet +got):\n%s", diff)
	}
}
