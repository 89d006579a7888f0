package web

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/admin"
	"github.com/hearth-pki/hearth/gateway/internal/rotation"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
	"github.com/hearth-pki/hearth/protocol"
)

// rotationRecord stands in for internal/rotation's Rotator: it reports a fixed rotation, as
// the Rotator reads its record (the rotation itself is tested there and end to end).
type rotationRecord struct{ rot *protocol.CARotation }

func (r rotationRecord) Rotate(context.Context, rotation.Request) (rotation.Result, error) {
	return rotation.Result{}, errors.New("not in this test")
}

func (r rotationRecord) Status(context.Context) (*protocol.CARotation, error) { return r.rot, nil }

// liveCA is a CAState that a test changes, as the hub's does after a rotation or a broker
// certificate renewal.
type liveCA struct {
	mu   sync.Mutex
	info CAInfo
}

func (l *liveCA) get() CAInfo  { l.mu.Lock(); defer l.mu.Unlock(); return l.info }
func (l *liveCA) set(i CAInfo) { l.mu.Lock(); l.info = i; l.mu.Unlock() }

// caFixture is the dashboard with a rotation under way (rot, nil for none) and a CA state
// the test changes.
func caFixture(t testing.TB, rot *protocol.CARotation) (*fixture, *liveCA) {
	t.Helper()
	authority := hubkit.CA(t, t0.Add(-365*day))
	live := &liveCA{info: CAInfo{RootNotAfter: authority.Root().NotAfter, IntermediateNotAfter: authority.Intermediate().NotAfter,
		Fingerprint: authority.Fingerprint(), BrokerSubject: "CN=hub.test", BrokerSerial: "b1", BrokerNotAfter: t0.Add(200 * day)}}
	f := newFixture(t, func(c *Config) {
		var r admin.Rotation
		if rot != nil {
			r = rotationRecord{rot}
		}
		c.Admin = admin.New(admin.Config{Store: c.Store, CA: authority, Rotation: r, Now: c.Now})
		c.CAState = live.get
	})
	return f, live
}

// page200 returns the body of a GET of path, failing on any status but 200.
func page200(t *testing.T, f *fixture, path string) string {
	t.Helper()
	resp, body := f.get(t, path)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d\n%s", path, resp.StatusCode, body)
	}
	return body
}

// TestCAPage: the CA page lists the hub's certificates with their expiry and the rotation's
// progress with its campaign; its dates, and the footer's on every page, are the CA's as it
// is at the request (a broker certificate renewed after the start shows at once).
func TestCAPage(t *testing.T) {
	rot := &protocol.CARotation{State: protocol.RotationMoving, Incident: true, Started: t0.Add(-time.Hour),
		Previous:     protocol.CACertificate{Subject: "CN=Hearth Intermediate CA 1", Serial: "aa", NotAfter: t0.Add(900 * day)},
		Intermediate: &protocol.CACertificate{Subject: "CN=Hearth Intermediate CA 2", Serial: "bb", NotAfter: t0.Add(1800 * day)},
		Campaign:     "incident-intermediate-x", CampaignState: protocol.CampaignRunning, Devices: 5, Remaining: 2}
	f, live := caFixture(t, rot)
	body := page200(t, f, "/ca")
	for _, want := range []string{
		`<a href="./ca" aria-current="page">CA</a>`,
		`<progress max="5" value="3" aria-label="Devices moved"></progress>`,
		`<span class="moved">3 moved</span>`, `<span class="remaining">2 still on the previous intermediate</span>`,
		`<a href="./campaigns#c-incident-intermediate-x">incident-intermediate-x</a> (running)`,
		"after a suspected compromise", "CN=Hearth Intermediate CA 1",
		`<tr data-role="Broker certificate">`, ">b1<", formatDate(t0.Add(200 * day)),
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /ca lacks %q", want)
		}
	}
	// The broker certificate is renewed: the next page shows the new one, no restart.
	info := live.get()
	info.BrokerSerial, info.BrokerNotAfter = "b2", t0.Add(400*day)
	info.IntermediateNotAfter = t0.Add(1800 * day)
	live.set(info)
	body = page200(t, f, "/ca")
	if !strings.Contains(body, ">b2<") || !strings.Contains(body, formatDate(t0.Add(400*day))) || strings.Contains(body, ">b1<") {
		t.Errorf("GET /ca after the broker certificate's renewal does not show the new one")
	}
	if home := page200(t, f, "/campaigns"); !strings.Contains(home, formatDate(t0.Add(1800*day))) {
		t.Errorf("the footer does not show the intermediate's new expiry")
	}

	// No rotation yet: the page says so.
	f, _ = caFixture(t, nil)
	if body := page200(t, f, "/ca"); !strings.Contains(body, "No rotation yet.") || strings.Contains(body, "<progress") {
		t.Errorf("GET /ca without a rotation:\n%s", body)
	}
}

// TestBrowserCA opens the CA page in Chromium during a rotation: the certificates' table,
// the progress bar's figures and the link to the campaign, no console error, the page's
// accessibility checks.
func TestBrowserCA(t *testing.T) {
	b := newBrowser(t)
	rot := &protocol.CARotation{State: protocol.RotationMoving, Started: t0.Add(-time.Hour),
		Previous:     protocol.CACertificate{Subject: "CN=Hearth Intermediate CA 1", Serial: "aa", NotAfter: t0.Add(900 * day)},
		Intermediate: &protocol.CACertificate{Subject: "CN=Hearth Intermediate CA 2", Serial: "bb", NotAfter: t0.Add(1800 * day)},
		Campaign:     "rotate-intermediate-x", CampaignState: protocol.CampaignRunning, Devices: 12, Remaining: 9}
	f, _ := caFixture(t, rot)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serve(ctx, ln, f.h) }()
	t.Cleanup(func() { stop(); <-served })
	b.base = "http://" + ln.Addr().String() + "/"

	b.open(t, "ca", "ca")
	if got := eval[[]string](t, b, `[...document.querySelectorAll("table.ca-certs tbody tr")].map(r => r.dataset.role)`); strings.Join(got, ",") !=
		"Root CA,Intermediate CA,Broker certificate" {
		t.Errorf("CA page rows = %q", got)
	}
	if got := eval[[]float64](t, b, `(p => [p.value, p.max])(document.querySelector("progress"))`); len(got) != 2 || got[0] != 3 || got[1] != 12 {
		t.Errorf("progress = %v, want 3 of 12", got)
	}
	if got := eval[string](t, b, `document.querySelector("a[href*='campaigns#']").href`); got != b.base+"campaigns#c-rotate-intermediate-x" {
		t.Errorf("campaign link = %q", got)
	}
	if got := eval[string](t, b, `document.querySelector("nav a[aria-current=page]").textContent`); got != "CA" {
		t.Errorf("current nav entry = %q, want CA", got)
	}
}
