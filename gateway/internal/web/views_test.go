package web

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

func TestResidentWords(t *testing.T) {
	now := t0
	cert := func(left time.Duration) (time.Time, policy.Window) {
		na := now.Add(left)
		w := policy.Default().Classes[0].Window(policy.CertInfo{Serial: "01", NotBefore: na.Add(-30 * day), NotAfter: na}, now)
		return na, w
	}
	dev := func(mod func(*fleetDevice)) fleetDevice {
		d := fleetDevice{}
		d.ID, d.Name, d.State = "hall", "Hall thermostat", inventory.StateActive
		d.NotAfter, d.Window = cert(25 * day)
		mod(&d)
		return d
	}
	tests := []struct {
		name     string
		d        fleetDevice
		help     bool
		what, do string
	}{
		{"waiting", dev(func(*fleetDevice) {}), false, "Renews itself in about 2 weeks (around 17 March).", ""},
		{"renewing", dev(func(d *fleetDevice) { d.NotAfter, d.Window = cert(8 * day) }), false, "Is renewing its certificate now; nothing to do.", ""},
		{"enrolling", dev(func(d *fleetDevice) { d.NotAfter, d.Window = time.Time{}, policy.Window{} }), false, "It is still being set up.", ""},
		{"expired", dev(func(d *fleetDevice) { d.NotAfter = now.Add(-2 * day); d.Problems = []string{"expired"} }), true,
			"Its certificate ran out about 2 days ago, so it can no longer connect securely.", "Make sure it is switched on"},
		{"expired manual", dev(func(d *fleetDevice) {
			d.NotAfter = now.Add(-2 * day)
			d.Problems = []string{"expired"}
			d.Manual = true
		}), true,
			"Its certificate ran out about 2 days ago", "by hand"},
		{"revoked", dev(func(d *fleetDevice) { d.Problems = []string{"revoked"} }), true, "Hearth no longer trusts this device", "added to Hearth again"},
		{"failing", dev(func(d *fleetDevice) { d.Problems = []string{"renewal_failing"} }), true,
			"It tried to renew its certificate several times and failed; the current one still works for about 4 weeks.", "needs the administrator"},
		{"expiring", dev(func(d *fleetDevice) { d.NotAfter = now.Add(3 * day); d.Problems = []string{"expiring"} }), true,
			"Its certificate runs out in about 3 days (4 March).", "switched on"},
		{"clock", dev(func(d *fleetDevice) { d.Problems = []string{"clock_skew"} }), true, "Its clock is wrong", "time settings"},
		{"manual open window", dev(func(d *fleetDevice) { d.Manual, d.Attention = true, true; d.NotAfter = now.Add(12 * day) }), true,
			"Its certificate runs out in about 12 days (13 March) and this device cannot renew it by itself.", "by hand"},
		{"manual waiting", dev(func(d *fleetDevice) { d.Manual = true }), false, "it will need a new one installed by hand from 17 March", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			item, help := residentWords(tt.d, now)
			if help != tt.help || !strings.Contains(item.What, tt.what) || !strings.Contains(item.Do, tt.do) || (tt.do == "") != (item.Do == "") {
				t.Errorf("residentWords() = %+v, help %v; want help %v, what %q, do %q", item, help, tt.help, tt.what, tt.do)
			}
		})
	}
	v := buildResident([]fleetDevice{tests[0].d}, now)
	if !v.Fine || len(v.NeedHelp) != 0 || len(v.Devices) != 1 {
		t.Errorf("buildResident(one fine device) = %+v, want fine", v)
	}
	v = buildResident([]fleetDevice{tests[0].d, tests[3].d}, now)
	if v.Fine || len(v.NeedHelp) != 1 {
		t.Errorf("buildResident(with an expired device) = %+v, want one needing help", v)
	}
}

func TestHelpForm(t *testing.T) {
	var notified []protocol.Event
	f := newFixture(t, func(c *Config) { c.Notify = func(e protocol.Event) { notified = append(notified, e) } })
	_, page := f.get(t, "/home")
	token := csrfToken(t, page)
	for _, want := range []string{"devices need help", "Garage door", "What to do:", `action="./home/help"`} {
		if !strings.Contains(page, want) {
			t.Errorf("GET /home does not contain %q", want)
		}
	}
	help := func() []inventory.Event {
		evs, err := f.store.Events(t.Context(), inventory.EventFilter{Kind: protocol.EventHelpRequested})
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}

	resp, body := f.postForm(t, "/home/help", url.Values{"device": {"garage-door"}})
	mustStatus(t, "forged help", resp, body, http.StatusForbidden)
	resp, body = f.postForm(t, "/home/help", url.Values{"csrf": {token}, "device": {"no-such-device"}})
	mustStatus(t, "help about an unknown device", resp, body, http.StatusBadRequest)
	if len(help()) != 0 || len(notified) != 0 {
		t.Fatal("a refused help form raised an event")
	}

	long := strings.Repeat("é", maxHelpMessage+50)
	resp, body = f.postForm(t, "/home/help", url.Values{"csrf": {token}, "device": {"garage-door"}, "message": {long}})
	mustStatus(t, "help", resp, body, http.StatusSeeOther)
	if loc := resp.Header.Get("Location"); loc != "../home?help=sent" {
		t.Errorf("help Location = %q, want ../home?help=sent", loc)
	}
	evs := help()
	if len(evs) != 1 || evs[0].DeviceID != "garage-door" || evs[0].Actor != ActorLocal || evs[0].Data["problems"] != "expired" ||
		len([]rune(evs[0].Message)) > maxHelpMessage {
		t.Fatalf("recorded help = %+v, want one about garage-door by %s with its problems", evs, ActorLocal)
	}
	if len(notified) != 1 || notified[0].Type != protocol.EventHelpRequested || notified[0].DeviceID != "garage-door" ||
		notified[0].Data["actor"] != ActorLocal || notified[0].V != protocol.Version {
		t.Fatalf("published help = %+v", notified)
	}
	if _, err := protocol.Encode(&notified[0]); err != nil {
		t.Errorf("the help event does not encode: %v", err)
	}
	resp, body = f.postForm(t, "/home/help", url.Values{"csrf": {token}})
	mustStatus(t, "help about no device", resp, body, http.StatusSeeOther)
	if evs := help(); len(evs) != 2 || evs[1].DeviceID != "" || evs[1].Message != "help requested from the resident view" {
		t.Errorf("help about no device recorded %+v", evs)
	}
	_, page = f.get(t, "/home?help=sent")
	if !strings.Contains(page, "Your request for help was sent") {
		t.Error("the resident view does not confirm the request")
	}
}

// TestRenewRefusedWhereItCannotWork: the renew form of a revoked device is answered with
// what to do instead, not a 400 from the admin service, and commands nothing.
func TestRenewRefusedWhereItCannotWork(t *testing.T) {
	f := newFixture(t, nil)
	_, page := f.get(t, devicePath("kitchen-plug"))
	resp, body := f.postForm(t, devicePath("old-bulb")+"/renew", url.Values{"csrf": {csrfToken(t, page)}})
	mustStatus(t, "renew old-bulb", resp, body, http.StatusConflict)
	if !strings.Contains(body, "new enrollment token") {
		t.Errorf("renew refusal does not say what to do:\n%s", body)
	}
	if got := f.broker.Topics(); len(got) != 0 {
		t.Errorf("renew of a revoked device published %q", got)
	}
}

func TestListDevicesPaging(t *testing.T) {
	var fleet []fleetDevice
	for i := range 2*PageSize + 7 {
		d := fleetDevice{Severity: sevOK}
		d.ID, d.NotAfter = fmt.Sprintf("d%03d", i), t0.Add(time.Duration(200-i)*time.Hour)
		if i%10 == 0 {
			d.Severity, d.Problems = sevBad, []string{"expired"}
		}
		fleet = append(fleet, d)
	}
	var seen []string
	for page := 1; page <= 3; page++ {
		p := listDevices(fleet, deviceQuery{Sort: "attention", Page: page})
		if p.Pages != 3 || p.Matched != len(fleet) {
			t.Fatalf("page %d: %d pages, %d matched; want 3, %d", page, p.Pages, p.Matched, len(fleet))
		}
		for _, d := range p.Devices {
			seen = append(seen, d.ID)
		}
	}
	if len(seen) != len(fleet) {
		t.Fatalf("pages listed %d devices, want %d", len(seen), len(fleet))
	}
	// The problems first (11 of them), soonest expiry first, so the highest ids.
	if seen[0] != "d100" || seen[10] != "d000" || seen[11] != "d106" {
		t.Errorf("order starts %q, want d100 … d000, then d106", seen[:12])
	}
	if p := listDevices(fleet, deviceQuery{Page: 99}); p.Query.Page != 3 || len(p.Devices) != 7 {
		t.Errorf("page 99 = page %d with %d devices, want the last (3) with 7", p.Query.Page, len(p.Devices))
	}
	if p := listDevices(nil, deviceQuery{Page: 1}); p.Pages != 1 || len(p.Devices) != 0 {
		t.Errorf("empty fleet = %d pages, %d devices", p.Pages, len(p.Devices))
	}
}

// FuzzDeviceQuery: any query string gives a valid query, a page in range, and a page of the
// list that renders.
func FuzzDeviceQuery(f *testing.F) {
	f.Add("q=plug&family=x&sort=expiry&page=2")
	f.Add("page=-1&online=maybe&sort=%00")
	f.Add("page=99999999999999999999&problem=any")
	fleet := []fleetDevice{{Severity: sevOK}, {Severity: sevBad}}
	fleet[0].ID, fleet[1].ID = "a", "b"
	s := &server{pages: parsePages()}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q := parseDeviceQuery(v.Get)
		if q.Page < 1 {
			t.Fatalf("parseDeviceQuery(%q).Page = %d", raw, q.Page)
		}
		p := listDevices(fleet, q)
		if p.Query.Page < 1 || p.Query.Page > p.Pages {
			t.Fatalf("listDevices page %d of %d", p.Query.Page, p.Pages)
		}
		if _, err := url.ParseQuery(string(p.Query.Values())); err != nil {
			t.Fatalf("Values() = %q does not parse: %v", p.Query.Values(), err)
		}
		var sb strings.Builder
		if err := s.pages.ExecuteTemplate(&sb, "devices.html", page{Root: "./", Data: p}); err != nil {
			t.Fatalf("render: %v", err)
		}
	})
}

func TestCampaignsPolicyAudit(t *testing.T) {
	f := newFixture(t, nil)
	seedShowcase(t, f.store)
	_, body := f.get(t, "/campaigns")
	for _, want := range []string{"spring-cameras", "locks-rekey", "sensors-2026",
		"<strong>Stopped:</strong> canary lock-1 failed (install_failed): the other 3 devices were left untouched",
		"6 of 6 renewed", "Canaries (renewed first; the others wait for them): 1 ·", `<span class="bad-text">1 failed</span>`,
		`aria-label="0 of 4 committed, 1 failed, 0 in flight, 3 pending"`, `aria-label="5 of 8 committed, 0 failed, 2 in flight, 1 pending"`, "stops when 25 % fail"} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /campaigns does not contain %q", want)
		}
	}
	if i, j := strings.Index(body, "sensors-2026"), strings.Index(body, "spring-cameras"); i > j {
		t.Error("campaigns are not newest first")
	}

	_, body = f.get(t, "/policy")
	for _, want := range []string{"default", "high-risk", fmt.Sprintf("%d devices", len(seededOrder)+showcaseDevices),
		"A certificate lives <strong>", `class="plot window-bar"`} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /policy does not contain %q", want)
		}
	}

	if _, err := f.store.AppendEvent(inventory.WithActor(t.Context(), "ha:alice"), inventory.Event{Time: t0, Kind: protocol.EventRenewalForced,
		DeviceID: "kitchen-plug", Message: "alice renewed it"}); err != nil {
		t.Fatal(err)
	}
	_, body = f.get(t, "/audit?actor=ha:alice")
	if !strings.Contains(body, "alice renewed it") || strings.Contains(body, "cert.issued") || !strings.Contains(body, `<option selected>ha:alice</option>`) {
		t.Errorf("GET /audit?actor=ha:alice does not show only alice's records:\n%s", body)
	}
	_, body = f.get(t, "/audit?verify=1")
	if !strings.Contains(body, "Chain verified just now") {
		t.Errorf("GET /audit?verify=1 does not say the chain is intact")
	}
	_, body = f.get(t, "/audit")
	if strings.Contains(body, "Chain verified") {
		t.Errorf("GET /audit claims a verification it did not run")
	}
}
