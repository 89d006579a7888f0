package web

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/authz"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/secret"
	"github.com/hearth-pki/hearth/protocol"
)

// Who may do what on the dashboard (issue 15). Every route names the admin operation whose
// role it needs (routeOps), and gate checks it with authz.Check before the handler runs: the
// same check, by the same operation name, as the CLI, the bridge API and Home Assistant's
// broker. A route missing from the table needs an admin, so a new page is closed until it is
// listed. publicRoutes need no one.
var (
	routeOps = map[string]string{
		"GET /{$}":                     "device/list",
		"GET /devices":                 "device/list",
		"GET /campaigns":               "campaign/list",
		"GET /policy":                  "device/list",
		"GET /audit":                   "events",
		"GET /home":                    "device/list",
		"POST /home/help":              "help/request",
		"GET /devices/{id}":            "device/get",
		"POST /devices/{id}/renew":     "device/renew",
		"GET /enroll":                  "token/create",
		"POST /enroll":                 "token/create",
		"GET /api/devices":             "device/list",
		"GET /api/devices/{id}":        "device/get",
		"POST /api/devices/{id}/renew": "device/renew",
		"GET /api/events":              "events",
		"GET /metrics":                 "device/list",
	}
	publicRoutes = []string{"GET /healthz", "GET /readyz", "GET /login", "POST /login", "POST /logout", "GET /static/{file}", "GET /crl", "GET /crl.pem"}
)

// SessionCookie is the name of the dashboard's session cookie.
const SessionCookie = "hearth_session"

// DefaultSessionTTL is how long a dashboard login lasts.
const DefaultSessionTTL = 12 * time.Hour

// Users is what the dashboard needs to log people in (authz.Authenticator implements it).
type Users interface {
	// Authenticate checks a name and password and returns the principal.
	Authenticate(ctx context.Context, name, password string) (authz.Principal, error)
	// Lookup returns the principal of an account as it is now.
	Lookup(ctx context.Context, name string) (authz.Principal, error)
}

type principalKey struct{}

// anonymous is the principal of a request nobody authenticated.
var anonymous = authz.Principal{Name: "anonymous"}

// who is the principal gate attached to r, and the account of its session ("" without one).
type who struct {
	authz.Principal
	account string // the session's user, for the logout form
}

func whoOf(r *http.Request) who {
	w, ok := r.Context().Value(principalKey{}).(who)
	if !ok {
		return who{Principal: anonymous}
	}
	return w
}

// principal is who makes the request (gate decided it).
func (s *server) principal(r *http.Request) authz.Principal { return whoOf(r).Principal }

// identify decides who makes r: Home Assistant's user when the ingress proxy forwards it, an
// admin when the dashboard has no login (http_auth none), else the user of the session
// cookie, or of HTTP basic credentials (scripts, Prometheus), or anonymous.
func (s *server) identify(w http.ResponseWriter, r *http.Request) (who, bool) {
	if s.cfg.TrustIngress && fromProxy(r.RemoteAddr) {
		return who{Principal: s.ingressPrincipal(r)}, true
	}
	if s.cfg.Users == nil {
		return who{Principal: authz.Principal{Name: ActorLocal, Role: authz.Admin}}, true
	}
	if c, err := r.Cookie(SessionCookie); err == nil && c.Value != "" {
		se, err := s.cfg.Store.Session(r.Context(), secret.HashToken(c.Value), s.cfg.Now())
		if err == nil {
			if p, err := s.cfg.Users.Lookup(r.Context(), se.User); err == nil {
				return who{Principal: p, account: se.User}, true
			}
		}
	}
	if name, password, ok := r.BasicAuth(); ok {
		p, err := s.login(w, r, name, password, "basic")
		if err != nil {
			return who{}, false
		}
		return who{Principal: p}, true
	}
	return who{Principal: anonymous}, true
}

// ingressPrincipal maps the Home Assistant user the ingress proxy names to a role.
func (s *server) ingressPrincipal(r *http.Request) authz.Principal {
	role := s.cfg.IngressRole
	if role == 0 {
		role = authz.Admin
	}
	name := ""
	for _, h := range []string{"X-Remote-User-Name", "X-Remote-User-Id"} {
		u := cleanUser(r.Header.Get(h))
		if u == "" {
			continue
		}
		if name == "" {
			name = u
		}
		if ro, ok := s.cfg.IngressUsers[u]; ok {
			role = ro
			break
		}
	}
	if name == "" {
		return authz.Principal{Name: ActorIngress, Role: role}
	}
	return authz.Principal{Name: "ha:" + name, Role: role}
}

// fromProxy reports whether remote is Home Assistant's ingress proxy itself: only it may name
// the user with X-Remote-User-* headers.
func fromProxy(remote string) bool {
	ap, err := netip.ParseAddrPort(remote)
	return err == nil && ap.Addr().Unmap() == ingressProxy
}

// authorize checks r against the route table; it answers and returns false when r may not
// proceed: an anonymous page view goes to the login page, anything else is refused with 403.
func (s *server) authorize(w http.ResponseWriter, r *http.Request, pattern string) bool {
	for _, p := range publicRoutes {
		if p == pattern {
			return true
		}
	}
	op, ok := routeOps[pattern]
	if !ok {
		op = "dashboard" + r.URL.Path // unlisted: authz.Need answers admin
	}
	p := s.principal(r)
	err := authz.Check(p, op)
	if err == nil {
		return true
	}
	switch {
	case p.Role == 0 && r.Method == http.MethodGet && !strings.HasPrefix(pattern, "GET /api/") && pattern != "GET /metrics":
		seeOther(w, root(r)+"login")
	case strings.Contains(pattern, " /api/") || pattern == "GET /metrics":
		writeJSON(w, http.StatusForbidden, apiError(protocol.CodeForbidden, err.Error()))
	default:
		s.errorPage(w, r, http.StatusForbidden, err.Error())
	}
	return false
}

// crossOrigin reports a state-changing request a browser sent from another origin: its Origin
// header names another host than the request's. (Forms also carry the CSRF token and the API
// needs X-Requested-With; this refuses such a request before either is looked at.) Behind
// Home Assistant's ingress the proxy rewrites Host, so the check is left to those two.
func (s *server) crossOrigin(r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead || (s.cfg.TrustIngress && fromProxy(r.RemoteAddr)) {
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return false
	}
	u, err := url.Parse(o)
	return err != nil || !strings.EqualFold(u.Host, r.Host)
}

// loginPage shows the login form, with a hint when nobody can log in yet.
func (s *server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "login.html", page{Title: "Log in", Data: loginView{Enabled: s.cfg.Users != nil}})
}

type loginView struct {
	Enabled bool
	Error   string
	Name    string
}

// loginForm checks the form's credentials; on success it starts a session and goes to the
// dashboard.
func (s *server) loginForm(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Users == nil {
		s.errorPage(w, r, http.StatusNotFound, "this dashboard has no login (http_auth: none)")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil || !s.validToken(r.PostForm.Get("csrf")) {
		s.errorPage(w, r, http.StatusForbidden, "the login form expired or came from another site: reload the page")
		return
	}
	name, password := strings.TrimSpace(r.PostForm.Get("name")), r.PostForm.Get("password")
	p, err := s.login(w, r, name, password, "dashboard")
	if err != nil {
		if errors.Is(err, errThrottled) {
			return // login answered 429
		}
		s.render(w, r, http.StatusUnauthorized, "login.html", page{Title: "Log in",
			Data: loginView{Enabled: true, Error: "Wrong user name or password.", Name: name}})
		return
	}
	token := make([]byte, 32)
	rand.Read(token)
	value := base64.RawURLEncoding.EncodeToString(token)
	now := s.cfg.Now()
	ttl := s.cfg.SessionTTL
	if ttl <= 0 {
		ttl = DefaultSessionTTL
	}
	if err := s.cfg.Store.CreateSession(r.Context(), inventory.Session{Hash: secret.HashToken(value), User: name,
		CreatedAt: now, ExpiresAt: now.Add(ttl)}); err != nil {
		s.cfg.Logger.Error("store session", "user", name, "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, "the hub could not store the session")
		return
	}
	s.cfg.Logger.Info("dashboard login", "user", p.Name, "role", p.Role, "remote", r.RemoteAddr)
	http.SetCookie(w, s.cookie(r, value, int(ttl/time.Second)))
	seeOther(w, root(r))
}

// logout ends the session and goes back to the login page.
func (s *server) logout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil || !s.validToken(r.PostForm.Get("csrf")) {
		s.errorPage(w, r, http.StatusForbidden, "the logout form expired or came from another site: reload the page")
		return
	}
	if c, err := r.Cookie(SessionCookie); err == nil && c.Value != "" {
		if err := s.cfg.Store.DeleteSession(r.Context(), secret.HashToken(c.Value)); err != nil {
			s.cfg.Logger.Error("delete session", "err", err)
		}
	}
	http.SetCookie(w, s.cookie(r, "", -1))
	seeOther(w, root(r)+"login")
}

// cookie is the session cookie: HttpOnly, SameSite=Strict, Secure when the request came over
// TLS.
func (s *server) cookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: SessionCookie, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode}
}

var errThrottled = errors.New("too many failed logins")

// login is every password login of the dashboard (the form and HTTP basic credentials):
// throttled per client address and per name with exponential backoff (authz.Throttle), each
// failure in the audit log with the name tried as its actor. A throttled attempt is answered
// 429 with Retry-After here and checks no password.
func (s *server) login(w http.ResponseWriter, r *http.Request, name, password, via string) (authz.Principal, error) {
	keys := []string{"ip:" + clientIP(r.RemoteAddr), "name:" + name}
	if d := s.throttle.Wait(keys...); d > 0 {
		s.refused()
		s.cfg.Logger.Warn("dashboard login throttled", "user", name, "remote", r.RemoteAddr, "wait", d)
		w.Header().Set("Retry-After", strconv.Itoa(int((d+time.Second-1)/time.Second)))
		http.Error(w, fmt.Sprintf("too many failed logins: try again in %s", d.Round(time.Second)), http.StatusTooManyRequests)
		return authz.Principal{}, errThrottled
	}
	p, err := s.cfg.Users.Authenticate(r.Context(), name, password)
	if err != nil {
		s.throttle.Fail(keys...)
		s.refused()
		s.cfg.Logger.Warn("dashboard login failed", "user", name, "remote", r.RemoteAddr, "via", via)
		reason := "wrong user name or password"
		if !errors.Is(err, authz.ErrBadLogin) {
			reason = "the hub could not check the password"
		}
		user := protocol.Clip(cleanUser(name), maxUserLen)
		if _, aerr := s.cfg.Store.AppendEvent(r.Context(), inventory.Event{Time: s.cfg.Now(), Kind: protocol.EventLoginFailed,
			Actor: authz.PrincipalName(user), Message: "dashboard login refused: " + reason,
			Data: map[string]string{"user": user, "remote": clientIP(r.RemoteAddr), "via": via, "reason": reason}}); aerr != nil {
			s.cfg.Logger.Error("audit failed login", "err", aerr)
		}
		if via == "basic" {
			writeJSON(w, http.StatusUnauthorized, apiError(protocol.CodeForbidden, "wrong user name or password"))
		}
		return authz.Principal{}, err
	}
	s.throttle.Succeed(keys...)
	return p, nil
}

// refused counts a refused login (Config.LoginRefused).
func (s *server) refused() {
	if s.cfg.LoginRefused != nil {
		s.cfg.LoginRefused()
	}
}

// clientIP is the address part of remote (host:port).
func clientIP(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// seeOther redirects to the relative URL loc as it is (http.Redirect would make it an
// absolute path, which leaves Home Assistant's ingress prefix).
func seeOther(w http.ResponseWriter, loc string) {
	w.Header().Set("Location", loc)
	w.WriteHeader(http.StatusSeeOther)
}
