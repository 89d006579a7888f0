package web

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/monitor"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
)

// The device list reads its own page from the inventory (issue 14: at most 100 ms a page at
// 10,000 devices, no work proportional to the fleet): the filters that are columns (family,
// class, state, online, the search) and the orders that are columns (expiry, id, name, last
// seen) go into the query with its LIMIT, and only the page's devices are judged. The
// default order, the devices needing attention first, needs verdicts: the inventory splits
// the devices into suspects, for which a problem or a person's attention is possible, and
// the others, which have neither (inventory.Suspects, with bounds from the policy). The
// suspects (few in a healthy fleet) are judged; those with a problem or without a
// certificate lead the list, and the others follow in expiry order, as the query returns
// them with the suspects judged fine among them. A problem filter reads the suspects only;
// "no problem" is the non-suspects and the suspects judged without a problem, paged by the
// query in any order. A device's class is the policy's to choose: the inventory stores it
// with the policy.ClassHash it was chosen under and rewrites it when a policy is put in
// force (inventory.Reclassify, once per policy change); the class filter takes the stored
// classes of the policy in force, and chooses itself the class of the few stale devices
// (stored before, or written under the previous policy while the pass ran). Only with more
// than maxStaleClasses of those — moments after a policy change, before its pass ended —
// does the list judge the whole fleet (listDevices over loadFleet). SQLite still evaluates
// the suspect test on every device row (no index can hold it), in C, without returning the
// rows: part of the page costs in the README's "Performance".

// maxStaleClasses is the number of devices with a stale class the class filter chooses the
// class of itself; above it the list judges the fleet.
const maxStaleClasses = 1000

// pageDevices is listDevices for the device list page, reading only what the page needs.
func (s *server) pageDevices(ctx context.Context, q deviceQuery, now time.Time) (devicePage, error) {
	pol := s.cfg.Policy()
	if pol == nil {
		pol = policy.Default()
	}
	store := s.cfg.Store
	base := inventory.FleetQuery{Family: q.Family, State: q.State, Search: q.Q}
	if q.Class != "" {
		base.Class, base.ClassHash = q.Class, pol.ClassHash()
		stale, more, err := store.StaleClasses(ctx, base.ClassHash, cmp.Or(s.staleLimit, maxStaleClasses))
		if err != nil {
			return devicePage{}, err
		}
		if more {
			fleet, err := s.loadFleet(ctx, now)
			if err != nil {
				return devicePage{}, err
			}
			p := listDevices(fleet, q)
			p.Classes = classNames(pol)
			return p, nil
		}
		for _, sub := range stale {
			if c, _ := pol.ClassFor(policy.Subject{DeviceID: sub.ID, Family: sub.Family, Tags: sub.Tags}); c.Name == q.Class {
				base.ClassAlso = append(base.ClassAlso, sub.ID)
			}
		}
	}
	p := devicePage{Query: q, Sorts: deviceSorts, Problems: monitor.Codes(), Classes: classNames(pol)}
	var err error
	if p.Total, err = store.CountDevices(ctx); err != nil {
		return p, err
	}
	yes := true
	if p.Online, err = store.CountFleet(ctx, inventory.FleetQuery{Online: &yes}); err != nil {
		return p, err
	}
	if p.Families, p.States, err = store.FleetChoices(ctx); err != nil {
		return p, err
	}
	switch q.Online {
	case "yes":
		base.Online = &yes
	case "no":
		no := false
		base.Online = &no
	}
	judge := func(fq inventory.FleetQuery) ([]fleetDevice, error) {
		recs, err := store.FleetPage(ctx, fq)
		if err != nil {
			return nil, err
		}
		return judgeFleet(recs, pol, now), nil
	}
	page := func(matched int) (from int) {
		p.Matched = matched
		p.Pages = max(1, (matched+PageSize-1)/PageSize)
		p.Query.Page = min(q.Page, p.Pages)
		return (p.Query.Page - 1) * PageSize
	}
	sus := suspects(pol, now)
	attention := q.Sort == deviceSorts[0].Key

	switch {
	case q.Problem != "" && q.Problem != "none":
		// Only suspects can have a problem or need attention.
		fq := base
		fq.Suspects, fq.Only = &sus, true
		cands, err := judge(fq)
		if err != nil {
			return p, err
		}
		var matched []fleetDevice
		for i := range cands {
			if q.match(&cands[i]) {
				matched = append(matched, cands[i])
			}
		}
		slices.SortFunc(matched, func(a, b fleetDevice) int { return q.compare(&a, &b) })
		from := page(len(matched))
		p.Devices = slices.Clone(matched[from:min(from+PageSize, len(matched))])

	case attention || q.Problem == "none":
		// The suspects are judged: in the default order those with a problem, attention or
		// no certificate lead; the others the query pages among the non-suspects (none of
		// which has a problem), in expiry order or the order asked for.
		fq := base
		fq.Suspects, fq.Only = &sus, true
		cands, err := judge(fq)
		if err != nil {
			return p, err
		}
		var lead []fleetDevice // before every other device
		var along []string     // paged with the non-suspects
		for i := range cands {
			d := &cands[i]
			switch {
			case !q.match(d):
			case attention && severityRank(d.Severity) < severityRank(sevOK):
				lead = append(lead, *d)
			default:
				along = append(along, d.ID)
			}
		}
		slices.SortFunc(lead, func(a, b fleetDevice) int { return q.compare(&a, &b) })
		rest := base
		rest.Suspects, rest.Also = &sus, along
		n, err := store.CountFleet(ctx, rest)
		if err != nil {
			return p, err
		}
		from := page(len(lead) + n)
		if from < len(lead) {
			p.Devices = slices.Clone(lead[from:min(from+PageSize, len(lead))])
		}
		if need := PageSize - len(p.Devices); need > 0 && n > 0 {
			rest.Order, rest.Limit, rest.Offset = q.Sort, need, max(0, from-len(lead))
			if attention {
				rest.Order = inventory.OrderExpiry
			}
			tail, err := judge(rest)
			if err != nil {
				return p, err
			}
			p.Devices = append(p.Devices, tail...)
		}

	default: // an order of columns: the query pages
		n, err := store.CountFleet(ctx, base)
		if err != nil {
			return p, err
		}
		fq := base
		fq.Order, fq.Limit, fq.Offset = q.Sort, PageSize, page(n)
		if p.Devices, err = judge(fq); err != nil {
			return p, err
		}
	}
	return p, nil
}

// classNames are the names of pol's classes, sorted: the class filter's choices (every
// device is in one of them).
func classNames(pol *policy.Policy) []string {
	out := make([]string, 0, len(pol.Classes)+1)
	for _, c := range pol.Classes {
		out = append(out, c.Name)
	}
	out = append(out, policy.DefaultClass) // a policy that fails validation may lack it
	slices.Sort(out)
	return slices.Compact(out)
}

// suspects are the inventory's bounds of the devices that may have a problem at now under
// pol: for each class (and the built-in default, which a policy that fails validation falls
// back to), the earliest its renewal window can end, as policy.Class.Window computes it with
// the jitter at its least favourable.
func suspects(pol *policy.Policy, now time.Time) inventory.Suspects {
	out := inventory.Suspects{Now: now, MaxSkew: monitor.MaxClockSkew}
	for _, c := range append(slices.Clone(pol.Classes), policy.Default().Classes...) {
		out.Windows = append(out.Windows, windowBounds(c)...)
	}
	return out
}

// windowBounds are the lower bounds of the end of the windows class c gives. Window opens at
// start, clamped to [not-before, E] (E the emergency floor), and ends halfway from start to
// E; start is not-before plus f·(1 ± jitter) of the lifetime, or with renew_before shorter
// than the lifetime, not-after minus renew_before·(1 ∓ jitter).
func windowBounds(c policy.Class) []inventory.WindowBound {
	j, fl := c.Jitter, c.EmergencyFloor
	if j < 0 || j > 0.5 {
		j = 0
	}
	if fl <= 0 || fl > 0.5 {
		fl = 1.0 / 20.0
	}
	fraction := func(f float64) inventory.WindowBound {
		start := min(f*(1-j), 1-fl)
		// A hair below, for the rounding of durations and of the query's integer cast.
		return inventory.WindowBound{Fraction: (start+1-fl)/2 - 1e-6}
	}
	f := c.RenewAt
	if c.RenewBefore > 0 || f <= 0 || f >= 1 {
		f = 2.0 / 3.0
	}
	out := []inventory.WindowBound{fraction(f)}
	if c.RenewBefore > 0 {
		// Used only when shorter than the lifetime, which the query cannot know: both bounds.
		out = append(out, inventory.WindowBound{Before: time.Duration(float64(c.RenewBefore)*(1+j)) + time.Second, Floor: fl})
	}
	return out
}
