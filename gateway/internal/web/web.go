// Package web serves the hub's HTTP face: a server-rendered dashboard, a JSON API whose answers
// are the bridge API's data, Prometheus metrics and a health check for the add-on watchdog.
//
// Routes, all relative to wherever the handler is mounted:
//
//	GET  /                        overview: tiles, expiry timeline, lifetimes, success rates, failures, uptime
//	GET  /devices                 device list (?q=&family=&class=&state=&problem=&online=&sort=&page=)
//	GET  /devices/{id}            one device: certificate history, attempts, events (?before=), health, actions
//	POST /devices/{id}/renew      the dashboard's renew form; 303 back to the device page
//	GET  /campaigns               campaigns: progress, canaries, abort reason
//	GET  /policy                  policy classes, their devices and windows
//	GET  /audit                   audit log (?actor=&before=), chain verification (?verify=1)
//	GET  /home                    the resident's plain-language view
//	POST /home/help               "Request help": records and publishes help.requested; 303 back
//	GET  /enroll, POST /enroll    add a device: the form, then the token once with a QR code
//	GET  /static/{file}           the dashboard's one script (copy buttons)
//	GET  /api/devices             admin "device/list" data, one page (?limit=&cursor=&state=&family=&class=&online=)
//	GET  /api/devices/{id}        admin "device/get" data
//	POST /api/devices/{id}/renew  admin "device/renew" data
//	GET  /api/events              admin "events" data (?device=&limit=, limit 1..1000, default 50)
//	GET  /metrics                 Config.Metrics: Prometheus exposition (gateway/internal/metrics)
//	GET  /healthz                 200 "ok": the process serves (a load balancer's liveness)
//	GET  /readyz                  200 "ready", or 503 naming what is not (Config.Ready: the
//	                              database, the broker, the CA), for a load balancer's readiness
//	GET  /login, POST /login      the login form; a session cookie, then 303 to the dashboard
//	POST /logout                  ends the session; 303 to the login page
//
// Invariants:
//   - Every URL the pages contain is relative (Home Assistant's ingress serves the add-on under
//     a changing path prefix): links, form actions and redirects are computed from the request's
//     own depth, and the pages load nothing else (CSS is inline, plots are inline SVG drawn
//     on the server; the one script, static/app.js, only adds copy buttons).
//   - Every operation goes through admin.Service, the one implementation shared with the bridge
//     API and the CLI; this package renders, and decides only what to show (monitor.Judge
//     decides the problems). The one exception is Request help, which changes no device: it
//     appends its help.requested record to the audit log and hands the event to
//     Config.Notify (bridge/event) itself.
//   - A page costs a fixed number of queries, whatever the fleet's size: the fleet pages read
//     the whole fleet in one (inventory.Store.Fleet), shared for FleetMaxAge; a device's page
//     reads that device; nothing queries once per device.
//   - Plots are pure functions of the inventory and now, drawn on the server as SVG.
//   - State-changing requests are POSTs with a CSRF defence: the dashboard's forms carry a random
//     token made once per Handler, and the JSON API requires an X-Requested-With header, which a
//     cross-site page cannot send without a CORS preflight this server never grants.
//   - With TrustIngress only Home Assistant's ingress proxy (172.30.32.2) and loopback are
//     served, and a request from the proxy is the Home Assistant user it names (X-Remote-User-*
//     headers, trusted from the proxy only), with the role IngressRole / IngressUsers give.
//     Without it any client is served, but only under a Host that is an IP address, localhost
//     or one of AllowedHosts, so a DNS-rebinding page cannot read or drive a dashboard bound
//     to loopback. /healthz and /readyz are open to every client either way.
//   - Every other request needs a principal whose role allows the route's operation
//     (login.go: routeOps, checked with authz.Check, the check every front end shares): from
//     ingress, a login session (cookie HttpOnly, SameSite=Strict, Secure over TLS) or HTTP
//     basic credentials of a hub user. Logins are throttled per address and name, and each
//     failure is in the audit log. A state-changing request whose Origin is another host is
//     refused.
//
// Concurrency: the handler is safe for concurrent use; it keeps no state besides its
// configuration, CSRF token and the last judged fleet (at most Config.FleetMaxAge old, under
// a mutex).
package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hearth-pki/hearth/gateway/internal/admin"
	"github.com/hearth-pki/hearth/gateway/internal/authz"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

// ingressProxy is the address Home Assistant's ingress proxy connects from.
var ingressProxy = netip.MustParseAddr("172.30.32.2")

// Actors recorded for requests that name no Home Assistant user.
const (
	ActorLocal   = "web"        // TrustIngress is false: whoever reaches the bound address
	ActorIngress = "ha:unknown" // TrustIngress is true but the proxy named no user
)

// maxUserLen bounds the Home Assistant user name kept in the actor.
const maxUserLen = 64

// CAInfo is what the dashboard and the metrics show of the hub's CA, and of the broker's
// certificate (the Broker fields; zero when unknown).
type CAInfo struct {
	RootNotAfter         time.Time
	IntermediateNotAfter time.Time
	Fingerprint          string
	BrokerSubject        string
	BrokerSerial         string
	BrokerNotAfter       time.Time
}

// Config holds the handler's collaborators and settings. Admin and Store are required.
type Config struct {
	Admin *admin.Service
	Store *inventory.Store
	// Online returns the number of live device sessions (the broker's count). Nil counts the
	// devices the inventory marks online.
	Online func() int
	CA     CAInfo
	// CAState, if set, returns the CA as it is now, read at each page: its dates follow a
	// rotation, a broker certificate renewal and a host names change without a restart.
	CAState func() CAInfo
	Version string
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// TrustIngress: when true (add-on), only requests from 172.30.32.2 (HA's ingress proxy) or
	// loopback are served and the user comes from X-Remote-User-Name / X-Remote-User-Id headers,
	// used as the audit actor ("ha:<name>"); when false, any client (the hub binds
	// 127.0.0.1:8099 by default) and the actor is ActorLocal.
	TrustIngress bool
	// AllowedHosts are host names (without port) accepted in the Host header when TrustIngress
	// is false, besides IP addresses and localhost; "*" accepts any.
	AllowedHosts []string
	// Policy is the policy in force, for the devices' renewal windows and the policy page;
	// a new value (pointer) drops the cached fleet. Default policy.Default.
	Policy func() *policy.Policy
	// FleetMaxAge is how long one read of the whole fleet serves the overview, the device
	// list, the policy and the resident's pages (a device's own page always reads it
	// afresh). Zero means DefaultFleetMaxAge; negative, a read on every page.
	FleetMaxAge time.Duration
	// Notify receives the events the dashboard raises (help.requested) for bridge/event and
	// the alert routes. Default: none (they are still recorded in the audit log).
	Notify func(protocol.Event)
	// Metrics serves GET /metrics (metrics.Metrics.Handler); nil serves none.
	Metrics http.Handler
	// Ready reports whether the hub can serve (GET /readyz): nil, or an error naming what is
	// not ready. Nil Ready: /readyz answers as /healthz does.
	Ready func(ctx context.Context) error
	// CRL, when set, serves the hub's CRL at crl (DER) and crl.pem (PEM) for third-party
	// verifiers, without login.
	CRL http.Handler
	// Users logs people in outside Home Assistant's ingress (login.go): every route but
	// /healthz and the login page then needs a session (or HTTP basic credentials) of a user
	// whose role allows the route's operation. Nil is http_auth none: everyone who reaches the
	// listener is an admin (config allows it only on a loopback address).
	Users Users
	// IngressRole is the role of a Home Assistant user coming through ingress; IngressUsers
	// overrides it per user name or id. Default authz.Admin.
	IngressRole  authz.Role
	IngressUsers map[string]authz.Role
	// LoginRefused is called once for every refused password login (the form or HTTP basic
	// credentials: a wrong name or password, a failed check, or a throttled attempt), for
	// hearth_refused_logins_total{reason="dashboard"}. Nil counts nothing.
	LoginRefused func()
	// SessionTTL is how long a login lasts. Default DefaultSessionTTL.
	SessionTTL time.Duration
	Logger     *slog.Logger

	// Throttle holds the failed logins (the hub keeps it across restarts). Default a new one.
	Throttle *authz.Throttle
}

type server struct {
	cfg      Config
	csrf     string
	pages    *template.Template
	mux      *http.ServeMux
	throttle *authz.Throttle
	fleet    fleetCache
	// staleLimit replaces maxStaleClasses when set (tests).
	staleLimit int
}

// Handler returns the dashboard, API, metrics and health handler described in the package
// documentation.
func Handler(cfg Config) http.Handler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Policy == nil {
		def := policy.Default() // one value, so that the fleet cache sees the same policy
		cfg.Policy = func() *policy.Policy { return def }
	}
	if cfg.Notify == nil {
		cfg.Notify = func(protocol.Event) {}
	}
	if cfg.FleetMaxAge == 0 {
		cfg.FleetMaxAge = DefaultFleetMaxAge
	}
	token := make([]byte, 32)
	rand.Read(token) // never fails (crypto/rand)
	if cfg.Throttle == nil {
		cfg.Throttle = authz.NewThrottle(cfg.Now)
	}
	s := &server{cfg: cfg, csrf: hex.EncodeToString(token), pages: parsePages(), throttle: cfg.Throttle}

	mux := http.NewServeMux()
	s.mux = mux
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.loginForm)
	mux.HandleFunc("POST /logout", s.logout)
	mux.HandleFunc("GET /{$}", s.overview)
	mux.HandleFunc("GET /devices", s.devices)
	mux.HandleFunc("GET /devices/{id}", s.device)
	mux.HandleFunc("GET /campaigns", s.campaigns)
	mux.HandleFunc("GET /ca", s.ca)
	mux.HandleFunc("GET /policy", s.policy)
	mux.HandleFunc("GET /audit", s.audit)
	mux.HandleFunc("GET /home", s.home)
	mux.HandleFunc("POST /home/help", s.helpForm)
	mux.HandleFunc("GET /static/{file}", s.static)
	mux.HandleFunc("POST /devices/{id}/renew", s.renewForm)
	mux.HandleFunc("GET /enroll", s.enrollPage)
	mux.HandleFunc("POST /enroll", s.enrollForm)
	mux.HandleFunc("GET /api/devices", s.apiDevices)
	mux.HandleFunc("GET /api/devices/{id}", s.apiDevice)
	mux.HandleFunc("POST /api/devices/{id}/renew", s.apiRenew)
	mux.HandleFunc("GET /api/events", s.apiEvents)
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics)
	}
	if cfg.CRL != nil {
		mux.Handle("GET /crl", cfg.CRL)
		mux.Handle("GET /crl.pem", cfg.CRL)
		// During and after an intermediate rotation: the previous intermediate's CRL, and
		// the root's (intermediates revoked after a compromise).
		for _, path := range []string{"/crl-previous", "/crl-previous.pem", "/crl-root", "/crl-root.pem"} {
			mux.Handle("GET "+path, cfg.CRL)
		}
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if cfg.Ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
			defer cancel()
			if err := cfg.Ready(ctx); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				w.Write([]byte("not ready: " + err.Error()))
				return
			}
		}
		w.Write([]byte("ready"))
	})
	return s.gate(mux)
}

// readyTimeout bounds /readyz's checks: a load balancer's probe must get an answer.
const readyTimeout = 3 * time.Second

// probe reports whether path is a load balancer's probe, served to every client under any
// Host without login.
func probe(path string) bool { return path == "/healthz" || path == "/readyz" }

// gate refuses clients and Host names the configuration does not allow, and sets the headers
// every answer carries.
func (s *server) gate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !probe(r.URL.Path) {
			if s.cfg.TrustIngress && !fromIngress(r.RemoteAddr) {
				s.cfg.Logger.Warn("web request refused: not from the ingress proxy", "remote", r.RemoteAddr, "path", r.URL.Path)
				http.Error(w, "forbidden: this add-on is reached through Home Assistant's ingress", http.StatusForbidden)
				return
			}
			if !s.cfg.TrustIngress && !s.hostAllowed(r.Host) {
				s.cfg.Logger.Warn("web request refused: unknown Host", "host", r.Host, "remote", r.RemoteAddr)
				http.Error(w, "forbidden: unknown host name "+r.Host+" (add it to the allowed web hosts)", http.StatusForbidden)
				return
			}
		}
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		// Only the dashboard's own script, no external resource; framing only by the same
		// origin (HA's ingress iframe).
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src data:; "+
			"form-action 'self'; frame-ancestors 'self'; base-uri 'none'")
		if probe(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		if s.crossOrigin(r) {
			s.cfg.Logger.Warn("web request refused: cross-origin", "origin", r.Header.Get("Origin"), "host", r.Host, "path", r.URL.Path)
			http.Error(w, "forbidden: cross-origin request", http.StatusForbidden)
			return
		}
		id, ok := s.identify(w, r)
		if !ok {
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), principalKey{}, id))
		if _, pattern := s.mux.Handler(r); pattern != "" && !s.authorize(w, r, pattern) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// fromIngress reports whether remote (host:port) is the ingress proxy or loopback.
func fromIngress(remote string) bool {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	return a == ingressProxy || a.IsLoopback()
}

// hostAllowed reports whether the Host header names this server in a way a DNS-rebinding
// page cannot: an IP literal, localhost, or a configured name.
func (s *server) hostAllowed(host string) bool {
	if host == "" {
		return true // HTTP/1.0 without Host: no browser sends that
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	return slices.ContainsFunc(s.cfg.AllowedHosts, func(a string) bool {
		return a == "*" || strings.EqualFold(strings.TrimSuffix(a, "."), host)
	})
}

// cleanUser makes a header value fit for the audit log: valid UTF-8, printable, trimmed, at
// most maxUserLen runes.
func cleanUser(v string) string {
	v = strings.ToValidUTF8(v, "")
	v = strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return -1
		}
		return r
	}, v)
	v = strings.TrimSpace(v)
	if utf8.RuneCountInString(v) > maxUserLen {
		v = strings.TrimSpace(string([]rune(v)[:maxUserLen]))
	}
	return v
}

// validToken reports whether the form's CSRF token is this handler's.
func (s *server) validToken(tok string) bool {
	return subtle.ConstantTimeCompare([]byte(tok), []byte(s.csrf)) == 1
}

// root is the relative path from the request's URL to the handler's root: "./" for "/",
// "../" for "/devices/x", "../../" for "/devices/x/renew".
func root(r *http.Request) string {
	n := strings.Count(r.URL.Path, "/") - 1
	if n <= 0 {
		return "./"
	}
	return strings.Repeat("../", n)
}
