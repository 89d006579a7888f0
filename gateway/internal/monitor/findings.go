package monitor

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hearth-pki/hearth/protocol"
)

// FindingKind names what a Finding says is wrong. The kinds are on the wire (alert payloads,
// bridge events, Home Assistant attributes): the list is append-only, and addon/DOCS.md
// documents each.
type FindingKind string

// The finding kinds.
const (
	// FindingFamilyFailures: Rules.GroupDevices devices or more of one family failed within
	// Rules.Window. One finding per family, not one per device.
	FindingFamilyFailures FindingKind = "family_failures"
	// FindingClassFailures: the same for a policy class, when the failing devices are of
	// more than one family and none of their families has a FindingFamilyFailures open
	// (that one already tells of the incident).
	FindingClassFailures FindingKind = "class_failures"
	// FindingFamilyRate: a family's failure rate over the last window is far above its own
	// baseline (the rate of its earlier windows).
	FindingFamilyRate FindingKind = "family_failure_rate"
	// FindingRepeatedCause: one device failed Rules.Repeated times in a row with one cause.
	FindingRepeatedCause FindingKind = "repeated_cause"
	// FindingSlowRenewal: a renewal took Rules.SlowFactor times the fleet's median or more.
	FindingSlowRenewal FindingKind = "slow_renewal"
	// FindingIssuerChanged: a device reports a certificate from another issuer than the hub's.
	FindingIssuerChanged FindingKind = "issuer_changed"
	// FindingRenewalSkipped: a device reached the end of its renewal window without renewing.
	FindingRenewalSkipped FindingKind = "renewal_skipped"
	// FindingHubCertificate: one of the hub's own certificates (root, intermediate, broker)
	// is within Rules.HubWarning of its expiry.
	FindingHubCertificate FindingKind = "hub_certificate_expiring"
	// FindingReminder: a device without an agent (imported) reached a reminder threshold
	// before its certificate expires: a person must renew it.
	FindingReminder FindingKind = "renewal_reminder"
	// FindingHelpRequested: a resident pressed "Request help" on the dashboard's resident
	// view (issue 14), for one device or for the home. Each request is one finding
	// (Finding.Once): it is never open and never resolved.
	FindingHelpRequested FindingKind = "help_requested"
)

// FindingKinds returns every kind, in the order of the list.
func FindingKinds() []FindingKind {
	return []FindingKind{FindingFamilyFailures, FindingClassFailures, FindingFamilyRate, FindingRepeatedCause,
		FindingSlowRenewal, FindingIssuerChanged, FindingRenewalSkipped, FindingHubCertificate, FindingReminder,
		FindingHelpRequested}
}

// Finding is something wrong the Detector found, or its end.
type Finding struct {
	Kind FindingKind
	// Key identifies the problem: the same key is the same problem, raised once and
	// resolved once ("family_failures/plug", "repeated_cause/cam-1/timeout").
	Key      string
	Resolved bool
	DeviceID string   // the device, for a device's finding
	Family   string   // the device's or the group's family
	Class    string   // the device's or the group's class
	Devices  []string // a group finding: the devices failing, sorted
	Cause    protocol.Cause
	Message  string
	At       time.Time
	// Once marks a finding that tells of an event rather than of a state (a help request):
	// it is raised once, kept neither open nor for a resolution.
	Once bool
}

// Rules tune the Detector; the zero value of a field is its default.
type Rules struct {
	GroupDevices int           // devices of one family or class failing within Window: default 3
	Window       time.Duration // default 1h
	RateFactor   float64       // a window's failure rate above RateFactor × baseline (and baseline + 0.2): default 3
	RateAttempts int           // least attempts in a window for a rate finding: default 10
	Repeated     int           // failures in a row with one cause: default 3
	SlowFactor   float64       // latency over SlowFactor × the fleet's median: default 10
	SlowSamples  int           // least renewals seen before latency is judged: default 20
	HubWarning   time.Duration // hub certificate expiry warning: default 30 days
}

func (r Rules) withDefaults() Rules {
	if r.GroupDevices <= 0 {
		r.GroupDevices = 3
	}
	if r.Window <= 0 {
		r.Window = time.Hour
	}
	if r.RateFactor <= 0 {
		r.RateFactor = 3
	}
	if r.RateAttempts <= 0 {
		r.RateAttempts = 10
	}
	if r.Repeated <= 0 {
		r.Repeated = 3
	}
	if r.SlowFactor <= 0 {
		r.SlowFactor = 10
	}
	if r.SlowSamples <= 0 {
		r.SlowSamples = 20
	}
	if r.HubWarning <= 0 {
		r.HubWarning = 30 * 24 * time.Hour
	}
	return r
}

// Attempt is one renewal attempt that ended, as the Detector hears of it.
type Attempt struct {
	DeviceID string
	Family   string
	Class    string
	OK       bool           // committed
	Cause    protocol.Cause // a failure's
	Latency  time.Duration  // request to end; zero when unknown
	At       time.Time
}

// latencySamples is how many recent successful renewals the fleet median is taken over.
const latencySamples = 255

// Detector finds anomalies incrementally: each observation costs time independent of the
// fleet's size (a family's failing devices, one device's streak, a fixed window of recent
// latencies), and memory is one small entry per device that failed or renewed recently.
// It is not safe for concurrent use: one goroutine (alert.Alerter.Run) owns it.
type Detector struct {
	r        Rules
	families map[string]*group
	classes  map[string]*group
	devices  map[string]*streak
	lat      []time.Duration // ring of recent successful latencies
	latNext  int
	open     map[string]Finding // raised and not resolved, by key
}

// group is a family's or a class's recent failures.
type group struct {
	failing map[string]failure // device → its latest failure within the window
	// The rate: counts of the current window, and the baseline of the earlier ones.
	start              time.Time
	attempts, failures int
	baseline           float64
	windows            int // windows the baseline is made of
}

// failure is a device's latest failure in a group.
type failure struct {
	at     time.Time
	family string
}

// streak is one device's run of failures with one cause.
type streak struct {
	cause protocol.Cause
	n     int
}

// NewDetector returns a Detector with rules r.
func NewDetector(r Rules) *Detector {
	return &Detector{r: r.withDefaults(), families: map[string]*group{}, classes: map[string]*group{},
		devices: map[string]*streak{}, open: map[string]Finding{}}
}

// Open returns the findings raised and not resolved, sorted by key.
func (d *Detector) Open() []Finding {
	out := make([]Finding, 0, len(d.open))
	for _, f := range d.open {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// raise returns f if its key is not open, and records it open.
func (d *Detector) raise(out []Finding, f Finding) []Finding {
	if _, ok := d.open[f.Key]; ok {
		return out
	}
	d.open[f.Key] = f
	return append(out, f)
}

// resolve returns the resolution of the open finding key, if it is open.
func (d *Detector) resolve(out []Finding, key, msg string, at time.Time) []Finding {
	f, ok := d.open[key]
	if !ok {
		return out
	}
	delete(d.open, key)
	f.Resolved, f.Message, f.At = true, msg, at
	return append(out, f)
}

// Observe takes one attempt that ended and returns the findings it raised or resolved.
func (d *Detector) Observe(a Attempt) []Finding {
	var out []Finding
	out = d.observeGroup(out, d.families, FindingFamilyFailures, "family", a.Family, a)
	out = d.observeGroup(out, d.classes, FindingClassFailures, "class", a.Class, a)
	out = d.observeStreak(out, a)
	if a.OK && a.Latency > 0 {
		out = d.observeLatency(out, a)
	}
	return out
}

func (d *Detector) observeGroup(out []Finding, groups map[string]*group, kind FindingKind, what, name string, a Attempt) []Finding {
	if name == "" {
		return out
	}
	g := groups[name]
	if g == nil {
		g = &group{failing: map[string]failure{}, start: a.At}
		groups[name] = g
	}
	out = d.age(out, g, kind, what, name, a.At)
	g.attempts++
	if a.OK {
		delete(g.failing, a.DeviceID)
	} else {
		g.failures++
		g.failing[a.DeviceID] = failure{at: a.At, family: a.Family}
	}
	key := string(kind) + "/" + name
	if len(g.failing) >= d.r.GroupDevices && (kind == FindingFamilyFailures || g.families() > 1 && !d.familyOpen(g)) {
		devs := slices.Sorted(maps.Keys(g.failing))
		f := Finding{Kind: kind, Key: key, Devices: devs, Cause: a.Cause, At: a.At,
			Message: fmt.Sprintf("%d devices of %s %s failed to renew within %s: %s", len(devs), what, name, d.r.Window, strings.Join(devs, ", "))}
		if kind == FindingFamilyFailures {
			f.Family = name
		} else {
			f.Class = name
		}
		out = d.raise(out, f)
	} else if len(g.failing) == 0 {
		out = d.resolve(out, key, fmt.Sprintf("every device of %s %s renews again", what, name), a.At)
	}
	if kind == FindingFamilyFailures {
		out = d.judgeRate(out, g, name, a.At)
	}
	return out
}

// age drops failures older than the window and rolls the rate window, resolving what ends.
func (d *Detector) age(out []Finding, g *group, kind FindingKind, what, name string, now time.Time) []Finding {
	had := len(g.failing)
	for id, f := range g.failing {
		if now.Sub(f.at) > d.r.Window {
			delete(g.failing, id)
		}
	}
	if had > 0 && len(g.failing) == 0 {
		out = d.resolve(out, string(kind)+"/"+name, fmt.Sprintf("no device of %s %s failed for %s", what, name, d.r.Window), now)
	}
	if kind != FindingFamilyFailures || now.Sub(g.start) < d.r.Window {
		return out
	}
	// A window ended: it joins the baseline (a running mean), and its rate finding ends.
	if g.attempts > 0 {
		rate := float64(g.failures) / float64(g.attempts)
		g.baseline = (g.baseline*float64(g.windows) + rate) / float64(g.windows+1)
		g.windows = min(g.windows+1, 24) // the mean follows the last day or so of windows
	}
	g.start, g.attempts, g.failures = now, 0, 0
	return d.resolve(out, string(FindingFamilyRate)+"/"+name, fmt.Sprintf("family %s fails at its usual rate again", name), now)
}

// families counts the families of the failing devices.
func (g *group) families() int {
	seen := map[string]bool{}
	for _, f := range g.failing {
		seen[f.family] = true
	}
	return len(seen)
}

// familyOpen reports whether a family of the group's failing devices has its own finding open.
func (d *Detector) familyOpen(g *group) bool {
	for _, f := range g.failing {
		if _, ok := d.open[string(FindingFamilyFailures)+"/"+f.family]; ok {
			return true
		}
	}
	return false
}

// judgeRate raises a rate finding when the current window's failure rate is far above the
// family's baseline; a family without a baseline yet (its first window) is not judged.
func (d *Detector) judgeRate(out []Finding, g *group, family string, now time.Time) []Finding {
	if g.windows == 0 || g.attempts < d.r.RateAttempts {
		return out
	}
	rate := float64(g.failures) / float64(g.attempts)
	if rate <= g.baseline*d.r.RateFactor || rate <= g.baseline+0.2 {
		return out
	}
	return d.raise(out, Finding{Kind: FindingFamilyRate, Key: string(FindingFamilyRate) + "/" + family, Family: family, At: now,
		Message: fmt.Sprintf("family %s: %d of %d renewals failed in the current window (%.0f%%), its baseline is %.0f%%",
			family, g.failures, g.attempts, 100*rate, 100*g.baseline)})
}

func (d *Detector) observeStreak(out []Finding, a Attempt) []Finding {
	s := d.devices[a.DeviceID]
	if a.OK {
		if s != nil {
			out = d.resolve(out, string(FindingRepeatedCause)+"/"+a.DeviceID+"/"+string(s.cause),
				fmt.Sprintf("device %s renewed", a.DeviceID), a.At)
			delete(d.devices, a.DeviceID)
		}
		return out
	}
	if s == nil {
		s = &streak{}
		d.devices[a.DeviceID] = s
	}
	if s.cause != a.Cause {
		out = d.resolve(out, string(FindingRepeatedCause)+"/"+a.DeviceID+"/"+string(s.cause),
			fmt.Sprintf("device %s now fails with %s", a.DeviceID, a.Cause), a.At)
		s.cause, s.n = a.Cause, 0
	}
	s.n++
	if s.n >= d.r.Repeated {
		info, _ := a.Cause.Info()
		out = d.raise(out, Finding{Kind: FindingRepeatedCause, Key: string(FindingRepeatedCause) + "/" + a.DeviceID + "/" + string(a.Cause),
			DeviceID: a.DeviceID, Family: a.Family, Class: a.Class, Cause: a.Cause, At: a.At,
			Message: fmt.Sprintf("device %s failed %d times in a row with %s (%s: %s)", a.DeviceID, s.n, a.Cause, info.Class, info.Description)})
	}
	return out
}

func (d *Detector) observeLatency(out []Finding, a Attempt) []Finding {
	key := string(FindingSlowRenewal) + "/" + a.DeviceID
	if len(d.lat) >= d.r.SlowSamples {
		med := median(d.lat)
		if med > 0 && float64(a.Latency) >= d.r.SlowFactor*float64(med) {
			out = d.raise(out, Finding{Kind: FindingSlowRenewal, Key: key, DeviceID: a.DeviceID, Family: a.Family, Class: a.Class, At: a.At,
				Message: fmt.Sprintf("device %s took %s to renew, %.0f× the fleet's median of %s", a.DeviceID,
					a.Latency.Round(time.Millisecond), float64(a.Latency)/float64(med), med.Round(time.Millisecond))})
		} else {
			out = d.resolve(out, key, fmt.Sprintf("device %s renews at the fleet's pace again", a.DeviceID), a.At)
		}
	}
	if len(d.lat) < latencySamples {
		d.lat = append(d.lat, a.Latency)
	} else {
		d.lat[d.latNext] = a.Latency
		d.latNext = (d.latNext + 1) % latencySamples
	}
	return out
}

// IssuerChanged raises the finding that device id reports a certificate from issuer, not
// the hub's; the device's next commit resolves it (Renewed).
func (d *Detector) IssuerChanged(id, family, class, issuer string, at time.Time) []Finding {
	return d.raise(nil, Finding{Kind: FindingIssuerChanged, Key: string(FindingIssuerChanged) + "/" + id, DeviceID: id, Family: family,
		Class: class, At: at, Message: fmt.Sprintf("device %s reports a certificate issued by %q, not by the hub", id, issuer)})
}

// Skipped raises the finding that device id reached the end of its renewal window without
// renewing; its next commit resolves it (Renewed).
func (d *Detector) Skipped(id, family, class, detail string, at time.Time) []Finding {
	return d.raise(nil, Finding{Kind: FindingRenewalSkipped, Key: string(FindingRenewalSkipped) + "/" + id, DeviceID: id,
		Family: family, Class: class, At: at, Message: fmt.Sprintf("device %s did not renew in its window: %s", id, detail)})
}

// Renewed resolves the device's findings a renewal ends: a skipped window, another issuer,
// its reminders. Its cost is the number of open findings, not of devices.
func (d *Detector) Renewed(id string, at time.Time) []Finding {
	out := d.resolve(nil, string(FindingRenewalSkipped)+"/"+id, fmt.Sprintf("device %s renewed", id), at)
	out = d.resolve(out, string(FindingIssuerChanged)+"/"+id, fmt.Sprintf("device %s renewed with the hub", id), at)
	prefix := string(FindingReminder) + "/" + id + "/"
	for _, key := range slices.Sorted(maps.Keys(d.open)) {
		if strings.HasPrefix(key, prefix) {
			out = d.resolve(out, key, fmt.Sprintf("device %s has a new certificate", id), at)
		}
	}
	return out
}

// Reminder raises the reminder that device id, which has no agent, reached threshold (as
// the renewal scheduler names it, e.g. "7d") before its certificate expires at expires; its
// next certificate resolves it (Renewed). Each threshold is raised once.
func (d *Detector) Reminder(id, family, class, threshold string, expires, at time.Time) []Finding {
	return d.raise(nil, Finding{Kind: FindingReminder, Key: string(FindingReminder) + "/" + id + "/" + threshold, DeviceID: id,
		Family: family, Class: class, At: at,
		Message: fmt.Sprintf("device %s has no agent: renew its certificate by hand before it expires %s (%s left)", id, stamp(expires), expires.Sub(at).Round(time.Hour))})
}

// HelpRequested raises the finding that someone (actor) asked for help with device id, or
// with the home when id is "", at at, with their message and the device's problems. key
// tells requests apart (the audit record's sequence number): each is its own finding, Once.
func (d *Detector) HelpRequested(key, id, family, class, actor, message string, problems []string, at time.Time) []Finding {
	what := "the home"
	if id != "" {
		what = "device " + id
	}
	msg := fmt.Sprintf("%s asks for help with %s: %s", cmp.Or(actor, "a resident"), what, message)
	if len(problems) > 0 {
		msg += " (problems: " + strings.Join(problems, ", ") + ")"
	}
	return []Finding{{Kind: FindingHelpRequested, Key: string(FindingHelpRequested) + "/" + key, DeviceID: id, Family: family,
		Class: class, At: at, Message: msg, Once: true}}
}

// HubCertificates judges the hub's own certificates (name → not-after) at now: each within
// Rules.HubWarning of its expiry raises a finding, which its replacement resolves.
func (d *Detector) HubCertificates(certs map[string]time.Time, now time.Time) []Finding {
	var out []Finding
	for _, name := range slices.Sorted(maps.Keys(certs)) {
		key := string(FindingHubCertificate) + "/" + name
		if left := certs[name].Sub(now); left <= d.r.HubWarning {
			out = d.raise(out, Finding{Kind: FindingHubCertificate, Key: key, At: now,
				Message: fmt.Sprintf("the hub's %s certificate expires %s (in %s)", name, stamp(certs[name]), left.Round(time.Hour))})
		} else {
			out = d.resolve(out, key, fmt.Sprintf("the hub's %s certificate is valid until %s", name, stamp(certs[name])), now)
		}
	}
	return out
}

// Tick ages every group at now: failures leave the window, rate windows roll. Its cost is
// the number of groups (families and classes), not devices.
func (d *Detector) Tick(now time.Time) []Finding {
	var out []Finding
	for name, g := range d.families {
		out = d.age(out, g, FindingFamilyFailures, "family", name, now)
	}
	for name, g := range d.classes {
		out = d.age(out, g, FindingClassFailures, "class", name, now)
	}
	return out
}

// median returns the median of ds (which it does not change).
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
