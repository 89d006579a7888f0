package web

import (
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

func TestDashboardListsDevicesProblemsFirst(t *testing.T) {
	f := newFixture(t, nil)
	resp, body := f.get(t, "/")
	mustStatus(t, "GET /", resp, body, http.StatusOK)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("GET / Content-Type = %q, want text/html", ct)
	}
	last := -1
	for _, id := range seededOrder {
		link := `href="./devices/` + html.EscapeString(url.PathEscape(id)) + `"`
		i := strings.Index(strings.ToLower(body), strings.ToLower(link)) // %5c or %5C
		if i < 0 {
			t.Fatalf("GET / has no link %s:\n%s", link, body)
		}
		if i < last {
			t.Errorf("device %q is listed before the previous one; want order %q", id, seededOrder)
		}
		last = i
	}
	for _, want := range []string{
		"1.2.3-test",         // hub version
		f.cfg.CA.Fingerprint, // CA fingerprint
		`<span class="n">7</span><span class="l">devices`,
		`<span class="n">2</span><span class="l">online now`,
		`<span class="n">2</span><span class="l">expiring or expired`, // hall-thermostat and the expired garage-door
		`title="past the end of its renewal window at `,               // the problem's text, on its badge
		`<span class="n">4</span><span class="l">with problems`,
		`<span class="n">67 %</span>`, // 2 of 3 requests in 24 h
		"expired 2 d 0 h ago", "3 d 0 h left",
		"Odd &lt;b&gt;name&lt;/b&gt;", // names are escaped
		`http-equiv="refresh" content="30"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET / does not contain %q", want)
		}
	}
	if strings.Contains(body, "<b>name</b>") {
		t.Errorf("GET / renders a device name unescaped")
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
	for _, want := range []string{"No devices yet", `<span class="n">0</span><span class="l">devices`} {
		if !strings.Contains(body, want) {
			t.Errorf("GET / on an empty inventory does not contain %q:\n%s", want, body)
		}
	}
}

func TestDevicePage(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		name   string
		id     string
		status int
		want   []string
	}{
		{"healthy", "kitchen-plug", http.StatusOK, []string{"Kitchen plug", "Renew now", "0a02", "superseded",
			"cert.activated", "29 d 0 h left", `action="../devices/kitchen-plug/renew"`, `href="../"`}},
		{"failing", "porch-camera", http.StatusOK, []string{"renewal_failing", "policy_denied", "3 failure(s)", "failed"}},
		{"revoked", "old-bulb", http.StatusOK, []string{"revoked", "key compromise", "quarantined", "no active certificate"}},
		{"escaped id", `odd"id\x`, http.StatusOK, []string{`odd&#34;id\x`, `action="../devices/odd%22id%5cx/renew"`}},
		{"unknown", "nope", http.StatusNotFound, []string{"is not in the inventory", `href="../"`}},
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
		})
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
	pages := []string{"/", devicePath("kitchen-plug"), devicePath(`odd"id\x`), devicePath("nope")}
	seen := 0
	for _, p := range pages {
		_, body := f.get(t, p)
		base, err := url.Parse("https://ha.example" + prefix + p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range attrURL.FindAllStringSubmatch(body, -1) {
			attr, raw := strings.ToLower(m[1]), html.UnescapeString(m[2])
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
			if attr == "action" {
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
}
