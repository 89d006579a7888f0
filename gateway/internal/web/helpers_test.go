package web

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/admin"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/lifecycle"
	"github.com/hearth-pki/hearth/gateway/internal/metrics"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
)

// t0 is the tests' fixed "now".
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

// fixture is a handler over a real inventory, CA and admin service, seeded by seed.
type fixture struct {
	store  *inventory.Store
	admin  *admin.Service
	broker *testkit.Publisher // what the admin service publishes
	cfg    Config
	h      http.Handler
}

// newFixture opens a seeded inventory and returns the handler built from cfg as changed by
// mod (which may be nil).
func newFixture(t testing.TB, mod func(*Config)) *fixture {
	t.Helper()
	store := hubkit.Store(t)
	authority := hubkit.CA(t, t0.Add(-365*day))
	f := &fixture{store: store, broker: &testkit.Publisher{}}
	now := func() time.Time { return t0 }
	machine, err := lifecycle.New(lifecycle.Config{Store: store, Publisher: f.broker, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = machine.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	// No renew cool-down: the tests renew one device several times to compare actors.
	f.admin = admin.New(admin.Config{Store: store, CA: authority, Broker: f.broker, Commands: machine, Revoker: machine, Advertise: "hub.test:8883", Now: now,
		RenewCooldown: -1})
	seed(t, store)
	// The agent devices are online and subscribed to their commands.
	for i, id := range []string{"hall-thermostat", "kitchen-plug"} {
		machine.SessionUp(id, lifecycle.Conn(i+1), "")
		machine.Subscribed(id, lifecycle.Conn(i+1))
	}
	f.cfg = Config{
		Admin: f.admin, Store: store, Online: func() int { return 2 }, Version: "1.2.3-test", Now: now,
		CA: CAInfo{RootNotAfter: authority.Root().NotAfter, IntermediateNotAfter: authority.Intermediate().NotAfter,
			Fingerprint: authority.Fingerprint()},
		Metrics: metrics.New(metrics.Config{Version: "1.2.3-test"}).Handler(),
	}
	if mod != nil {
		mod(&f.cfg)
	}
	f.h = Handler(f.cfg)
	return f
}

// issue records a certificate for device valid until notAfter (30 days long), requested at
// requested, and activates it when activate is set.
func issue(t testing.TB, s *inventory.Store, d inventory.Device, serial string, notAfter, requested time.Time, activate bool) {
	t.Helper()
	err := s.RecordIssuance(t.Context(), inventory.Issuance{
		Device: d,
		Cert: inventory.Certificate{Serial: serial, NotBefore: notAfter.Add(-30 * day), NotAfter: notAfter,
			Issuer: "Hearth Intermediate", KeyAlgorithm: "ECDSA-P256", Fingerprint: strings.Repeat(serial[:2], 32)},
		Attempt: inventory.Attempt{RequestID: "req-" + serial, Reason: "window", StartedAt: requested, FinishedAt: requested,
			Latency: 4 * time.Millisecond},
	})
	if err != nil {
		t.Fatalf("RecordIssuance(%s, %s) = %v", d.ID, serial, err)
	}
	if activate {
		if _, _, err := s.Activate(t.Context(), d.ID, serial, requested.Add(time.Minute)); err != nil {
			t.Fatalf("Activate(%s, %s) = %v", d.ID, serial, err)
		}
	}
}

// Seeded devices, in the order the device list must show them: problems first (expired
// garage-door, failing porch-camera, revoked old-bulb without an active certificate), then
// the expiring hall-thermostat, then new-sensor still enrolling, then the healthy ones;
// soonest expiry first within each.
var seededOrder = []string{"garage-door", "porch-camera", "old-bulb", "hall-thermostat", "new-sensor",
	"kitchen-plug", `odd"id\x`}

// seed fills the inventory: seven devices covering every state of the dashboard. In the last
// 24 hours there were two successful requests (kitchen-plug, new-sensor) and one failure
// (porch-camera).
func seed(t testing.TB, s *inventory.Store) {
	t.Helper()
	ctx := t.Context()
	dev := func(id, name string) inventory.Device {
		return inventory.Device{ID: id, Name: name, Family: "plug", Path: inventory.PathDirect, Mechanism: inventory.MechanismAgent}
	}
	// Healthy, renewed an hour ago, online.
	issue(t, s, dev("kitchen-plug", "Kitchen plug"), "0a01", t0.Add(-40*day), t0.Add(-70*day), true)
	issue(t, s, dev("kitchen-plug", ""), "0a02", t0.Add(29*day), t0.Add(-time.Hour), true)
	// Expiring in 3 days, online.
	issue(t, s, dev("hall-thermostat", "Hall thermostat"), "0b01", t0.Add(3*day), t0.Add(-27*day), true)
	// Expired 2 days ago, offline.
	issue(t, s, dev("garage-door", "Garage door"), "0c01", t0.Add(-2*day), t0.Add(-32*day), true)
	// Renewal failing, 25 days left.
	issue(t, s, dev("porch-camera", "Porch camera"), "0d01", t0.Add(25*day), t0.Add(-5*day), true)
	err := s.RecordFailedAttempt(ctx, inventory.Attempt{RequestID: "req-fail", DeviceID: "porch-camera", Reason: "window",
		StartedAt: t0.Add(-2 * time.Hour), FinishedAt: t0.Add(-2 * time.Hour), ErrorCode: "policy_denied"})
	if err != nil {
		t.Fatalf("RecordFailedAttempt() = %v", err)
	}
	if err := s.SetRenewal(ctx, "porch-camera", inventory.RenewalStatus{State: inventory.RenewalFailing, Failures: 3,
		LastCause: "policy_denied", NextAttemptAt: t0.Add(time.Hour)}); err != nil {
		t.Fatalf("SetRenewal() = %v", err)
	}
	// Revoked and quarantined.
	issue(t, s, dev("old-bulb", "Old bulb"), "0e01", t0.Add(10*day), t0.Add(-20*day), true)
	if _, err := s.RevokeDevice(ctx, "old-bulb", "key compromise", t0.Add(-day)); err != nil {
		t.Fatalf("RevokeDevice() = %v", err)
	}
	if err := s.SetState(ctx, "old-bulb", inventory.StateQuarantined, t0.Add(-day)); err != nil {
		t.Fatalf("SetState() = %v", err)
	}
	// Its agent reported a verified chain before the revocation: the page must not show that as trust.
	if err := s.UpdateHealth(ctx, "old-bulb", inventory.Health{ReportedSerial: "0e01", ChainOK: true, At: t0.Add(-2 * day)}); err != nil {
		t.Fatalf("UpdateHealth() = %v", err)
	}
	// An id that needs escaping everywhere (the inventory does not forbid it).
	issue(t, s, dev(`odd"id\x`, "Odd <b>name</b>"), "0f01", t0.Add(40*day), t0.Add(-10*day), true)
	// Enrolling: issued half an hour ago, not yet proved.
	issue(t, s, dev("new-sensor", "New sensor"), "1001", t0.Add(30*day), t0.Add(-30*time.Minute), false)

	for _, id := range []string{"kitchen-plug", "hall-thermostat"} {
		if err := s.SetOnline(ctx, id, true, t0.Add(-5*time.Minute)); err != nil {
			t.Fatalf("SetOnline(%s) = %v", id, err)
		}
	}
	if err := s.SetOnline(ctx, "garage-door", false, t0.Add(-3*day)); err != nil {
		t.Fatalf("SetOnline() = %v", err)
	}
	if err := s.SetState(ctx, "garage-door", inventory.StateOffline, t0.Add(-3*day)); err != nil {
		t.Fatalf("SetState() = %v", err)
	}
}

// do sends a request through the fixture's handler from remote and returns the response
// and its body.
func (f *fixture) do(t *testing.T, r *http.Request) (*http.Response, string) {
	t.Helper()
	if r.Host == "example.com" { // httptest's default: be the browser on the hub's own host
		r.Host = "127.0.0.1:8099"
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	resp := w.Result()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// get sends a GET for target.
func (f *fixture) get(t *testing.T, target string) (*http.Response, string) {
	t.Helper()
	return f.do(t, httptest.NewRequestWithContext(t.Context(), http.MethodGet, target, nil))
}

// postForm sends a form POST for target.
func (f *fixture) postForm(t *testing.T, target string, form url.Values) (*http.Response, string) {
	t.Helper()
	r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, target, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return f.do(t, r)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// csrfToken reads the renew form's token from a device page.
func csrfToken(t testing.TB, html string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(html)
	if m == nil {
		t.Fatalf("no CSRF field in the device page:\n%s", html)
	}
	return m[1]
}

// devicePath is the handler path of a device page.
func devicePath(id string) string { return "/devices/" + url.PathEscape(id) }

func mustStatus(t *testing.T, what string, resp *http.Response, body string, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("%s: status %d, want %d; body:\n%s", what, resp.StatusCode, want, body)
	}
}
