package inventory

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestFleetPageFiltersAndOrders(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	for i, d := range []struct{ id, name, family string }{
		{"a-100%", "Zeta", "cam"}, {"b_x", "alpha", "cam"}, {"c", "", "plug"}, {"d", "Beta", "plug"},
	} {
		in := issuance(d.id, string(rune('1'+i))+"0", "r-"+d.id, t0.Add(time.Duration(i)*time.Hour))
		in.Device.Name, in.Device.Family = d.name, d.family
		in.Cert.NotAfter = t0.Add(time.Duration(10-i) * 24 * time.Hour)
		mustIssue(t, s, in)
		if d.id != "c" { // c stays without an active certificate
			if _, _, err := s.Activate(ctx, d.id, in.Cert.Serial, t0); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.SetOnline(ctx, d.id, i%2 == 0, t0.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	yes := true
	for _, tc := range []struct {
		name string
		q    FleetQuery
		want []string
	}{
		{"all by id", FleetQuery{}, []string{"a-100%", "b_x", "c", "d"}},
		{"family", FleetQuery{Family: "plug"}, []string{"c", "d"}},
		{"online", FleetQuery{Online: &yes}, []string{"a-100%", "c"}},
		{"search is literal: %", FleetQuery{Search: "0%"}, []string{"a-100%"}},
		{"search is literal: _", FleetQuery{Search: "_"}, []string{"b_x"}},
		{"search ignores case", FleetQuery{Search: "ALPHA"}, []string{"b_x"}},
		{"expiry, none last", FleetQuery{Order: OrderExpiry}, []string{"d", "b_x", "a-100%", "c"}},
		{"name, the id without one", FleetQuery{Order: OrderName}, []string{"b_x", "d", "c", "a-100%"}},
		{"last seen, latest first", FleetQuery{Order: OrderSeen}, []string{"d", "c", "b_x", "a-100%"}},
		{"a page", FleetQuery{Order: OrderExpiry, Limit: 2, Offset: 1}, []string{"b_x", "a-100%"}},
		{"suspects: no certificate, or past any window's end", FleetQuery{Only: true,
			Suspects: &Suspects{Now: t0, MaxSkew: time.Minute, Windows: []WindowBound{{Fraction: 0.9}}}}, []string{"c"}},
		{"suspects: a short renew_before", FleetQuery{Only: true, Suspects: &Suspects{Now: t0.Add(6 * 24 * time.Hour),
			MaxSkew: time.Minute, Windows: []WindowBound{{Before: 2 * 24 * time.Hour, Floor: 0.05}}}}, []string{"c", "d"}},
		{"the others, and one named", FleetQuery{Also: []string{"c"},
			Suspects: &Suspects{Now: t0, MaxSkew: time.Minute, Windows: []WindowBound{{Fraction: 0.9}}}}, []string{"a-100%", "b_x", "c", "d"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, err := s.FleetPage(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range recs {
				got = append(got, r.Device.ID)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("FleetPage(%+v) (-want +got):\n%s", tc.q, diff)
			}
			tc.q.Limit, tc.q.Offset = 0, 0
			if n, err := s.CountFleet(ctx, tc.q); err != nil || n != len(tc.want) && tc.name != "a page" {
				t.Errorf("CountFleet(%+v) = %d, %v, want %d", tc.q, n, err, len(tc.want))
			}
		})
	}
	fams, states, err := s.FleetChoices(ctx)
	if err != nil || !cmp.Equal(fams, []string{"cam", "plug"}) || !cmp.Equal(states, []string{"active", "enrolling"}) {
		t.Errorf("FleetChoices() = %v, %v, %v; want [cam plug], [active enrolling]", fams, states, err)
	}
}
