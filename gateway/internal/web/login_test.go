package web

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/authz"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/metrics"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

const testPassword = "correct horse battery"

// loginFixture is the dashboard with logins, served over TCP on 127.0.0.1, with one user of
// each role.
type loginFixture struct {
	*fixture
	srv *httptest.Server
}

func newLoginFixture(t *testing.T, mod func(*Config)) *loginFixture {
	t.Helper()
	f := newFixture(t, func(c *Config) {
		c.Users = authz.NewAuthenticator([]authz.Account{{Name: "root", Role: authz.Admin, PasswordHash: testkit.PasswordHash(testPassword)}},
			authz.Inventory(c.Store))
		if mod != nil {
			mod(c)
		}
	})
	for name, role := range map[string]string{"vera": "viewer", "olga": "operator", "alice": "admin"} {
		if err := f.store.AddUser(t.Context(), inventory.User{Name: name, Role: role, PasswordHash: testkit.PasswordHash(testPassword), CreatedAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(f.h)
	t.Cleanup(srv.Close)
	return &loginFixture{fixture: f, srv: srv}
}

// client is a browser: a cookie jar, and redirects not followed (the tests look at them).
func (f *loginFixture) client(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func send(t *testing.T, c *http.Client, r *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// csrf reads the forms' token from the login page.
func (f *loginFixture) csrf(t *testing.T, c *http.Client) string {
	t.Helper()
	r, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, f.srv.URL+"/login", nil)
	_, body := send(t, c, r)
	return csrfToken(t, body)
}

// login logs c in as name and returns the login answer.
func (f *loginFixture) login(t *testing.T, c *http.Client, name, password string) *http.Response {
	t.Helper()
	form := url.Values{"csrf": {f.csrf(t, c)}, "name": {name}, "password": {password}}
	r, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, f.srv.URL+"/login", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, _ := send(t, c, r)
	return resp
}

// route is one dashboard or API route as a browser or script uses it.
type route struct {
	method, path string
	op           string
	form         url.Values // POSTed as a form with the CSRF token
	api          bool       // POSTed with X-Requested-With
	ok           int        // the status when allowed
}

func routes() []route {
	return []route{
		{method: "GET", path: "/", op: "device/list", ok: 200},
		{method: "GET", path: "/devices/kitchen-plug", op: "device/get", ok: 200},
		{method: "GET", path: "/enroll", op: "token/create", ok: 200},
		{method: "GET", path: "/api/devices", op: "device/list", ok: 200},
		{method: "GET", path: "/api/devices/kitchen-plug", op: "device/get", ok: 200},
		{method: "GET", path: "/api/events", op: "events", ok: 200},
		{method: "GET", path: "/metrics", op: "device/list", ok: 200},
		{method: "POST", path: "/devices/kitchen-plug/renew", op: "device/renew", form: url.Values{}, ok: 303},
		{method: "POST", path: "/enroll", op: "token/create", form: url.Values{"id": {"new-lamp"}}, ok: 200},
		{method: "POST", path: "/api/devices/kitchen-plug/renew", op: "device/renew", api: true, ok: 200},
	}
}

func (f *loginFixture) request(t *testing.T, rt route, csrf, origin string) *http.Request {
	t.Helper()
	var body io.Reader
	if rt.form != nil {
		form := url.Values{"csrf": {csrf}}
		for k, v := range rt.form {
			form[k] = v
		}
		body = strings.NewReader(form.Encode())
	}
	r, err := http.NewRequestWithContext(t.Context(), rt.method, f.srv.URL+rt.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if rt.form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if rt.api {
		r.Header.Set("X-Requested-With", "test")
	}
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	return r
}

// TestRoutesByRole: every route refuses an anonymous request and every role too weak for its
// operation, and serves the others; the role needed is authz.Need of the route's operation,
// the same as on the CLI, the bridge and Home Assistant's broker.
func TestRoutesByRole(t *testing.T) {
	f := newLoginFixture(t, nil)
	roles := map[string]authz.Role{"": 0, "vera": authz.Viewer, "olga": authz.Operator, "alice": authz.Admin}
	for name, role := range roles {
		c := f.client(t)
		if name != "" {
			if resp := f.login(t, c, name, testPassword); resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("login %s = %d, want 303", name, resp.StatusCode)
			}
		}
		csrf := f.csrf(t, c)
		for _, rt := range routes() {
			t.Run(rt.method+" "+rt.path+" as "+role.String(), func(t *testing.T) {
				resp, body := send(t, c, f.request(t, rt, csrf, ""))
				allowed := role >= authz.Need(rt.op)
				switch {
				case allowed && resp.StatusCode != rt.ok:
					t.Errorf("%s %s as %s = %d, want %d:\n%s", rt.method, rt.path, role, resp.StatusCode, rt.ok, body)
				case !allowed && role == 0 && rt.method == "GET" && !rt.isAPI():
					if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != loginFrom(rt.path) {
						t.Errorf("%s %s anonymous = %d to %q, want 303 to the login page", rt.method, rt.path, resp.StatusCode, resp.Header.Get("Location"))
					}
				case !allowed && resp.StatusCode != http.StatusForbidden:
					t.Errorf("%s %s as %s = %d, want 403:\n%s", rt.method, rt.path, role, resp.StatusCode, body)
				}
			})
		}
	}
	// Nothing a refused request asked for happened: only alice and olga renewed and enrolled.
	evs, err := f.store.Events(t.Context(), inventory.EventFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if (e.Kind == protocol.EventRenewalRequested || e.Kind == protocol.EventTokenCreated) && e.Actor != "user:alice" && e.Actor != "user:olga" {
			t.Errorf("event %s by %q: a refused role changed something", e.Kind, e.Actor)
		}
	}
}

func (rt route) isAPI() bool { return strings.HasPrefix(rt.path, "/api/") || rt.path == "/metrics" }

// loginFrom is the relative login URL the dashboard redirects path to.
func loginFrom(path string) string {
	n := strings.Count(path, "/") - 1
	if n <= 0 {
		return "./login"
	}
	return strings.Repeat("../", n) + "login"
}

// TestCrossOriginRefused: an admin's session does not let another site drive a
// state-changing route: a request with a foreign Origin, or without the CSRF token or
// X-Requested-With, is refused and changes nothing.
func TestCrossOriginRefused(t *testing.T) {
	f := newLoginFixture(t, nil)
	c := f.client(t)
	f.login(t, c, "alice", testPassword)
	csrf := f.csrf(t, c)
	for _, rt := range routes() {
		if rt.method != http.MethodPost {
			continue
		}
		t.Run(rt.path, func(t *testing.T) {
			if resp, body := send(t, c, f.request(t, rt, csrf, "http://evil.example")); resp.StatusCode != http.StatusForbidden {
				t.Errorf("POST %s from another origin = %d, want 403:\n%s", rt.path, resp.StatusCode, body)
			}
			bare := rt
			bare.api = false
			if resp, body := send(t, c, f.request(t, bare, "not-the-token", "")); resp.StatusCode != http.StatusForbidden {
				t.Errorf("POST %s without the CSRF defence = %d, want 403:\n%s", rt.path, resp.StatusCode, body)
			}
		})
	}
	evs, _ := f.store.Events(t.Context(), inventory.EventFilter{Limit: 100})
	for _, e := range evs {
		if e.Kind == protocol.EventRenewalRequested || e.Kind == protocol.EventTokenCreated {
			t.Errorf("event %s by %s after cross-origin requests only", e.Kind, e.Actor)
		}
	}
	// The same origin is served.
	if resp, body := send(t, c, f.request(t, routes()[len(routes())-1], csrf, f.srv.URL)); resp.StatusCode != http.StatusOK {
		t.Errorf("POST from the dashboard's own origin = %d, want 200:\n%s", resp.StatusCode, body)
	}
}

func TestLoginSession(t *testing.T) {
	f := newLoginFixture(t, nil)
	c := f.client(t)
	resp := f.login(t, c, "alice", testPassword)
	var cookie *http.Cookie
	for _, k := range resp.Cookies() {
		if k.Name == SessionCookie {
			cookie = k
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Secure || cookie.MaxAge != int(DefaultSessionTTL/time.Second) {
		t.Fatalf("session cookie = %+v, want HttpOnly, SameSite=Strict, not Secure over plain HTTP, max age %v", cookie, DefaultSessionTTL)
	}
	get := func(path string) *http.Response {
		r, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, f.srv.URL+path, nil)
		resp, _ := send(t, c, r)
		return resp
	}
	if resp := get("/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET / logged in = %d, want 200", resp.StatusCode)
	}
	// A role change holds from the next request.
	if _, err := f.store.SetUserRole(t.Context(), "alice", "viewer", t0); err != nil {
		t.Fatal(err)
	}
	if resp := get("/enroll"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET /enroll after alice became a viewer = %d, want 403", resp.StatusCode)
	}
	form := url.Values{"csrf": {f.csrf(t, c)}}
	r, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, f.srv.URL+"/logout", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, _ := send(t, c, r); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("POST /logout = %d, want 303", resp.StatusCode)
	}
	// The old cookie no longer works, even replayed.
	r, _ = http.NewRequestWithContext(t.Context(), http.MethodGet, f.srv.URL+"/api/devices", nil)
	r.AddCookie(&http.Cookie{Name: SessionCookie, Value: cookie.Value})
	if resp, _ := send(t, http.DefaultClient, r); resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET /api/devices with a logged-out cookie = %d, want 403", resp.StatusCode)
	}
	// A removed user's session ends.
	c2 := f.client(t)
	f.login(t, c2, "olga", testPassword)
	if err := f.store.RemoveUser(t.Context(), "olga", t0); err != nil {
		t.Fatal(err)
	}
	r, _ = http.NewRequestWithContext(t.Context(), http.MethodGet, f.srv.URL+"/api/devices", nil)
	if resp, _ := send(t, c2, r); resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET /api/devices as a removed user = %d, want 403", resp.StatusCode)
	}
}

// TestLoginFailures: a wrong password is refused and audited with the name tried; after a
// few failures in a row the address and the name wait, with Retry-After, and a correct
// password does not get through while they do.
func TestLoginFailures(t *testing.T) {
	now := t0
	m := metrics.New(metrics.Config{})
	f := newLoginFixture(t, func(c *Config) {
		c.Now = func() time.Time { return now }
		c.LoginRefused = func() { m.RefusedLogin(metrics.LoginDashboard) }
	})
	c := f.client(t)
	for i := range authz.FreeFailures {
		if resp := f.login(t, c, "alice", "wrong password"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failed login %d = %d, want 401", i+1, resp.StatusCode)
		}
	}
	if resp := f.login(t, c, "alice", "wrong password"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("failed login %d = %d, want 401", authz.FreeFailures+1, resp.StatusCode)
	}
	resp := f.login(t, c, "alice", testPassword)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("login while throttled = %d (Retry-After %q), want 429 after 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	now = now.Add(authz.BaseDelay)
	if resp := f.login(t, c, "alice", testPassword); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("login after the wait = %d, want 303", resp.StatusCode)
	}
	evs, err := f.store.Events(t.Context(), inventory.EventFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs {
		if e.Kind == protocol.EventLoginFailed {
			n++
			if e.Actor != "user:alice" || e.Data["via"] != "dashboard" || e.Data["remote"] != "127.0.0.1" {
				t.Errorf("login.failed event = %+v, want actor user:alice from 127.0.0.1 via dashboard", e)
			}
		}
	}
	if n != authz.FreeFailures+1 {
		t.Errorf("%d login.failed events, want %d", n, authz.FreeFailures+1)
	}
	// Every refusal counts, the throttled one too; the login that succeeded does not.
	r := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/metrics", nil)
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, r)
	want := fmt.Sprintf(`hearth_refused_logins_total{reason="dashboard"} %d`, authz.FreeFailures+2)
	if !strings.Contains(w.Body.String(), want+"\n") {
		t.Errorf("metrics after %d refused logins lack %q:\n%s", authz.FreeFailures+2, want, grepLines(w.Body.String(), "hearth_refused_logins_total"))
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for l := range strings.Lines(s) {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

// TestBasicAuth: scripts and Prometheus use HTTP basic credentials of a hub user.
func TestBasicAuth(t *testing.T) {
	f := newLoginFixture(t, nil)
	for _, tc := range []struct {
		user, password string
		want           int
	}{{"vera", testPassword, 200}, {"root", testPassword, 200}, {"vera", "wrong password", 401}, {"nobody", testPassword, 401}} {
		r, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, f.srv.URL+"/metrics", nil)
		r.SetBasicAuth(tc.user, tc.password)
		if resp, body := send(t, http.DefaultClient, r); resp.StatusCode != tc.want {
			t.Errorf("GET /metrics as %s:%s = %d, want %d:\n%s", tc.user, tc.password, resp.StatusCode, tc.want, body)
		}
	}
}

// TestIngressRoles: behind Home Assistant's ingress the user the proxy names has the role
// the add-on options give; the same headers from anyone else are not trusted.
func TestIngressRoles(t *testing.T) {
	f := newLoginFixture(t, func(c *Config) {
		c.TrustIngress = true
		c.IngressRole = authz.Operator
		c.IngressUsers = map[string]authz.Role{"Vera": authz.Viewer}
	})
	renew := func(remote, user string) int {
		r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/api/devices/kitchen-plug/renew", nil)
		r.RemoteAddr, r.Host = remote, "homeassistant.local:8123"
		r.Header.Set("X-Requested-With", "test")
		r.Header.Set("X-Remote-User-Name", user)
		resp, _ := f.do(t, r)
		return resp.StatusCode
	}
	for _, tc := range []struct {
		remote, user string
		want         int
	}{
		{"172.30.32.2:40000", "Olga", 200},     // the default ingress role: operator
		{"172.30.32.2:40000", "Vera", 403},     // a viewer by the options
		{"127.0.0.1:40000", "Olga", 403},       // loopback: the headers are not trusted, nobody logged in
		{"192.168.1.20:40000", "Olga", 403},    // not the proxy
		{"[::ffff:172.30.32.2]:4000", "", 200}, // the proxy without a user name: the default role
	} {
		if got := renew(tc.remote, tc.user); got != tc.want {
			t.Errorf("renew from %s as %q = %d, want %d", tc.remote, tc.user, got, tc.want)
		}
	}
	evs, _ := f.store.Events(t.Context(), inventory.EventFilter{Kind: protocol.EventRenewalRequested, Limit: 10})
	if len(evs) != 2 || evs[len(evs)-1].Actor != "ha:Olga" && evs[0].Actor != "ha:Olga" {
		t.Errorf("renewal events = %+v, want two, one by ha:Olga", evs)
	}
}
