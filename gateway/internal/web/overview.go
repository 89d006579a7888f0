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
// rateWindows and the failures of the last 30 days: pure.
func buildOverview(fleet []fleetDevice, hist [][]inventory.AttemptBucket, fails []inventory.FailureCount, group string, now time.Time) overview {
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
	var withCert, withCertOnline, without, withoutOnline int
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
		valid := !d.NotAfter.IsZero() && now.Before(d.NotAfter) && !slices.Contains(d.Problems, monitor.ProblemRevoked)
		if valid {
			withCert++
			if d.Online {
				withCertOnline++
			}
			p := pops[g]
			if p == nil {
				p = &population{Name: cmp.Or(g, "(none)")}
				pops[g] = p
			}
			p.Counts[lifetimeBucket(d.NotAfter.Sub(d.NotBefore))]++
		} else {
			without++
			if d.Online {
				withoutOnline++
			}
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
	o.Uptime = barsSVG("Devices online now, with and without a valid certificate", []bar{
		{Label: "valid certificate", N: withCertOnline, Of: max(1, withCert), Severity: sevOK},
		{Label: "no valid certificate", N: withoutOnline, Of: max(1, without), Severity: sevBad},
	})

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
	completeFleet(fleet, s.cfg.Policy(), now)
	o := buildOverview(fleet, hist, fails, group, now)
	if s.cfg.Online != nil {
		o.Online = s.cfg.Online()
	}
	return o, nil
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
