package web

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/monitor"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

// The resident's view says in plain words whether every device can be trusted, which one
// needs help and what to do, and when each renews; its "Request help" button raises a
// help.requested event for the administrator (bridge/event, the alert routes, the audit log).

// residentItem is one device in the resident's words.
type residentItem struct {
	ID, Name string
	What     string // what is wrong, or when it renews
	Do       string // what to do; "" when nothing
}

// residentView is the resident page's data.
type residentView struct {
	Fine     bool
	NeedHelp []residentItem
	Devices  []residentItem
	Sent     bool // a help request was just sent
	CSRF     string
}

// about says roughly how long d is, for people: "less than an hour", "about 5 hours",
// "about 3 days", "about 2 weeks", "about 4 months".
func about(d time.Duration) string {
	day := 24 * time.Hour
	switch {
	case d < time.Hour:
		return "less than an hour"
	case d < 36*time.Hour:
		return plural(int((d+30*time.Minute)/time.Hour), "hour")
	case d < 14*day:
		return plural(int((d+day/2)/day), "day")
	case d < 60*day:
		return plural(int((d+7*day/2)/(7*day)), "week")
	case d < 730*day:
		return plural(int((d+15*day)/(30*day)), "month")
	}
	return plural(int((d+182*day)/(365*day)), "year")
}

func plural(n int, unit string) string {
	if n == 1 {
		if unit == "hour" {
			return "about an hour"
		}
		return "about a " + unit
	}
	return fmt.Sprintf("about %d %ss", n, unit)
}

// longDay shows a date for people: "24 March".
func longDay(t time.Time) string { return t.UTC().Format("2 January") }

// residentWords describes one device for the resident: pure.
func residentWords(d fleetDevice, now time.Time) (item residentItem, needsHelp bool) {
	item = residentItem{ID: d.ID, Name: cmp.Or(d.Name, d.ID)}
	left := d.NotAfter.Sub(now)
	onItsOwn := "Make sure it is switched on and connected to your network: it fixes this by itself. If it is still listed here in an hour, press “Request help”."
	switch {
	case slices.Contains(d.Problems, monitor.ProblemRevoked):
		return residentItem{ID: d.ID, Name: item.Name, What: "Hearth no longer trusts this device: its certificate was withdrawn.",
			Do: "It has to be added to Hearth again. Press “Request help” if you did not expect this."}, true
	case slices.Contains(d.Problems, monitor.ProblemExpired):
		item.What = "Its certificate ran out " + about(-left) + " ago, so it can no longer connect securely."
		item.Do = onItsOwn
		if d.Manual {
			item.Do = "Someone has to install a new certificate on it by hand. Press “Request help”."
		}
		return item, true
	case slices.Contains(d.Problems, monitor.ProblemNoCertificate):
		return residentItem{ID: d.ID, Name: item.Name, What: "It was added but never finished setting up.", Do: onItsOwn}, true
	case slices.Contains(d.Problems, monitor.ProblemRenewalFailing):
		item.What = "It tried to renew its certificate several times and failed"
		if !d.NotAfter.IsZero() {
			item.What += "; the current one still works for " + about(left)
		}
		item.What += "."
		item.Do = "Press “Request help”: this needs the administrator."
		return item, true
	case slices.Contains(d.Problems, monitor.ProblemExpiring):
		item.What = "Its certificate runs out in " + about(left) + " (" + longDay(d.NotAfter) + ")."
		item.Do = onItsOwn
		if d.Manual {
			item.Do = "Someone has to install a new certificate on it by hand before " + longDay(d.NotAfter) + ". Press “Request help”."
		}
		return item, true
	case slices.Contains(d.Problems, monitor.ProblemClockSkew):
		return residentItem{ID: d.ID, Name: item.Name, What: "Its clock is wrong, which can stop it from connecting.",
			Do: "Restart the device, or check its time settings."}, true
	case len(d.Problems) > 0:
		return residentItem{ID: d.ID, Name: item.Name, What: "It is using a certificate Hearth did not expect.",
			Do: "Press “Request help”: this needs the administrator."}, true
	case d.Attention:
		return residentItem{ID: d.ID, Name: item.Name,
			What: "Its certificate runs out in " + about(left) + " (" + longDay(d.NotAfter) + ") and this device cannot renew it by itself.",
			Do:   "Someone has to install a new certificate on it by hand. Press “Request help”."}, true
	}
	switch {
	case d.NotAfter.IsZero():
		item.What = "It is still being set up."
	case d.Manual:
		item.What = "Its certificate is valid until " + longDay(d.NotAfter) + "; it will need a new one installed by hand from " + longDay(d.Window.Start) + "."
	case d.Window.Phase(now) == policy.PhaseWaiting:
		item.What = "Renews itself in " + about(d.Window.Start.Sub(now)) + " (around " + longDay(d.Window.Start) + ")."
	default:
		item.What = "Is renewing its certificate now; nothing to do."
	}
	return item, false
}

// buildResident describes the completed fleet for the resident, devices needing help first: pure.
func buildResident(fleet []fleetDevice, now time.Time) residentView {
	var v residentView
	for _, d := range fleet {
		if d.State == inventory.StateRemoved {
			continue
		}
		item, help := residentWords(d, now)
		if help {
			v.NeedHelp = append(v.NeedHelp, item)
		} else {
			v.Devices = append(v.Devices, item)
		}
	}
	byName := func(a, b residentItem) int {
		return cmp.Or(cmp.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)), cmp.Compare(a.ID, b.ID))
	}
	slices.SortFunc(v.NeedHelp, byName)
	slices.SortFunc(v.Devices, byName)
	v.Fine = len(v.NeedHelp) == 0
	return v
}

func (s *server) home(w http.ResponseWriter, r *http.Request) {
	now := s.cfg.Now()
	fleet, err := s.loadFleet(r.Context(), now)
	if err != nil {
		s.cfg.Logger.Error("resident view", "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, "Hearth could not read its list of devices: "+err.Error())
		return
	}
	completeFleet(fleet, s.cfg.Policy(), now)
	v := buildResident(fleet, now)
	v.Sent, v.CSRF = r.URL.Query().Get("help") == "sent", s.csrf
	s.render(w, r, http.StatusOK, "home.html", page{Title: "Your devices", Nav: "home", Refresh: !v.Sent, Now: now, Data: v})
}

// maxHelpMessage bounds the resident's message, in runes.
const maxHelpMessage = 500

// helpForm raises a help.requested event: recorded in the audit log (with who asked) and
// published on bridge/event, where the alert routes pick it up.
func (s *server) helpForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "The form could not be read: "+err.Error())
		return
	}
	if !s.validToken(r.PostForm.Get("csrf")) {
		s.cfg.Logger.Warn("help form refused: bad CSRF token", "remote", r.RemoteAddr)
		s.errorPage(w, r, http.StatusForbidden, "This form is stale. Reload the page and press “Request help” again.")
		return
	}
	now := s.cfg.Now()
	id := strings.TrimSpace(r.PostForm.Get("device"))
	var problems []string
	if id != "" {
		d, err := s.judged(r.Context(), id, now)
		if err != nil {
			s.errorPage(w, r, http.StatusBadRequest, fmt.Sprintf("There is no device %q any more. Reload the page and try again.", id))
			return
		}
		problems = d.Problems
	}
	msg := strings.TrimSpace(r.PostForm.Get("message"))
	if n := []rune(msg); len(n) > maxHelpMessage {
		msg = string(n[:maxHelpMessage])
	}
	if msg == "" {
		msg = "help requested from the resident view"
	}
	e := inventory.Event{Time: now.UTC().Truncate(time.Second), Kind: protocol.EventHelpRequested, DeviceID: id,
		Message: protocol.ClipText(msg), Data: map[string]string{"problems": strings.Join(problems, ",")}}
	rec, err := s.cfg.Store.AppendEvent(inventory.WithActor(r.Context(), s.principal(r).Name), e)
	if err != nil {
		s.cfg.Logger.Error("help request", "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, "The request could not be recorded: "+err.Error())
		return
	}
	s.cfg.Notify(protocol.Event{V: protocol.Version, Type: protocol.EventHelpRequested, Time: rec.Time, DeviceID: id,
		Message: rec.Message, Data: map[string]string{"problems": e.Data["problems"], "actor": rec.Actor}})
	w.Header().Set("Location", root(r)+"home?help=sent")
	w.WriteHeader(http.StatusSeeOther)
}
