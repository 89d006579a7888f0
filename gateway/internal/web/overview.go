package web

import (
	"cmp"
	"context"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/monitor"
)

// rateWindow is one of the overview's success-rate periods.
type rateWindow struct {
	Name      string // "24 h", "7 d", "30 d"
	Width     time.Duration
	N         int // buckets
	Label     string
	Successes int
	Failures  int
	Plot      template.HTML
}

// Rate is the window's success rate as a percentage, "—" without attempts.
func (w rateWindow) Rate() string {
	n := w.Successes + w.Failures
	if n == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f %%", 100*float64(w.Successes)/float64(n))
}

// rateWindows are the overview's periods: hourly bars over a day, daily over a week and a
// month.
func rateWindows() []rateWindow {
	return []rateWindow{
		{Name: "24 h", Width: time.Hour, N: 24, Label: "15:04"},
		{Name: "7 d", Width: 24 * time.Hour, N: 7, Label: "Jan 2"},
		{Name: "30 d", Width: 24 * time.Hour, N: 30, Label: "Jan 2"},
	}
}

// since is the start of w's first bucket: the buckets end with the one holding now.
func (w rateWindow) since(now time.Time) time.Time {
	return now.UTC().Truncate(w.Width).Add(-time.Duration(w.N-1) * w.Width)
}

// overview is the overview page's data.
type overview struct {
	Now         time.Time
	Total       int
	Online      int
	Expiring    int // devices with the expiring or expired problem
	WithIssue   int // devices with a problem or needing a person
	Group       string
	Timeline    template.HTML
	Lifetimes   template.HTML
	Rates       []rateWindow
	ByFamily    template.HTML // failures of the last 30 days
	ByCause     template.HTML
	Failures    int
	Uptime      template.HTML
	Approaching []fleetDevice // the soonest expirations that need a look, at most 10
}

// buildOverview computes the overview from the judged and completed fleet, the attempt history of each of
// rateWindows, the failures of the last 30 days and each device's time online in each of
// uptimeWindows (nil: none was online): pure.
func buildOverview(fleet []fleetDevice, hist [][]inventory.AttemptBucket, fails []inventory.FailureCount,
	online []map[string]time.Duration, group string, now time.Time) overview {
	o := overview{Now: now, Total: len(fleet), Group: group}
	groupOf := func(d fleetDevice) string {
		if group == "class" {
			return d.Class
		}
		return d.Family
	}
	// Lanes in name order; marks by lane then expiry, so a lane's marks alternate rows in time order.
	lanes := map[string]bool{}
	pops := map[string]*population{}
	for _, d := range fleet {
		g := groupOf(d)
		lanes[g] = true
		if d.Online {
			o.Online++
		}
		if slices.Contains(d.Problems, monitor.ProblemExpiring) || slices.Contains(d.Problems, monitor.ProblemExpired) {
			o.Expiring++
		}
		if len(d.Problems) > 0 || d.Attention {
			o.WithIssue++
		}
		if validCert(d, now) {
			p := pops[g]
			if p == nil {
				p = &population{Name: cmp.Or(g, "(none)")}
				pops[g] = p
			}
			p.Counts[lifetimeBucket(d.NotAfter.Sub(d.NotBefore))]++
		}
	}
	groups := keysAll(lanes)
	marks := make([]timelineMark, 0, len(fleet))
	for _, d := range fleet {
		m := timelineMark{ID: d.ID, Label: d.Name, Group: groupOf(d), NotAfter: d.NotAfter, Severity: d.Severity}
		if !d.NotAfter.IsZero() {
			m.WindowStart, m.WindowEnd = d.Window.Start, d.Window.End
		}
		marks = append(marks, m)
	}
	slices.SortStableFunc(marks, func(a, b timelineMark) int {
		return cmp.Or(cmp.Compare(a.Group, b.Group), a.NotAfter.Compare(b.NotAfter), cmp.Compare(a.ID, b.ID))
	})
	o.Timeline = timelineSVG(groups, marks, now)

	popList := make([]population, 0, len(pops))
	for _, g := range groups {
		if p := pops[g]; p != nil {
			popList = append(popList, *p)
		}
	}
	o.Lifetimes = lifetimeSVG(popList)

	o.Rates = rateWindows()
	for i := range o.Rates {
		w := &o.Rates[i]
		var buckets []rateBucket
		if i < len(hist) {
			for _, b := range hist[i] {
				w.Successes += b.Successes
				w.Failures += b.Failures
				buckets = append(buckets, rateBucket{Label: b.Start.UTC().Format(w.Label), Successes: b.Successes, Failures: b.Failures})
			}
		}
		w.Plot = rateSVG(w.Name, buckets)
	}

	byFamily, byCause := map[string]int{}, map[string]int{}
	for _, f := range fails {
		byFamily[cmp.Or(f.Family, "(none)")] += f.N
		byCause[cmp.Or(f.Cause, "(no code)")] += f.N
		o.Failures += f.N
	}
	o.ByFamily = barsSVG("Failed attempts in 30 days by family", countBars(byFamily, sevBad))
	o.ByCause = barsSVG("Failed attempts in 30 days by cause", countBars(byCause, sevBad))
	o.Uptime = barsSVG("Share of time online, devices with and without a valid certificate", uptimeBars(fleet, online, now))

	for _, d := range fleet {
		if d.Severity == sevWarn || d.Severity == sevBad || !d.NotAfter.IsZero() && d.NotAfter.Sub(now) < 14*24*time.Hour {
			o.Approaching = append(o.Approaching, d)
		}
	}
	slices.SortFunc(o.Approaching, func(a, b fleetDevice) int { return deviceQuery{}.compare(&a, &b) })
	o.Approaching = o.Approaching[:min(10, len(o.Approaching))]
	return o
}

// countBars turns counts into bars, largest first, then by label.
func countBars(m map[string]int, sev string) []bar {
	out := make([]bar, 0, len(m))
	for k, n := range m {
		out = append(out, bar{Label: k, N: n, Severity: sev})
	}
	slices.SortFunc(out, func(a, b bar) int { return cmp.Or(cmp.Compare(b.N, a.N), cmp.Compare(a.Label, b.Label)) })
	return out
}

// keysAll returns the keys of m, sorted, the empty one included.
func keysAll(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// gatherOverview reads what the overview shows: the fleet (two queries), one attempt
// history per rate window and the failures of 30 days.
func (s *server) gatherOverview(ctx context.Context, group string) (overview, error) {
	now := s.cfg.Now()
	fleet, err := s.loadFleet(ctx, now)
	if err != nil {
		return overview{}, err
	}
	var hist [][]inventory.AttemptBucket
	for _, w := range rateWindows() {
		h, err := s.cfg.Store.AttemptHistory(ctx, w.since(now), w.Width, w.N)
		if err != nil {
			return overview{}, err
		}
		hist = append(hist, h)
	}
	fails, err := s.cfg.Store.Failures(ctx, now.Add(-30*24*time.Hour))
	if err != nil {
		return overview{}, err
	}
	var online []map[string]time.Duration
	for _, w := range uptimeWindows {
		m, err := s.cfg.Store.OnlineTime(ctx, now.Add(-w.Width), now)
		if err != nil {
			return overview{}, err
		}
		online = append(online, m)
	}
	completeFleet(fleet, s.cfg.Policy(), now)
	o := buildOverview(fleet, hist, fails, online, group, now)
	if s.cfg.Online != nil {
		o.Online = s.cfg.Online()
	}
	return o, nil
}

// uptimeWindows are the periods of the overview's "health against uptime": the share of
// each period the devices were online, from the presence history (inventory.OnlineTime).
var uptimeWindows = []struct {
	Name  string
	Width time.Duration
}{{"24 h", 24 * time.Hour}, {"7 d", 7 * 24 * time.Hour}}

// validCert reports whether d holds a certificate that works now: one that has not expired
// and is not revoked.
func validCert(d fleetDevice, now time.Time) bool {
	return !d.NotAfter.IsZero() && now.Before(d.NotAfter) && !slices.Contains(d.Problems, monitor.ProblemRevoked)
}

// uptimeBars are, for each of uptimeWindows, the share of the period that the devices with
// a valid certificate, and those without, were online: their time online (online[i], by
// device) over the group's size times the period. A device counts whole periods, also one
// enrolled during it.
func uptimeBars(fleet []fleetDevice, online []map[string]time.Duration, now time.Time) []bar {
	var out []bar
	for i, w := range uptimeWindows {
		var on [2]time.Duration // valid, not valid
		var n [2]int
		for _, d := range fleet {
			g := 1
			if validCert(d, now) {
				g = 0
			}
			n[g]++
			if i < len(online) {
				on[g] += min(online[i][d.ID], w.Width)
			}
		}
		for g, label := range []string{"valid certificate", "no valid one"} {
			b := bar{Label: label + ", " + w.Name, Severity: sevOK}
			if g == 1 {
				b.Severity = sevBad
			}
			// Counted in minutes, the bars' ints.
			b.N, b.Of = int(on[g]/time.Minute), n[g]*int(w.Width/time.Minute)
			b.Value = fmt.Sprintf("%d device(s): none", n[g])
			if b.Of > 0 {
				b.Value = fmt.Sprintf("%.0f %% online, %d device(s)", 100*float64(b.N)/float64(b.Of), n[g])
			} else {
				b.Of = 1
			}
			out = append(out, b)
		}
	}
	return out
}

func (s *server) overview(w http.ResponseWriter, r *http.Request) {
	group := r.URL.Query().Get("group")
	if group != "class" {
		group = "family"
	}
	o, err := s.gatherOverview(r.Context(), group)
	if err != nil {
		s.cfg.Logger.Error("overview", "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, "The inventory could not be read: "+err.Error())
		return
	}
	s.render(w, r, http.StatusOK, "index.html", page{Title: "Overview", Nav: "overview", Refresh: true, Now: o.Now, Data: o})
}
