package web

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
)

// campaignView is one campaign on the campaigns page.
type campaignView struct {
	inventory.CampaignSummary
	Selector string
	Progress template.HTML
	Canaries map[string]int // canary devices by stage
	CanaryN  int
}

// campaignsView is the campaigns page's data.
type campaignsView struct {
	Campaigns []campaignView
}

// progressSVG draws a campaign's devices as one stacked bar: committed, failed, in flight,
// pending.
func progressSVG(c inventory.CampaignSummary) template.HTML {
	const w, h = 400.0, 14.0
	total := max(1, c.Total)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="plot progress" viewBox="0 0 %[1]s %[2]s" width="%[1]s" role="img" aria-label="%[3]d of %[4]d committed, %[5]d failed, %[6]d in flight, %[7]d pending">`,
		f1(w), f1(h), c.Committed, c.Total, c.Failed, c.InFlight, c.Pending)
	x := 0.0
	for _, seg := range []struct {
		class, what string
		n           int
	}{{"ok", "committed", c.Committed}, {"bad", "failed", c.Failed}, {"warn", "in flight", c.InFlight}, {"none", "pending", c.Pending}} {
		if seg.n == 0 {
			continue
		}
		sw := w * float64(seg.n) / float64(total)
		fmt.Fprintf(&b, `<rect class="bar %s" x="%s" y="0" width="%s" height="%s"><title>%d %s</title></rect>`, seg.class, f1(x), f1(sw), f1(h), seg.n, seg.what)
		x += sw
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func (s *server) campaigns(w http.ResponseWriter, r *http.Request) {
	cs, err := s.cfg.Store.Campaigns(r.Context())
	if err != nil {
		s.errorPage(w, r, http.StatusInternalServerError, "The campaigns could not be read: "+err.Error())
		return
	}
	canaries, err := s.cfg.Store.CampaignCanaries(r.Context())
	if err != nil {
		s.errorPage(w, r, http.StatusInternalServerError, "The campaigns could not be read: "+err.Error())
		return
	}
	byCampaign := map[string]map[string]int{}
	for _, c := range canaries {
		if byCampaign[c.CampaignID] == nil {
			byCampaign[c.CampaignID] = map[string]int{}
		}
		byCampaign[c.CampaignID][c.Stage] = c.N
	}
	var v campaignsView
	for _, c := range cs {
		sel := "every device"
		switch {
		case c.Family != "":
			sel = "family " + c.Family
		case c.Class != "":
			sel = "class " + c.Class
		}
		cv := campaignView{CampaignSummary: c, Selector: sel, Progress: progressSVG(c), Canaries: byCampaign[c.ID]}
		for _, n := range cv.Canaries {
			cv.CanaryN += n
		}
		v.Campaigns = append(v.Campaigns, cv)
	}
	slices.Reverse(v.Campaigns) // newest first
	s.render(w, r, http.StatusOK, "campaigns.html", page{Title: "Campaigns", Nav: "campaigns", Refresh: true, Data: v})
}

// classView is one policy class on the policy page, with the window it gives a certificate
// issued now and the devices in it.
type classView struct {
	Class       policy.Class
	Renew       string // when the window opens, in words
	Opens       time.Duration
	Ends        time.Duration
	Emergency   time.Duration
	Plot        template.HTML
	Devices     int
	Sample      []string // the first few device ids
	Keys        string
	MatchText   string
	DefaultName bool
}

// policyView is the policy page's data.
type policyView struct {
	Classes  []classView
	Backdate time.Duration
	Hash     string
}

// classWindow returns the nominal window (no jitter) of a certificate of class c issued at
// now: when it opens, when the hub pushes a command, when the emergency floor starts.
func classWindow(c policy.Class, now time.Time) (opens, ends, emergency time.Duration) {
	c.Jitter = 0
	w := c.Window(policy.CertInfo{Serial: "00", NotBefore: now, NotAfter: now.Add(c.Lifetime)}, now)
	return w.Start.Sub(now), w.End.Sub(now), w.EmergencyAt.Sub(now)
}

// windowSVG draws a class's lifetime as one bar: waiting, open window, overdue, emergency.
func windowSVG(c policy.Class, opens, ends, emergency time.Duration) template.HTML {
	const w, h = 400.0, 14.0
	life := float64(max(c.Lifetime, time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="plot window-bar" viewBox="0 0 %[1]s %[2]s" width="%[1]s" role="img" aria-label="Class %[3]s: a %[4]s certificate waits %[5]s, renews itself until %[6]s, is commanded until %[7]s, then renews at once">`,
		f1(w), f1(h), svgText(c.Name), formatDuration(c.Lifetime), formatDuration(opens), formatDuration(ends), formatDuration(emergency))
	x := 0.0
	for _, seg := range []struct {
		class, what string
		d           time.Duration
	}{{"none", "waiting", opens}, {"ok", "renewal window: the agent renews itself", ends - opens},
		{"warn", "overdue: the hub commands a renewal", emergency - ends}, {"bad", "emergency: renewed at once", c.Lifetime - emergency}} {
		sw := w * float64(seg.d) / life
		if sw <= 0 {
			continue
		}
		fmt.Fprintf(&b, `<rect class="bar %s" x="%s" y="0" width="%s" height="%s"><title>%s: %s</title></rect>`,
			seg.class, f1(x), f1(sw), f1(h), seg.what, formatDuration(seg.d))
		x += sw
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// classSample is the number of device ids the policy page shows per class.
const classSample = 5

// classMembers returns the devices of each class of pol: the classes the inventory stores
// under pol (inventory.ClassCounts, an aggregate over an index), with the classes of the few
// stale devices chosen here; only with more than maxStaleClasses of those (moments after a
// policy change) is the fleet read and judged.
func (s *server) classMembers(ctx context.Context, pol *policy.Policy, now time.Time) (map[string]inventory.ClassMembers, error) {
	hash := pol.ClassHash()
	stale, more, err := s.cfg.Store.StaleClasses(ctx, hash, cmp.Or(s.staleLimit, maxStaleClasses))
	if err != nil {
		return nil, err
	}
	out := map[string]inventory.ClassMembers{}
	add := func(class, id string) {
		m := out[class]
		m.Count++
		m.Sample = append(m.Sample, id)
		out[class] = m
	}
	if more {
		fleet, err := s.loadFleet(ctx, now)
		if err != nil {
			return nil, err
		}
		for _, d := range fleet {
			add(d.Class, d.ID)
		}
	} else {
		if out, err = s.cfg.Store.ClassCounts(ctx, hash, classSample); err != nil {
			return nil, err
		}
		for _, sub := range stale {
			c, _ := pol.ClassFor(policy.Subject{DeviceID: sub.ID, Family: sub.Family, Tags: sub.Tags})
			add(c.Name, sub.ID)
		}
	}
	for c, m := range out {
		slices.Sort(m.Sample)
		m.Sample = m.Sample[:min(len(m.Sample), classSample)]
		out[c] = m
	}
	return out, nil
}

func (s *server) policy(w http.ResponseWriter, r *http.Request) {
	now := s.cfg.Now()
	pol := s.cfg.Policy()
	members, err := s.classMembers(r.Context(), pol, now)
	if err != nil {
		s.errorPage(w, r, http.StatusInternalServerError, "The inventory could not be read: "+err.Error())
		return
	}
	v := policyView{Backdate: pol.Backdate, Hash: pol.Hash()}
	for i, c := range pol.Classes {
		opens, ends, emergency := classWindow(c, now)
		cv := classView{Class: c, Opens: opens, Ends: ends, Emergency: emergency, Plot: windowSVG(c, opens, ends, emergency),
			Devices: members[c.Name].Count, Sample: members[c.Name].Sample, DefaultName: i == 0}
		var keys []string
		for _, k := range c.Keys {
			keys = append(keys, k.String())
		}
		cv.Keys = strings.Join(keys, ", ")
		var m []string
		if len(c.Match.Devices) > 0 {
			m = append(m, "devices "+strings.Join(c.Match.Devices, ", "))
		}
		if len(c.Match.Tags) > 0 {
			m = append(m, "tags "+strings.Join(c.Match.Tags, ", "))
		}
		if len(c.Match.Families) > 0 {
			m = append(m, "families "+strings.Join(c.Match.Families, ", "))
		}
		cv.MatchText = strings.Join(m, "; ")
		v.Classes = append(v.Classes, cv)
	}
	s.render(w, r, http.StatusOK, "policy.html", page{Title: "Policy", Nav: "policy", Data: v})
}

// auditView is the audit page's data.
type auditView struct {
	Actor    string
	Actors   []string
	Events   []inventory.Event
	Older    int64
	Newer    bool
	Verified bool   // the chain was verified on this request
	Intact   bool   // and it is intact
	Broken   string // what is wrong when not
}

func (s *server) audit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	v := auditView{Actor: q.Get("actor")}
	ctx := r.Context()
	var err error
	if v.Actors, err = s.cfg.Store.Actors(ctx); err != nil {
		s.errorPage(w, r, http.StatusInternalServerError, "The audit log could not be read: "+err.Error())
		return
	}
	before, _ := strconv.ParseInt(q.Get("before"), 10, 64)
	evs, err := s.cfg.Store.EventPage(ctx, inventory.EventQuery{Actor: v.Actor, Before: before, Limit: EventPageSize + 1})
	if err != nil {
		s.errorPage(w, r, http.StatusInternalServerError, "The audit log could not be read: "+err.Error())
		return
	}
	if len(evs) > EventPageSize {
		evs = evs[:EventPageSize]
		v.Older = evs[len(evs)-1].Seq
	}
	v.Events, v.Newer = evs, before > 0
	if q.Get("verify") != "" {
		v.Verified = true
		switch err := s.cfg.Store.VerifyAudit(ctx); {
		case err == nil:
			v.Intact = true
		default:
			var ae *inventory.AuditError
			if errors.As(err, &ae) {
				v.Broken = ae.Error()
			} else {
				v.Broken = "the audit log could not be read: " + err.Error()
			}
		}
	}
	s.render(w, r, http.StatusOK, "audit.html", page{Title: "Audit log", Nav: "audit", Data: v})
}
