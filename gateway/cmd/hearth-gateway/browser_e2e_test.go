package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
)

// hubScreenshotsEnv names the directory TestBrowserHub writes its screenshots to, as
// internal/web's TestBrowser does; unset, a temporary directory (logged either way).
const hubScreenshotsEnv = "HEARTH_SCREENSHOTS"

// browserFamilies are the families TestBrowserHub seeds, with their number of devices.
var browserFamilies = []struct {
	family string
	n      int
}{{"camera", 7}, {"plug", 12}, {"thermostat", 5}}

// seedBrowserInventory stores the families' devices in the stopped hub's inventory, each with
// an active certificate expiring within the next 90 days, one renewal committed and, for one
// device in four, one refused (the overview's success rates and failures have something to
// plot); the plugs were online for six hours of the last day. It returns the number of
// devices.
func seedBrowserInventory(t *testing.T, data string, now time.Time) int {
	t.Helper()
	ctx := t.Context()
	store, err := inventory.Open(ctx, filepath.Join(data, "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var items []inventory.Issuance
	for _, f := range browserFamilies {
		for i := range f.n {
			id := fmt.Sprintf("%s-%d", f.family, i+1)
			notAfter := now.Add(time.Duration(3+len(items)*3) * 24 * time.Hour)
			items = append(items, inventory.Issuance{
				Device: inventory.Device{ID: id, Name: fmt.Sprintf("%s %d", f.family, i+1), Family: f.family,
					Path: inventory.PathDirect, Mechanism: inventory.MechanismAgent},
				Cert: inventory.Certificate{Serial: fmt.Sprintf("%08x", 0x2000+len(items)), NotBefore: notAfter.Add(-90 * 24 * time.Hour),
					NotAfter: notAfter, Issuer: "Hearth Intermediate", KeyAlgorithm: "ECDSA-P256", Fingerprint: fmt.Sprintf("%064x", len(items))},
				Attempt: inventory.Attempt{RequestID: "r-" + id, Reason: "window", StartedAt: now.Add(-2 * time.Hour),
					FinishedAt: now.Add(-2 * time.Hour), Latency: 40 * time.Millisecond},
			})
		}
	}
	for i, err := range store.RecordIssuances(ctx, items) {
		if err != nil {
			t.Fatalf("RecordIssuances()[%d] = %v", i, err)
		}
	}
	for i, in := range items {
		if _, _, err := store.Activate(ctx, in.Device.ID, in.Cert.Serial, now.Add(-2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := store.FinishAttempt(ctx, in.Device.ID, in.Attempt.RequestID, inventory.OutcomeCommitted, "", now.Add(-2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if in.Device.Family == "plug" { // online from 12 to 6 hours ago: a quarter of the day
			if err := store.SetOnline(ctx, in.Device.ID, true, now.Add(-12*time.Hour)); err != nil {
				t.Fatal(err)
			}
			if err := store.SetOnline(ctx, in.Device.ID, false, now.Add(-6*time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
		if i%4 == 0 {
			err := store.RecordFailedAttempt(ctx, inventory.Attempt{RequestID: "f-" + in.Device.ID, DeviceID: in.Device.ID, Reason: "command",
				StartedAt: now.Add(-3 * time.Hour), FinishedAt: now.Add(-3 * time.Hour), ErrorCode: "policy_denied", Detail: "seeded refusal"})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return len(items)
}

// pageErrors collects what pages report as errors: console.error and console.warn calls,
// uncaught exceptions, and error or warning entries of the browser log (a CSP violation, a
// failed load).
type pageErrors struct {
	mu   sync.Mutex
	errs []string
}

func (c *pageErrors) listen(ev any) {
	var msg string
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeWarning {
			msg = "console." + string(e.Type)
			for _, a := range e.Args {
				msg += " " + strings.Trim(string(a.Value), `"`) + a.Description
			}
		}
	case *runtime.EventExceptionThrown:
		msg = "exception: " + e.ExceptionDetails.Text
	case *log.EventEntryAdded:
		if e.Entry.Level == log.EntryLevelError || e.Entry.Level == log.EntryLevelWarning {
			msg = fmt.Sprintf("log %s (%s): %s %s", e.Entry.Level, e.Entry.Source, e.Entry.Text, e.Entry.URL)
		}
	}
	if msg != "" {
		c.mu.Lock()
		c.errs = append(c.errs, msg)
		c.mu.Unlock()
	}
}

func (c *pageErrors) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.errs
	c.errs = nil
	return out
}

// TestBrowserHub drives Debian's Chromium headless against the whole hub: `hearth-gateway
// serve` as a process on a seeded inventory, its dashboard on 127.0.0.1 with logins
// (http_auth login, the admin from HEARTH_ADMIN_PASSWORD). The dashboard sends a stranger to
// the login page; the login form opens a session; every page renders without a console
// error; the timeline has one mark per device; a family filter narrows the list; the device
// page offers Renew now; logging out ends the session. Screenshots of every page go to
// $HEARTH_SCREENSHOTS (else a temporary directory, logged).
func TestBrowserHub(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the hub process and a real Chromium")
	}
	chromium := testkit.RequirePeer(t, "chromium")
	data := t.TempDir()
	// The first start creates the CA and the inventory; the devices are seeded while the hub
	// is stopped, as an inventory it finds at its next start.
	first := startHubProcess(t, data, "127.0.0.1:0")
	first.kill()
	devices := seedBrowserInventory(t, data, time.Now())

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := ln.Addr().String()
	ln.Close()
	startHubProcess(t, data, "127.0.0.1:0", "--http", httpAddr)
	base := "http://" + httpAddr + "/"
	testkit.Eventually(t, 30*time.Second, func() bool {
		c, err := net.Dial("tcp", httpAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, "the hub's dashboard never listened on %s", httpAddr)

	shots := os.Getenv(hubScreenshotsEnv)
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", shots)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true), chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("no-proxy-server", true), chromedp.WindowSize(1280, 900),
	}
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	errs := &pageErrors{}
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithListener(errs.listen), chromedp.WithLogf(t.Logf))
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelTab(); cancelAlloc() })

	eval := func(t *testing.T, expr string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return v
	}
	count := func(t *testing.T, selector string) int {
		t.Helper()
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", selector)))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	check := func(t *testing.T, what, shot string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[int]("1")); err != nil { // the page's events have arrived
			t.Fatal(err)
		}
		for _, e := range errs.take() {
			t.Errorf("%s: %s", what, e)
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", shot, err)
		}
		if err := os.WriteFile(filepath.Join(shots, shot+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	open := func(t *testing.T, path, shot string) {
		t.Helper()
		errs.take()
		if err := chromedp.Do(ctx, chromedp.Navigate(base+path), chromedp.WaitReady("footer")); err != nil {
			t.Fatalf("open %s: %v", path, err)
		}
		check(t, path, shot)
	}
	// submitted waits for the page a form submission loads: the URL's path ends with want
	// and the document is complete (the page being left has a footer too).
	submitted := func(t *testing.T, want string) {
		t.Helper()
		testkit.Eventually(t, 30*time.Second, func() bool {
			p, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.readyState === "complete" ? location.pathname : ""`))
			return err == nil && strings.HasSuffix(p, want)
		}, "the form did not load %s", want)
		if err := chromedp.Do(ctx, chromedp.WaitReady("footer")); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("login", func(t *testing.T) {
		open(t, "", "login")
		if got := eval(t, "location.pathname"); got != "/login" {
			t.Fatalf("a stranger opening the dashboard is at %q, want /login", got)
		}
		if err := chromedp.Do(ctx, chromedp.SendKeys(`input[name="name"]`, "admin"),
			chromedp.SendKeys(`input[name="password"]`, e2eAdminPassword), chromedp.Click(`form button[type="submit"]`)); err != nil {
			t.Fatal(err)
		}
		submitted(t, "/")
		check(t, "after login", "overview")
		if got := eval(t, `document.querySelector("form.logout button").textContent`); got != "Log out admin" {
			t.Errorf("logged-in footer says %q, want Log out admin", got)
		}
	})

	t.Run("overview", func(t *testing.T) {
		open(t, "", "overview")
		if n := count(t, "svg.timeline g.mark"); n != devices {
			t.Errorf("timeline marks = %d, want one per seeded device (%d)", n, devices)
		}
		if n := count(t, "svg.rate"); n != 3 {
			t.Errorf("success-rate plots = %d, want 3", n)
		}
		// The plugs' six hours each, out of the fleet's day and week, from the presence
		// history the hub read.
		plugs := browserFamilies[1].n
		want := []string{
			fmt.Sprintf("valid certificate, 24 h: %.0f %% online, %d device(s)", 100*float64(plugs*6)/float64(devices*24), devices),
			fmt.Sprintf("valid certificate, 7 d: %.0f %% online, %d device(s)", 100*float64(plugs*6)/float64(devices*24*7), devices),
		}
		got := eval(t, `[...document.querySelectorAll("svg.bars rect.bar title")].map(e => e.textContent).join("\n")`)
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("the overview's bars do not say %q:\n%s", w, got)
			}
		}
	})

	t.Run("devices", func(t *testing.T) {
		open(t, "devices", "devices")
		if n := count(t, "table.devices tbody tr"); n != devices {
			t.Errorf("device list rows = %d, want %d", n, devices)
		}
		open(t, "devices?family=camera", "devices-camera")
		if n := count(t, "table.devices tbody tr"); n != browserFamilies[0].n {
			t.Errorf("device list filtered by family camera = %d rows, want %d", n, browserFamilies[0].n)
		}
		open(t, "devices/plug-3", "device")
		if count(t, `form[action$="/renew"] button`) != 1 {
			t.Error("plug-3's page offers no Renew now")
		}
	})

	t.Run("pages", func(t *testing.T) {
		for _, p := range []string{"campaigns", "policy", "audit", "home", "enroll"} {
			open(t, p, p)
		}
	})

	t.Run("logout", func(t *testing.T) {
		open(t, "", "before-logout")
		if err := chromedp.Do(ctx, chromedp.Click(`form.logout button`)); err != nil {
			t.Fatal(err)
		}
		submitted(t, "/login")
		open(t, "devices", "after-logout")
		if got := eval(t, "location.pathname"); got != "/login" {
			t.Errorf("after logging out the device list is at %q, want /login", got)
		}
	})
}
