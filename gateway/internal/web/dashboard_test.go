package web

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/protocol"
)

func TestDeviceListNeedsAttentionFirst(t *testing.T) {
	f := newFixture(t, nil)
	resp, body := f.get(t, "/devices")
	mustStatus(t, "GET /devices", resp, body, http.StatusOK)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("GET /devices Content-Type = %q, want text/html", ct)
	}
	if got := listedIDs(body); strings.Join(got, " ") != strings.Join(seededOrder, " ") {
		t.Errorf("GET /devices lists %q, want %q", got, seededOrder)
	}
	for _, want := range []string{
		"1.2.3-test",         // hub version
		f.cfg.CA.Fingerprint, // CA fingerprint
		`title="past the end of its renewal window at `, // the problem's text, on its badge
		"expired 2 d 0 h ago", "3 d 0 h left",
		"Odd &lt;b&gt;name&lt;/b&gt;", // names are escaped
		"7 of 7 devices",
		`title="its certificates are revoked: it may only enroll again, with a new token">quarantined (revoked)`,
		"What the words mean",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /devices does not contain %q", want)
		}
	}
	if strings.Contains(body, "<b>name</b>") {
		t.Errorf("GET /devices renders a device name unescaped")
	}
}

// listedIDs returns the device ids of the device list's rows, in order.
func listedIDs(body string) []string {
	var out []string
	for _, m := range rowDevice.FindAllStringSubmatch(body, -1) {
		out = append(out, html.UnescapeString(m[1]))
	}
	return out
}

var rowDevice = regexp.MustCompile(`<tr class="sev-[a-z]+" data-device="([^"]*)">`)

func TestDeviceListFilters(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		query string
		want  []string
	}{
		{"problem=any", []string{"garage-door", "porch-camera", "old-bulb", "hall-thermostat"}},
		{"problem=none", []string{"new-sensor", "kitchen-plug", `odd"id\x`}},
		{"problem=expired", []string{"garage-door"}},
		{"online=yes", []string{"hall-thermostat", "kitchen-plug"}},
		{"state=quarantined", []string{"old-bulb"}},
		{"q=PLUG", []string{"garage-door", "porch-camera", "old-bulb", "hall-thermostat", "new-sensor", "kitchen-plug", `odd"id\x`}}, // the family
		{"q=kitchen", []string{"kitchen-plug"}},
		{"q=Odd+%3Cb", []string{`odd"id\x`}},
		{"q=nothing-like-it", nil},
		{"sort=id", []string{"garage-door", "hall-thermostat", "kitchen-plug", "new-sensor", `odd"id\x`, "old-bulb", "porch-camera"}},
		{"sort=expiry&online=no", []string{"garage-door", "porch-camera", `odd"id\x`, "new-sensor", "old-bulb"}},
		{"sort=bogus&page=99", seededOrder}, // unknown values fall back
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			resp, body := f.get(t, "/devices?"+tt.query)
			mustStatus(t, "GET /devices?"+tt.query, resp, body, http.StatusOK)
			if got := listedIDs(body); strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("GET /devices?%s lists %q, want %q", tt.query, got, tt.want)
			}
		})
	}
}

func TestOverview(t *testing.T) {
	f := newFixture(t, nil)
	resp, body := f.get(t, "/")
	mustStatus(t, "GET /", resp, body, http.StatusOK)
	for _, want := range []string{
		`<span class="n">7</span><span class="l">devices`,
		`<span class="n">2</span><span class="l">online now`,
		`<span class="n">2</span><span class="l">expiring or expired`, // hall-thermostat and the expired garage-door
		`<span class="n">4</span><span class="l">need attention`,
		`<span class="n">67 %</span>`, // 2 of 3 requests in 24 h
		`aria-label="Certificate expiry over the next 90 days, 7 devices in 1 groups"`,
		`aria-label="Renewal success rate, 24 h, 24 bars"`,
		`aria-label="Renewal success rate, 30 d, 30 bars"`,
		`<title>plug: 1</title>`,          // failures by family
		`<title>policy_denied: 1</title>`, // and by cause
		// kitchen-plug and hall-thermostat, online for the last 5 minutes of the presence history
		`<title>valid certificate, 24 h: 0 % online, 4 device(s)</title>`,
		`<title>no valid one, 7 d: 0 % online, 3 device(s)</title>`,
		`http-equiv="refresh" content="30"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET / does not contain %q", want)
		}
	}
	if n := strings.Count(body, `<g class="mark `); n != len(seededOrder) {
		t.Errorf("GET / timeline has %d marks, want one per device (%d)", n, len(seededOrder))
	}
	_, byClass := f.get(t, "/?group=class")
	if !strings.Contains(byClass, `<option value="class" selected>`) || !strings.Contains(byClass, `class="lane-label" x="4" y="41">default</text>`) {
		t.Errorf("GET /?group=class does not group by class: lanes %q", regexp.MustCompile(`class="lane-label"[^<]*<`).FindAllString(byClass, -1))
	}
}

func TestDashboardShowsEmptyInventory(t *testing.T) {
	f := newFixture(t, nil)
	for _, id := range seededOrder {
		if _, err := f.admin.Remove(t.Context(), id); err != nil {
			t.Fatalf("Remove(%q) = %v", id, err)
		}
	}
	resp, body := f.get(t, "/")
	mustStatus(t, "GET /", resp, body, http.StatusOK)
	if want := `<span class="n">0</span><span class="l">devices`; !strings.Contains(body, want) {
		t.Errorf("GET / on an empty inventory does not contain %q:\n%s", want, body)
	}
	resp, body = f.get(t, "/devices")
	mustStatus(t, "GET /devices", resp, body, http.StatusOK)
	if want := "No devices yet"; !strings.Contains(body, want) {
		t.Errorf("GET /devices on an empty inventory does not contain %q:\n%s", want, body)
	}
	_, body = f.get(t, "/home")
	if want := "Everything is fine"; !strings.Contains(body, want) {
		t.Errorf("GET /home on an empty inventory does not contain %q:\n%s", want, body)
	}
}

func TestDevicePage(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		name   string
		id     string
		status int
		want   []string
		absent []string
	}{
		{"healthy", "kitchen-plug", http.StatusOK, []string{"Kitchen plug", ">Renew now</button>", "0a02", "superseded",
			"cert.activated", "29 d 0 h left", `action="../devices/kitchen-plug/renew"`, `href="../"`, "renews itself in 17 d 9 h",
			"4.00 ms", // the issuance latency, not "0 ms"
			`aria-label="Certificate history, 2 certificates"`}, nil},
		{"failing", "porch-camera", http.StatusOK, []string{"renewal_failing", "policy_denied: ", "3 failure(s)", "failed",
			"renewal failing: retrying, 25 d 0 h left", ">Renew now</button>"}, []string{">0 ms<"}},
		{"revoked", "old-bulb", http.StatusOK, []string{"revoked", "key compromise", "quarantined (revoked)", "no active certificate",
			"no longer trusted", "it can only come back with a new enrollment token", `href="../enroll?id=old-bulb"`},
			[]string{">Renew now</button>", "verified by the device", "idle: nothing to do"}},
		{"escaped id", `odd"id\x`, http.StatusOK, []string{`odd&#34;id\x`, `action="../devices/odd%22id%5cx/renew"`}, nil},
		{"unknown", "nope", http.StatusNotFound, []string{"is not in the inventory", `href="../"`}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := f.get(t, devicePath(tt.id))
			mustStatus(t, "GET "+devicePath(tt.id), resp, body, tt.status)
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("GET %s does not contain %q", devicePath(tt.id), w)
				}
			}
			for _, w := range tt.absent {
				if strings.Contains(body, w) {
					t.Errorf("GET %s contains %q", devicePath(tt.id), w)
				}
			}
		})
	}
}

// TestDeviceEventsNewestFirst pages through a device's events: newest first, EventPageSize a
// page, every event once.
func TestDeviceEventsNewestFirst(t *testing.T) {
	f := newFixture(t, nil)
	for i := range 2*EventPageSize + 3 {
		if _, err := f.store.AppendEvent(t.Context(), inventory.Event{Time: t0.Add(time.Duration(i) * time.Second),
			Kind: protocol.EventRenewalForced, DeviceID: "kitchen-plug", Message: fmt.Sprintf("forced #%03d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := f.store.Events(t.Context(), inventory.EventFilter{DeviceID: "kitchen-plug"})
	if err != nil {
		t.Fatal(err)
	}
	older := regexp.MustCompile(`href="../devices/kitchen-plug\?before=(\d+)" rel="next"`)
	var seen []string
	target := devicePath("kitchen-plug")
	for pages := 0; ; pages++ {
		resp, body := f.get(t, target)
		mustStatus(t, "GET "+target, resp, body, http.StatusOK)
		for _, m := range regexp.MustCompile(`<td title="[^"]*">([a-z_.]+)</td>`).FindAllStringSubmatch(body, -1) {
			seen = append(seen, m[1])
		}
		m := older.FindStringSubmatch(body)
		if m == nil {
			break
		}
		if pages > 5 {
			t.Fatal("the pages never end")
		}
		target = devicePath("kitchen-plug") + "?before=" + m[1]
	}
	if len(seen) != len(all) {
		t.Fatalf("pages listed %d events, want %d", len(seen), len(all))
	}
	for i, e := range all {
		if got := seen[len(all)-1-i]; got != string(e.Kind) {
			t.Fatalf("event %d from the newest is %s, want %s (newest first)", len(all)-1-i, got, e.Kind)
		}
	}
	_, first := f.get(t, devicePath("kitchen-plug"))
	if i, j := strings.Index(first, "forced #052"), strings.Index(first, "forced #051"); i < 0 || j < 0 || i > j {
		t.Errorf("first page does not list forced #052 before #051")
	}
}

// attrURL matches the URL attributes of the pages.
var attrURL = regexp.MustCompile(`(?i)\b(href|src|action|formaction|content)\s*=\s*["']?([^"'\s>]*)`)

// TestPageURLsAreRelative checks every URL in every page: it is relative (ingress serves the
// add-on under a changing prefix), and followed from the page's address under such a prefix,
// it reaches a route of the handler.
func TestPageURLsAreRelative(t *testing.T) {
	f := newFixture(t, nil)
	const prefix = "/api/hassio_ingress/AbC123"
	pages := []string{"/", "/devices", "/devices?q=o&sort=id", "/campaigns", "/policy", "/audit", "/home", "/enroll",
		devicePath("kitchen-plug"), devicePath(`odd"id\x`), devicePath("nope")}
	seen := 0
	for _, p := range pages {
		_, body := f.get(t, p)
		base, err := url.Parse("https://ha.example" + prefix + p)
		if err != nil {
			t.Fatal(err)
		}
		for _, loc := range attrURL.FindAllStringSubmatchIndex(body, -1) {
			m := []string{body[loc[0]:loc[1]], body[loc[2]:loc[3]], body[loc[4]:loc[5]]}
			attr, raw := strings.ToLower(m[1]), html.UnescapeString(m[2])
			if strings.HasPrefix(raw, "#") {
				continue // a fragment of the page itself
			}
			tag := body[strings.LastIndex(body[:loc[0]], "<"):loc[0]]
			if attr == "content" {
				if !strings.Contains(raw, "/") {
					continue // meta refresh "30", viewport
				}
			}
			seen++
			if strings.HasPrefix(raw, "/") || strings.HasPrefix(strings.ToLower(raw), "http") || strings.Contains(raw, "//") {
				t.Errorf("page %s: %s=%q is not relative", p, attr, raw)
				continue
			}
			u, err := base.Parse(raw)
			if err != nil {
				t.Errorf("page %s: %s=%q does not parse: %v", p, attr, raw, err)
				continue
			}
			path, ok := strings.CutPrefix(u.EscapedPath(), prefix+"/")
			if !ok {
				t.Errorf("page %s: %s=%q resolves to %s, outside the ingress prefix", p, attr, raw, u.Path)
				continue
			}
			method := http.MethodGet
			if attr == "action" && strings.Contains(tag, `method="post"`) {
				method = http.MethodPost
			}
			r, err := http.NewRequestWithContext(t.Context(), method, "/"+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, body := f.do(t, r)
			if method == http.MethodGet && resp.StatusCode != http.StatusOK ||
				method == http.MethodPost && resp.StatusCode != http.StatusForbidden { // no token sent
				t.Errorf("page %s: %s=%q → %s /%s = %d\n%s", p, attr, raw, method, path, resp.StatusCode, body)
			}
		}
	}
	if seen < 10 {
		t.Errorf("checked only %d URLs; the pattern or the pages are wrong", seen)
	}
}

func TestRenewForm(t *testing.T) {
	f := newFixture(t, nil)
	_, page := f.get(t, devicePath("kitchen-plug"))
	token := csrfToken(t, page)

	t.Run("forged", func(t *testing.T) {
		for name, form := range map[string]url.Values{
			"no token":    {},
			"wrong token": {"csrf": {strings.Repeat("0", len(token))}},
			"short token": {"csrf": {token[:10]}},
		} {
			resp, body := f.postForm(t, devicePath("kitchen-plug")+"/renew", form)
			mustStatus(t, name, resp, body, http.StatusForbidden)
		}
		if got := f.broker.Topics(); len(got) != 0 {
			t.Errorf("forged renew published %q, want nothing", got)
		}
	})

	t.Run("unknown device", func(t *testing.T) {
		resp, body := f.postForm(t, devicePath("nope")+"/renew", url.Values{"csrf": {token}})
		mustStatus(t, "renew nope", resp, body, http.StatusNotFound)
	})

	t.Run("ok", func(t *testing.T) {
		resp, body := f.postForm(t, devicePath("kitchen-plug")+"/renew", url.Values{"csrf": {token}})
		mustStatus(t, "renew", resp, body, http.StatusSeeOther)
		want := []string{"hearth/v1/dev/kitchen-plug/cmd"}
		if got := f.broker.Topics(); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("renew published %q, want %q", got, want)
		}
		loc := resp.Header.Get("Location")
		if !strings.HasPrefix(loc, "../../devices/kitchen-plug?renewed=cmd-") {
			t.Fatalf("renew Location = %q, want ../../devices/kitchen-plug?renewed=cmd-…", loc)
		}
		// Follow it the way a browser does, from the POST's URL.
		base, _ := url.Parse("/devices/kitchen-plug/renew")
		next, _ := base.Parse(loc)
		resp, body = f.get(t, next.String())
		mustStatus(t, "GET "+next.String(), resp, body, http.StatusOK)
		if !strings.Contains(body, "Renew command <code>"+next.Query().Get("renewed")+"</code> sent") {
			t.Errorf("device page after renew lacks the notice:\n%s", body)
		}
		evs, err := f.store.Events(t.Context(), inventory.EventFilter{Kind: protocol.EventRenewalRequested})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 1 || evs[0].Actor != ActorLocal || evs[0].DeviceID != "kitchen-plug" ||
			evs[0].Data["command_id"] != next.Query().Get("renewed") {
			t.Errorf("renew audit events = %+v, want one by %q for kitchen-plug", evs, ActorLocal)
		}
	})
}

func TestFormatting(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0 ms"},
		{4 * time.Millisecond, "4 ms"},
		{42 * time.Second, "42 s"},
		{5 * time.Minute, "5 min"},
		{90 * time.Minute, "1 h 30 min"},
		{47 * time.Hour, "47 h 0 min"},
		{2*day + 5*time.Hour + 59*time.Minute, "2 d 5 h"},
		{-3 * time.Minute, "-3 min"},
		{4*365*day + 3*day, "4 y 3 d"},
	}
	for _, tt := range tests {
		if got := formatDuration(tt.d); got != tt.want {
			t.Errorf("formatDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
	if got := timeLeft(t0, t0.Add(-day)); got != "expired 24 h 0 min ago" {
		t.Errorf("timeLeft(-1d) = %q", got)
	}
	if got := timeLeft(t0, time.Time{}); got != "" {
		t.Errorf("timeLeft(zero) = %q, want empty", got)
	}
	if got := formatDate(time.Time{}); got != "—" {
		t.Errorf("formatDate(zero) = %q, want —", got)
	}
}

func TestRoot(t *testing.T) {
	for path, want := range map[string]string{
		"/": "./", "/metrics": "./", "/devices/x": "../", "/devices/x/renew": "../../", "/api/devices/x": "../../",
	} {
		r, _ := http.NewRequest(http.MethodGet, path, nil)
		if got := root(r); got != want {
			t.Errorf("root(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestEnrollForm(t *testing.T) {
	f := newFixture(t, nil)
	_, index := f.get(t, "/")
	if !strings.Contains(index, `href="./enroll"`) {
		t.Fatalf("dashboard has no relative link to the enroll page:\n%s", index)
	}
	_, page := f.get(t, "/enroll")
	token := csrfToken(t, page)
	if !strings.Contains(page, `action="./enroll"`) || strings.Contains(page, `http-equiv="refresh"`) {
		t.Fatalf("enroll page: want a relative form and no auto-refresh:\n%s", page)
	}
	tokens := func() int {
		toks, err := f.store.Tokens(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return len(toks)
	}
	before := tokens()
	resp, body := f.postForm(t, "/enroll", url.Values{"id": {"porch-light"}})
	mustStatus(t, "forged enroll", resp, body, http.StatusForbidden)
	resp, body = f.postForm(t, "/enroll", url.Values{"csrf": {token}, "id": {"Not An Id"}})
	mustStatus(t, "bad id", resp, body, http.StatusBadRequest)
	if tokens() != before {
		t.Fatal("a refused enroll form created a token")
	}
	resp, body = f.postForm(t, "/enroll", url.Values{"csrf": {token}, "id": {"porch-light"}, "name": {"Porch light"}})
	mustStatus(t, "enroll", resp, body, http.StatusOK)
	for _, want := range []string{"hearth-agent enroll --hub mqtts://", "--id porch-light", "--token hst_", "--ca-fingerprint SHA256:"} {
		if !strings.Contains(body, want) {
			t.Errorf("token page lacks %q", want)
		}
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("token page Cache-Control = %q, want no-store", resp.Header.Get("Cache-Control"))
	}
	if tokens() != before+1 {
		t.Errorf("tokens after enrolling = %d, want %d", tokens(), before+1)
	}
	// The token is shown once: no page shows it again, and the inventory keeps its hash only.
	tok := regexp.MustCompile(`hst_[A-Za-z0-9_-]+`).FindString(body)
	if tok == "" {
		t.Fatalf("token page has no token:\n%s", body)
	}
	for _, path := range []string{"/enroll", "/", "/devices", "/audit"} {
		if _, page := f.get(t, path); strings.Contains(page, tok) {
			t.Errorf("GET %s shows the token again", path)
		}
	}
	toks, err := f.store.Tokens(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, stored := range toks {
		if strings.Contains(fmt.Sprintf("%+v", stored), tok) {
			t.Errorf("the inventory keeps the token itself: %+v", stored)
		}
	}
}
