package web

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/protocol"
)

func TestTrustIngressClients(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.TrustIngress = true })
	tests := []struct {
		name   string
		remote string
		path   string
		want   int
	}{
		{"LAN client dashboard", "10.0.0.5:40000", "/", http.StatusForbidden},
		{"LAN client API", "10.0.0.5:40000", "/api/devices", http.StatusForbidden},
		{"LAN client metrics", "10.0.0.5:40000", "/metrics", http.StatusForbidden},
		{"other hassio address", "172.30.32.1:40000", "/", http.StatusForbidden},
		{"LAN client health check", "10.0.0.5:40000", "/healthz", http.StatusOK},
		{"ingress proxy", "172.30.32.2:40000", "/", http.StatusOK},
		{"ingress proxy as IPv4-mapped IPv6", "[::ffff:172.30.32.2]:40000", "/", http.StatusOK},
		{"loopback", "127.0.0.1:40000", "/metrics", http.StatusOK},
		{"IPv6 loopback", "[::1]:40000", "/api/devices", http.StatusOK},
		{"garbage remote", "nonsense", "/", http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequestWithContext(t.Context(), http.MethodGet, tt.path, nil)
			r.RemoteAddr = tt.remote
			r.Host = "a0d7b954-hearth:8099" // ingress mode does not check Host: only the proxy reaches it
			resp, body := f.do(t, r)
			mustStatus(t, "GET "+tt.path+" from "+tt.remote, resp, body, tt.want)
		})
	}
}

func TestTrustIngressActor(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.TrustIngress = true })
	get := httptest.NewRequestWithContext(t.Context(), http.MethodGet, devicePath("kitchen-plug"), nil)
	get.RemoteAddr = "172.30.32.2:40000"
	_, page := f.do(t, get)
	token := csrfToken(t, page)

	post := func(remote string, header map[string]string) *http.Response {
		r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, devicePath("kitchen-plug")+"/renew",
			strings.NewReader(url.Values{"csrf": {token}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = remote
		for k, v := range header {
			r.Header.Set(k, v)
		}
		resp, _ := f.do(t, r)
		return resp
	}
	if resp := post("10.0.0.5:40000", map[string]string{"X-Remote-User-Name": "mallory"}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("renew from 10.0.0.5 = %d, want 403", resp.StatusCode)
	}
	if got := f.broker.Topics(); len(got) != 0 {
		t.Fatalf("renew from 10.0.0.5 published %q", got)
	}
	for _, h := range []map[string]string{
		{"X-Remote-User-Name": "alice", "X-Remote-User-Id": "8f1c0e"},
		{"X-Remote-User-Id": "8f1c0e"},
		{},
	} {
		if resp := post("172.30.32.2:40000", h); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("renew from the ingress proxy with %v = %d, want 303", h, resp.StatusCode)
		}
	}
	evs, err := f.store.Events(t.Context(), inventory.EventFilter{Kind: protocol.EventRenewalRequested})
	if err != nil {
		t.Fatal(err)
	}
	var actors []string
	for _, e := range evs {
		actors = append(actors, e.Actor)
	}
	want := []string{"ha:alice", "ha:8f1c0e", ActorIngress}
	if strings.Join(actors, ",") != strings.Join(want, ",") {
		t.Errorf("renew audit actors = %q, want %q", actors, want)
	}
}

func TestHostCheck(t *testing.T) {
	tests := []struct {
		name    string
		host    string
		allowed []string
		want    int
	}{
		{"IPv4 with port", "127.0.0.1:8099", nil, http.StatusOK},
		{"IPv6 with port", "[::1]:8099", nil, http.StatusOK},
		{"LAN address", "192.168.1.20:8099", nil, http.StatusOK},
		{"localhost", "localhost:8099", nil, http.StatusOK},
		{"LOCALHOST.", "LOCALHOST.:8099", nil, http.StatusOK},
		{"rebinding name", "evil.example:8099", nil, http.StatusForbidden},
		{"localhost lookalike", "localhost.evil.example", nil, http.StatusForbidden},
		{"configured name", "Hearth.LAN:8099", []string{"hearth.lan"}, http.StatusOK},
		{"other name", "other.lan:8099", []string{"hearth.lan"}, http.StatusForbidden},
		{"wildcard", "anything.example", []string{"*"}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(c *Config) { c.AllowedHosts = tt.allowed })
			r := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/api/devices", nil)
			r.Host = tt.host
			resp, body := f.do(t, r)
			mustStatus(t, "GET /api/devices with Host "+tt.host, resp, body, tt.want)
			r = httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/healthz", nil)
			r.Host = tt.host
			resp, body = f.do(t, r)
			mustStatus(t, "GET /healthz with Host "+tt.host, resp, body, http.StatusOK)
		})
	}
}

func TestLocalActorIgnoresUserHeaders(t *testing.T) {
	f := newFixture(t, nil)
	r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/api/devices/kitchen-plug/renew", nil)
	r.Header.Set("X-Requested-With", "fetch")
	r.Header.Set("X-Remote-User-Name", "admin")
	resp, body := f.do(t, r)
	mustStatus(t, "renew", resp, body, http.StatusOK)
	evs, err := f.store.Events(t.Context(), inventory.EventFilter{Kind: protocol.EventRenewalRequested})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Actor != ActorLocal {
		t.Errorf("renew audit events = %+v, want one by %q (headers are not trusted without ingress)", evs, ActorLocal)
	}
}

func TestSecurityHeaders(t *testing.T) {
	f := newFixture(t, nil)
	resp, _ := f.get(t, "/")
	for k, want := range map[string]string{
		"X-Content-Type-Options": "nosniff",
		"Cache-Control":          "no-store",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("GET / %s = %q, want %q", k, got, want)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") ||
		!strings.Contains(csp, "frame-ancestors 'self'") {
		t.Errorf("GET / Content-Security-Policy = %q", csp)
	}
}

func TestCleanUser(t *testing.T) {
	for in, want := range map[string]string{
		"alice":                  "alice",
		"  Bob Smith ":           "Bob Smith",
		"eve\x00\r\n\tx":         "evex",
		"bad\xffutf8":            "badutf8",
		strings.Repeat("é", 100): strings.Repeat("é", maxUserLen),
	} {
		if got := cleanUser(in); got != want {
			t.Errorf("cleanUser(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzCleanUser(f *testing.F) {
	for _, s := range []string{"", "alice", "a\x00b", "\xff", "  x  ", strings.Repeat("ü", 70)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := cleanUser(s)
		if !utf8.ValidString(got) || utf8.RuneCountInString(got) > maxUserLen {
			t.Fatalf("cleanUser(%q) = %q: invalid UTF-8 or too long", s, got)
		}
		for _, r := range got {
			if !unicode.IsPrint(r) {
				t.Fatalf("cleanUser(%q) = %q keeps unprintable %U", s, got, r)
			}
		}
		if again := cleanUser(got); again != got {
			t.Fatalf("cleanUser is not idempotent: %q → %q → %q", s, got, again)
		}
	})
}
