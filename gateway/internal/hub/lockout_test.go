package hub

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/hearth-pki/hearth/gateway/internal/access"
	"github.com/hearth-pki/hearth/gateway/internal/authz"
	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/secret"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
	"github.com/hearth-pki/hearth/protocol"
)

// clock is a hub clock the test moves by hand.
type clock struct{ t atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.t.Store(t.UnixNano()); return c }

func (c *clock) now() time.Time      { return time.Unix(0, c.t.Load()) }
func (c *clock) add(d time.Duration) { c.t.Add(int64(d)) }
func (c *clock) options() Options    { return Options{Version: "test", Now: c.now} }

// TestUserBrokerLoginBackoff: a hub user (added like `user add`) logging in to the hub's
// broker for the bridge API is behind the same per-source and per-name backoff as a
// configured admin (issue 15): after access.FreeFailures wrong passwords from one address,
// even the right password is refused from there, while the user still logs in from another
// address; the same holds for the configured admin. Real MQTT clients over TLS.
func TestUserBrokerLoginBackoff(t *testing.T) {
	clk := newClock(time.Now())
	// A configured admin with a cheap hash (HEARTH_ADMIN_PASSWORD's costs 600,000 iterations,
	// seconds under the race detector).
	cfg := hubkit.Config(t, fmt.Sprintf("admins: [{name: root, password_hash: %q}]\n", testkit.PasswordHash(userPassword)))
	h := runHub(t, cfg, clk.options())
	if err := h.store.AddUser(t.Context(), inventory.User{Name: "vera", Role: "viewer", PasswordHash: testkit.PasswordHash(userPassword), CreatedAt: clk.now()}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ user, password, attacker, clean string }{
		{"vera", userPassword, "127.0.0.3", "127.0.0.4"},
		{"root", userPassword, "127.0.0.5", "127.0.0.6"},
	} {
		t.Run(tc.user, func(t *testing.T) {
			if _, err := loginFrom(t, h, tc.attacker, tc.user, tc.password); err != nil {
				t.Fatalf("the right password before any failure = %v, want accepted", err)
			}
			for i := range access.FreeFailures + 1 {
				if _, err := loginFrom(t, h, tc.attacker, tc.user, "wrong password"); err == nil {
					t.Fatalf("wrong password %d accepted", i+1)
				}
			}
			if _, err := loginFrom(t, h, tc.attacker, tc.user, tc.password); err == nil {
				t.Errorf("the right password from the source that failed %d times = accepted, want it held back", access.FreeFailures+1)
			}
			if _, err := loginFrom(t, h, tc.clean, tc.user, tc.password); err != nil {
				t.Errorf("the right password from another source = %v, want accepted: the backoff locked %s out", err, tc.user)
			}
			clk.add(access.FirstWait)
			if _, err := loginFrom(t, h, tc.attacker, tc.user, tc.password); err != nil {
				t.Errorf("the right password once the wait passed = %v, want accepted", err)
			}
		})
	}
}

// TestLockoutSurvivesHubRestart: a hub stopped and started again on the same data directory
// (issue 15) still backs off the address that guessed enrollment tokens for a device — the
// right token included — and the one that guessed a user's broker password, while the
// device enrolls from another address and the user logs in from another; the dashboard's
// login throttle is kept too. Real hubs, real
// MQTT clients over TLS, the real SQLite file; the clock stands still so that the 1 s wait
// the sixth failure imposes outlasts the restart.
func TestLockoutSurvivesHubRestart(t *testing.T) {
	clk := newClock(time.Now())
	cfg := hubkit.Config(t, "")
	h, stop := openHub(t, cfg, clk.options())
	if err := h.store.AddUser(t.Context(), inventory.User{Name: "vera", Role: "viewer", PasswordHash: testkit.PasswordHash(userPassword), CreatedAt: clk.now()}); err != nil {
		t.Fatal(err)
	}
	tok, err := h.Admin().CreateToken(t.Context(), protocol.TokenRequest{ID: "cam"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range access.FreeFailures + 1 {
		if r := enrollFrom(t, h, "127.0.0.2", "cam", secret.NewToken()); r.Error == nil || r.Error.Code != protocol.CodeTokenUnknown {
			t.Fatalf("bad token %d = %+v, want token_unknown", i+1, r.Error)
		}
		if _, err := loginFrom(t, h, "127.0.0.3", "vera", "wrong password"); err == nil {
			t.Fatalf("wrong password %d accepted", i+1)
		}
	}
	if r := enrollFrom(t, h, "127.0.0.2", "cam", tok.Token); r.Error == nil || r.Error.Code != protocol.CodeLockedOut {
		t.Fatalf("the right token from the guessing source before the restart = %+v, want locked_out", r.Error)
	}
	// The dashboard's login throttle too (HTTP basic credentials on the JSON API).
	srv := httptest.NewServer(h.dashboard())
	for i := range authz.FreeFailures + 1 {
		if code := basicLogin(t, srv.URL, "vera", "wrong password"); code != http.StatusUnauthorized {
			t.Fatalf("dashboard login %d with a wrong password = %d, want 401", i+1, code)
		}
	}
	srv.Close()
	stop()

	h, _ = openHub(t, cfg, clk.options())
	srv = httptest.NewServer(h.dashboard())
	defer srv.Close()
	if code := basicLogin(t, srv.URL, "vera", userPassword); code != http.StatusTooManyRequests {
		t.Errorf("vera's right password on the dashboard after the restart = %d, want 429: the throttle was forgotten", code)
	}
	if r := enrollFrom(t, h, "127.0.0.2", "cam", tok.Token); r.Error == nil || r.Error.Code != protocol.CodeLockedOut || r.Error.RetryAfter < 1 {
		t.Errorf("the right token from the guessing source after the restart = %+v, want locked_out with a retry_after", r.Error)
	}
	if _, err := loginFrom(t, h, "127.0.0.3", "vera", userPassword); err == nil {
		t.Error("vera's password from the guessing source after the restart = accepted, want it held back")
	}
	if _, err := loginFrom(t, h, "127.0.0.4", "vera", userPassword); err != nil {
		t.Errorf("vera's password from another source after the restart = %v, want accepted", err)
	}
	if r := enrollFrom(t, h, "127.0.0.1", "cam", tok.Token); r.Error != nil || r.Chain == "" {
		t.Errorf("the device's own enrollment from another source after the restart = %+v, want a certificate", r.Error)
	}
}

// openHub opens a hub for cfg and runs it; stop (also run when the test ends) stops it and
// waits until Run returned, so that another hub can open the same data directory.
func openHub(t *testing.T, cfg config.Config, opts Options) (*Hub, func()) {
	t.Helper()
	h, err := Open(t.Context(), cfg, opts)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
	}
	t.Cleanup(stop)
	return h, stop
}

// enrollFrom logs in as id with token from the address ip and sends one enrollment CSR: the
// hub's answer.
func enrollFrom(t *testing.T, h *Hub, ip, id, token string) protocol.Cert {
	t.Helper()
	c, err := loginFrom(t, h, ip, id, token)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(0)
	_, csr := testkit.KeyAndCSR(t, id)
	var reply protocol.Cert
	raw := request(t, c, h.topics.Device(id, protocol.KindCSR), &protocol.CSR{V: 1, RequestID: "enroll-1", CSR: csr, Reason: protocol.ReasonEnroll, Time: time.Now()},
		h.topics.Device(id, protocol.KindCert))
	if err := protocol.Decode(raw, &reply); err != nil {
		t.Fatal(err)
	}
	return reply
}

// basicLogin asks the dashboard's JSON API for the device list with HTTP basic credentials:
// the status.
func basicLogin(t *testing.T, base, user, password string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/api/devices", nil)
	req.SetBasicAuth(user, password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// loginFrom is clientFrom with room for a loaded machine: a password login from the address
// ip, as id with password.
func loginFrom(t *testing.T, h *Hub, ip, id, password string) (mqtt.Client, error) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(h.ca.Root())
	opts := mqtt.NewClientOptions().AddBroker("tls://" + h.BrokerAddr().String()).SetClientID(id).
		SetTLSConfig(&tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(30 * time.Second).SetUsername(id).SetPassword(password).
		SetDialer(&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 30 * time.Second})
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(60*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("login from %s: %v", ip, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}
