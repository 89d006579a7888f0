package web

import (
	"cmp"
	"context"
	"html/template"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/monitor"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

// fleetDevice is one device as every fleet page shows it: its summary judged by
// monitor.Judge, its renewal window under the policy in force, and a plain-language status.
type fleetDevice struct {
	protocol.DeviceSummary
	Manual    bool // certificates installed by a person (imported or signed by hand)
	NotBefore time.Time
	Severity  string // sevOK, sevWarn, sevBad or sevNone
	// Window, Status and Attention are set by complete (judgeDevice completes only manual
	// devices, whose Attention changes their Severity): Window is zero without an active
	// certificate; Status says in a few words where the device stands, e.g. "renews itself
	// in 20 d" or "renew by hand: 12 d left"; Attention is true when a person should look at
	// it even though it has no problem (a manual device whose renewal window is open).
	Window    policy.Window
	Status    string
	Attention bool
	tags      []string
	completed bool
}

// badProblems are the problems that mean the device cannot (or soon will not) connect.
var badProblems = []string{monitor.ProblemExpired, monitor.ProblemRevoked, monitor.ProblemNoCertificate, monitor.ProblemRenewalFailing}

// judgeFleet judges inventory records at now: pure, one pass. The devices are not
// completed (see fleetDevice) except the manual ones; completeFleet or complete finishes
// those a page shows, so that listing 10,000 devices computes 50 windows, not 10,000.
func judgeFleet(recs []inventory.DeviceRecord, pol *policy.Policy, now time.Time) []fleetDevice {
	if pol == nil {
		pol = policy.Default()
	}
	out := make([]fleetDevice, len(recs))
	// Judging is pure and independent per device: large fleets are split over the CPUs, so a
	// cold page at 10,000 devices waits for the slowest part, not the sum (the goroutines
	// end before judgeFleet returns).
	parts := min(runtime.GOMAXPROCS(0), 1+len(recs)/1000)
	var wg sync.WaitGroup
	for p := range parts {
		lo, hi := p*len(recs)/parts, (p+1)*len(recs)/parts
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				out[i] = judgeDevice(recs[i], pol, now)
			}
		})
	}
	wg.Wait()
	return out
}

// completeFleet completes every device of fleet.
func completeFleet(fleet []fleetDevice, pol *policy.Policy, now time.Time) {
	for i := range fleet {
		fleet[i].complete(pol, now)
	}
}

// judgeDevice is judgeFleet for one device.
func judgeDevice(r inventory.DeviceRecord, pol *policy.Policy, now time.Time) fleetDevice {
	d := r.Device
	v := monitor.Judge(d, r.Active, pol, now)
	f := fleetDevice{DeviceSummary: monitor.SummaryOf(d, r.Active, v), Manual: d.Mechanism == inventory.MechanismManual, tags: d.Tags}
	if r.Active != nil {
		f.NotBefore = r.Active.NotBefore
	}
	// The class the policy in force chooses: the stored one is the same unless it is stale
	// (inventory.Reclassify), and the device list's class filter answers by this one.
	c, _ := pol.ClassFor(policy.Subject{DeviceID: d.ID, Family: d.Family, Tags: d.Tags})
	f.Class = c.Name
	switch {
	case slices.ContainsFunc(f.Problems, func(p string) bool { return slices.Contains(badProblems, p) }):
		f.Severity = sevBad
	case len(f.Problems) > 0:
		f.Severity = sevWarn
	case r.Active == nil:
		f.Severity = sevNone
	default:
		f.Severity = sevOK
	}
	if f.Manual {
		f.complete(pol, now)
	}
	return f
}

// complete computes f's window, status and attention (once).
func (f *fleetDevice) complete(pol *policy.Policy, now time.Time) {
	if f.completed {
		return
	}
	f.completed = true
	if pol == nil {
		pol = policy.Default()
	}
	if !f.NotAfter.IsZero() {
		f.Window = pol.Window(policy.Subject{DeviceID: f.ID, Family: f.Family, Tags: f.tags},
			policy.CertInfo{Serial: f.Serial, NotBefore: f.NotBefore, NotAfter: f.NotAfter}, now)
	}
	f.Status, f.Attention = status(*f, now)
	if f.Attention && f.Severity == sevOK {
		f.Severity = sevWarn
	}
}

// status says where a device stands in its certificate's life, in a few words, and whether
// a person should act although Judge found no problem.
func status(f fleetDevice, now time.Time) (string, bool) {
	switch {
	case slices.Contains(f.Problems, monitor.ProblemRevoked):
		return "revoked: enroll it again", false
	case f.NotAfter.IsZero() && f.State == inventory.StateEnrolling:
		return "enrolling: waiting for its first certificate", false
	case f.NotAfter.IsZero():
		return "no certificate", false
	case !now.Before(f.NotAfter):
		return "expired " + formatDuration(now.Sub(f.NotAfter)) + " ago", false
	case slices.Contains(f.Problems, monitor.ProblemRenewalFailing):
		return "renewal failing: retrying, " + formatDuration(f.NotAfter.Sub(now)) + " left", false
	}
	left := formatDuration(f.NotAfter.Sub(now))
	phase := f.Window.Phase(now)
	if f.Manual {
		if phase >= policy.PhaseOpen {
			return "renew by hand: " + left + " left", true
		}
		return "renew by hand from " + formatDay(f.Window.Start), false
	}
	switch phase {
	case policy.PhaseWaiting:
		return "renews itself in " + formatDuration(f.Window.Start.Sub(now)), false
	case policy.PhaseOpen:
		return "renewing now (window open)", false
	}
	return "overdue: " + left + " left", false
}

// formatDay shows the date of t without the time: "2026-03-13".
func formatDay(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02")
}

// DefaultFleetMaxAge is how long one read of the whole fleet serves the fleet pages unless
// Config.FleetMaxAge says otherwise.
const DefaultFleetMaxAge = 2 * time.Second

// fleetCache keeps the last judged fleet, so that a burst of page views (a person paging
// through 10,000 devices, several viewers, the 30-second refresh) reads and judges the
// fleet once, not once a page. It is dropped when older than Config.FleetMaxAge, when the
// policy in force changes, and when the dashboard itself changed something.
type fleetCache struct {
	mu    sync.Mutex
	at    time.Time
	pol   *policy.Policy
	fleet []fleetDevice
}

// invalidate drops the cached fleet.
func (c *fleetCache) invalidate() {
	c.mu.Lock()
	c.fleet = nil
	c.mu.Unlock()
}

// loadFleet returns the whole fleet judged at now, not completed: one query
// (inventory.Store.Fleet), or none when the cache holds a fleet judged at most FleetMaxAge
// before now. The caller owns the slice it gets.
func (s *server) loadFleet(ctx context.Context, now time.Time) ([]fleetDevice, error) {
	pol := s.cfg.Policy()
	c := &s.fleet
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fleet != nil && c.pol == pol && !now.Before(c.at) && now.Sub(c.at) < s.cfg.FleetMaxAge {
		return slices.Clone(c.fleet), nil
	}
	recs, err := s.cfg.Store.Fleet(ctx)
	if err != nil {
		return nil, err
	}
	fleet := judgeFleet(recs, pol, now)
	if s.cfg.FleetMaxAge > 0 {
		c.at, c.pol, c.fleet = now, pol, slices.Clone(fleet)
	}
	return fleet, nil
}

// deviceQuery is the device list's search, filters, sort and page, from the query string.
type deviceQuery struct {
	Q       string // matches id, name or family, case-insensitively
	Family  string
	Class   string
	State   string
	Problem string // a problem code, "any" or "none"
	Online  string // "yes", "no" or ""
	Sort    string // one of deviceSorts
	Page    int    // 1-based
}

// deviceSorts are the list's orders; the first is the default.
var deviceSorts = []struct{ Key, Label string }{
	{"attention", "Needs attention first"}, {"expiry", "Expires soonest"}, {"id", "Device id"},
	{"name", "Name"}, {"seen", "Last seen"},
}

// PageSize is the number of devices on one page of the device list.
const PageSize = 50

// parseDeviceQuery reads a deviceQuery; unknown values fall back to the defaults.
func parseDeviceQuery(get func(string) string) deviceQuery {
	q := deviceQuery{Q: strings.TrimSpace(get("q")), Family: get("family"), Class: get("class"), State: get("state"),
		Problem: get("problem"), Online: get("online"), Sort: get("sort"), Page: 1}
	if !slices.ContainsFunc(deviceSorts, func(s struct{ Key, Label string }) bool { return s.Key == q.Sort }) {
		q.Sort = deviceSorts[0].Key
	}
	if q.Online != "yes" && q.Online != "no" {
		q.Online = ""
	}
	if n, err := strconv.Atoi(get("page")); err == nil && n > 0 {
		q.Page = n
	}
	return q
}

// Values is q as a query string without the page, for the pager's links (each value
// escaped here, so the template must not escape it again).
func (q deviceQuery) Values() template.URL {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+url.QueryEscape(v))
		}
	}
	add("q", q.Q)
	add("family", q.Family)
	add("class", q.Class)
	add("state", q.State)
	add("problem", q.Problem)
	add("online", q.Online)
	if q.Sort != deviceSorts[0].Key {
		add("sort", q.Sort)
	}
	return template.URL(strings.Join(parts, "&"))
}

// match reports whether d passes q's search and filters.
func (q deviceQuery) match(d *fleetDevice) bool {
	if q.Family != "" && d.Family != q.Family || q.Class != "" && d.Class != q.Class || q.State != "" && d.State != q.State {
		return false
	}
	if q.Online == "yes" && !d.Online || q.Online == "no" && d.Online {
		return false
	}
	switch q.Problem {
	case "":
	case "any":
		if len(d.Problems) == 0 && !d.Attention {
			return false
		}
	case "none":
		if len(d.Problems) > 0 || d.Attention {
			return false
		}
	default:
		if !slices.Contains(d.Problems, q.Problem) {
			return false
		}
	}
	if q.Q != "" {
		needle := strings.ToLower(q.Q)
		if !strings.Contains(strings.ToLower(d.ID), needle) && !strings.Contains(strings.ToLower(d.Name), needle) &&
			!strings.Contains(strings.ToLower(d.Family), needle) {
			return false
		}
	}
	return true
}

// severityRank orders severities, worst first.
func severityRank(s string) int {
	switch s {
	case sevBad:
		return 0
	case sevWarn:
		return 1
	case sevNone:
		return 2
	}
	return 3
}

// compareDevices orders two devices by q.Sort, ties by id.
func (q deviceQuery) compare(a, b *fleetDevice) int {
	expiry := func() int {
		if za, zb := a.NotAfter.IsZero(), b.NotAfter.IsZero(); za != zb {
			if za {
				return 1
			}
			return -1
		}
		return a.NotAfter.Compare(b.NotAfter)
	}
	var c int
	switch q.Sort {
	case "expiry":
		c = expiry()
	case "name":
		c = cmp.Compare(strings.ToLower(cmp.Or(a.Name, a.ID)), strings.ToLower(cmp.Or(b.Name, b.ID)))
	case "seen":
		c = b.LastSeen.Compare(a.LastSeen)
	case "id":
	default:
		c = cmp.Or(cmp.Compare(severityRank(a.Severity), severityRank(b.Severity)), expiry())
	}
	return cmp.Or(c, cmp.Compare(a.ID, b.ID))
}

// devicePage is one page of the device list.
type devicePage struct {
	Query    deviceQuery
	Devices  []fleetDevice
	Matched  int // devices matching the filters
	Total    int // devices in the inventory
	Pages    int
	Families []string // the filter's choices, from the whole fleet
	Classes  []string
	States   []string
	Problems []string
	Sorts    []struct{ Key, Label string }
	Online   int
}

// listDevices filters, sorts and pages the fleet: pure, O(n log n) in the matching devices.
func listDevices(fleet []fleetDevice, q deviceQuery) devicePage {
	p := devicePage{Query: q, Total: len(fleet), Sorts: deviceSorts, Problems: monitor.Codes()}
	families, classes, states := map[string]bool{}, map[string]bool{}, map[string]bool{}
	matched := make([]*fleetDevice, 0, len(fleet))
	for i := range fleet {
		d := &fleet[i]
		families[d.Family], classes[d.Class], states[d.State] = true, true, true
		if d.Online {
			p.Online++
		}
		if q.match(d) {
			matched = append(matched, d)
		}
	}
	p.Families, p.Classes, p.States = keys(families), keys(classes), keys(states)
	slices.SortFunc(matched, q.compare)
	p.Matched = len(matched)
	p.Pages = max(1, (len(matched)+PageSize-1)/PageSize)
	p.Query.Page = min(q.Page, p.Pages)
	from := (p.Query.Page - 1) * PageSize
	for _, d := range matched[from:min(from+PageSize, len(matched))] {
		p.Devices = append(p.Devices, *d)
	}
	return p
}

// keys returns the non-empty keys of m, sorted.
func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		if k != "" {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}
