package web

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/hearth-pki/hearth/gateway/internal/authz"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/secret"
)

// BenchmarkAuthorizedRequest is the cost of who may do what on one API read: without a login
// (http_auth none), with a session cookie (one inventory read for the session, one for the
// user), and with HTTP basic credentials hashed as the hub hashes them (a full PBKDF2 check
// per request: scripts should prefer a session).
func BenchmarkAuthorizedRequest(b *testing.B) {
	hash, err := secret.HashPassword(testPassword)
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"none", "session", "basic"} {
		b.Run(mode, func(b *testing.B) {
			f := newFixture(b, func(c *Config) {
				if mode != "none" {
					c.Users = authz.NewAuthenticator(nil, authz.Inventory(c.Store))
				}
			})
			if err := f.store.AddUser(b.Context(), inventory.User{Name: "alice", Role: "admin", PasswordHash: hash, CreatedAt: t0}); err != nil {
				b.Fatal(err)
			}
			var cookie *http.Cookie
			if mode == "session" {
				r := httptest.NewRequest(http.MethodGet, "/login", nil)
				r.Host = "127.0.0.1:8099"
				w := httptest.NewRecorder()
				f.h.ServeHTTP(w, r)
				form := url.Values{"csrf": {csrfToken(b, w.Body.String())}, "name": {"alice"}, "password": {testPassword}}
				r = httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(form.Encode()))
				r.Host = "127.0.0.1:8099"
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				w = httptest.NewRecorder()
				f.h.ServeHTTP(w, r)
				for _, c := range w.Result().Cookies() {
					cookie = c
				}
			}
			b.ResetTimer()
			for b.Loop() {
				r := httptest.NewRequest(http.MethodGet, "/api/devices/kitchen-plug", nil)
				r.Host = "127.0.0.1:8099"
				switch mode {
				case "session":
					r.AddCookie(cookie)
				case "basic":
					r.SetBasicAuth("alice", testPassword)
				}
				w := httptest.NewRecorder()
				f.h.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("GET = %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}
