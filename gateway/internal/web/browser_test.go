package web

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// ScreenshotsEnv names the directory the browser test writes its screenshots to; unset, a
// temporary directory (logged either way).
const ScreenshotsEnv = "HEARTH_SCREENSHOTS"

// console collects what the page reported as errors: console.error calls, uncaught
// exceptions and error entries of the browser log (a Content-Security-Policy violation, a
// failed load).
type console struct {
	mu   sync.Mutex
	errs []string
}

func (c *console) listen(ev any) {
	var msg string
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeWarning {
			var parts []string
			for _, a := range e.Args {
				parts = append(parts, strings.Trim(string(a.Value), `"`)+a.Description)
			}
			msg = "console." + string(e.Type) + ": " + strings.Join(parts, " ")
		}
	case *runtime.EventExceptionThrown:
		msg = "exception: " + e.ExceptionDetails.Text
		if e.ExceptionDetails.Exception != nil {
			msg += " " + e.ExceptionDetails.Exception.Description
		}
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

// take returns the errors collected since the last call.
func (c *console) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.errs
	c.errs = nil
	return out
}

// browserFixture is the seeded dashboard served on 127.0.0.1 and a headless Chromium tab.
type browserFixture struct {
	*fixture
	base    string // http://127.0.0.1:port/
	ctx     context.Context
	console *console
	shots   string
	help    chan protocol.Event
}

// newBrowser serves the seeded dashboard over TCP and starts Debian's Chromium headless with
// the flags a closed network needs (no first run, no background networking, no component
// updates, no sync, no QUIC) and a fresh profile.
func newBrowser(t *testing.T) *browserFixture {
	t.Helper()
	if testing.Short() {
		t.Skip("drives a real Chromium; skipped with -short")
	}
	chromium := testkit.RequirePeer(t, "chromium")
	help := make(chan protocol.Event, 4)
	f := newFixture(t, func(c *Config) {
		c.Notify = func(e protocol.Event) {
			if e.Type == protocol.EventHelpRequested {
				help <- e
			}
		}
	})
	seedShowcase(t, f.store)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serve(sctx, ln, f.h) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("serve() = %v", err)
		}
	})

	shots := os.Getenv(ScreenshotsEnv)
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
	con := &console{}
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithListener(con.listen), chromedp.WithLogf(t.Logf))
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelTab(); cancelAlloc() })
	base := "http://" + ln.Addr().String() + "/"
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	for _, p := range []string{"clipboard-read", "clipboard-write"} {
		if _, err := chromedp.CallBrowser(ctx, browser.SetPermission, browser.SetPermissionParams{
			Permission: &browser.PermissionDescriptor{Name: p}, Setting: browser.PermissionSettingGranted,
			Origin: strings.TrimSuffix(base, "/")}); err != nil {
			t.Fatalf("grant %s: %v", p, err)
		}
	}
	return &browserFixture{fixture: f, base: base, ctx: ctx, console: con, shots: shots, help: help}
}

// open loads path, waits for the page, fails on any console error, and writes a screenshot.
func (b *browserFixture) open(t *testing.T, path, shot string) {
	t.Helper()
	b.console.take()
	if err := chromedp.Do(b.ctx, chromedp.Navigate(b.base+path), chromedp.WaitReady("footer")); err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	b.checkConsole(t, path)
	b.checkAccessible(t, path)
	b.screenshot(t, shot)
}

// accessibilityProblems lists, in the page, form fields without a label, buttons and links
// without text, plots without a role and a description, images without alternative text,
// and a page without one h1 or without lang.
const accessibilityProblems = `(() => {
  const out = [];
  const name = e => (e.getAttribute("aria-label") || e.textContent || "").trim();
  for (const e of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
    if (!e.closest("label") && !e.getAttribute("aria-label") && !(e.id && document.querySelector("label[for='" + e.id + "']")))
      out.push("unlabelled " + e.tagName.toLowerCase() + " " + (e.name || ""));
  }
  for (const e of document.querySelectorAll("button, a")) if (!name(e)) out.push("empty " + e.tagName.toLowerCase());
  for (const e of document.querySelectorAll("svg")) {
    if (e.getAttribute("role") !== "img" || !e.getAttribute("aria-label")) out.push("svg without role=img and aria-label: " + e.getAttribute("class"));
  }
  for (const e of document.querySelectorAll("img")) if (!e.getAttribute("alt")) out.push("img without alt");
  if (document.querySelectorAll("h1").length !== 1) out.push(document.querySelectorAll("h1").length + " h1 elements");
  if (!document.documentElement.lang) out.push("no lang");
  return out;
})()`

// contrastProblems lists the page's text whose contrast with its background is below WCAG
// 2.x level AA (1.4.3): 4.5:1, 3:1 for large text (24 px, or 18.66 px bold). Each element
// with text of its own is measured: its computed color over its backgrounds, composited from
// the root down (rgb() and color(srgb …), the forms Chromium computes, color-mix included).
// Text inside SVG plots, where the marks carry the meaning and every plot has its
// description (accessibilityProblems), and decoration hidden from assistive technology (the
// logo: WCAG exempts logotypes) are left out.
const contrastProblems = `(() => {
  const parse = s => {
    let m = s.match(/^rgba?\(([^)]+)\)/);
    if (m) { const p = m[1].split(/[ ,\/]+/).filter(Boolean).map(Number); return [p[0] / 255, p[1] / 255, p[2] / 255, p.length > 3 ? p[3] : 1]; }
    m = s.match(/^color\(srgb ([^)]+)\)/);
    if (m) { const p = m[1].split(/[ \/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; }
    return null;
  };
  const over = (top, bottom) => [0, 1, 2].map(i => top[i] * top[3] + bottom[i] * (1 - top[3])).concat([1]);
  const background = e => {
    const chain = [];
    for (let n = e; n; n = n.parentElement) chain.unshift(n);
    let bg = [1, 1, 1, 1];
    for (const n of chain) { const c = parse(getComputedStyle(n).backgroundColor); if (c && c[3] > 0) bg = over(c, bg); }
    return bg;
  };
  const lum = c => { const f = v => v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const out = [], seen = new Set();
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let t = walk.nextNode(); t; t = walk.nextNode()) {
    const e = t.parentElement;
    if (!t.textContent.trim() || seen.has(e) || e.closest("svg, [aria-hidden=true]")) continue;
    seen.add(e);
    const st = getComputedStyle(e);
    if (st.visibility === "hidden" || !e.getClientRects().length) continue;
    const fg = parse(st.color);
    if (!fg) { out.push("unparsed color " + st.color); continue; }
    const bg = background(e), l1 = lum(over(fg, bg)), l2 = lum(bg);
    const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    const size = parseFloat(st.fontSize), large = size >= 24 || (parseInt(st.fontWeight) >= 700 && size >= 18.66);
    const need = large ? 3 : 4.5;
    if (ratio < need) out.push("contrast " + ratio.toFixed(2) + ":1, want " + need + ":1: <" + e.tagName.toLowerCase() + " class=" + JSON.stringify(e.className) + "> " + JSON.stringify(t.textContent.trim().slice(0, 40)));
  }
  return out;
})()`

// checkAccessible fails the test with the page's accessibility and contrast problems.
func (b *browserFixture) checkAccessible(t *testing.T, what string) {
	t.Helper()
	for _, p := range append(eval[[]string](t, b, accessibilityProblems), eval[[]string](t, b, contrastProblems)...) {
		t.Errorf("%s: %s", what, p)
	}
}

// checkConsole fails the test with the errors the page reported.
func (b *browserFixture) checkConsole(t *testing.T, what string) {
	t.Helper()
	// A round trip to the page, so that events sent before it have arrived.
	if _, err := chromedp.Run(b.ctx, chromedp.Evaluate[int]("1")); err != nil {
		t.Fatal(err)
	}
	for _, e := range b.console.take() {
		t.Errorf("%s: %s", what, e)
	}
}

// screenshot writes the whole page as name.png; a name starting with "phone-" gets the
// screen only, what a phone shows before scrolling.
func (b *browserFixture) screenshot(t *testing.T, name string) {
	t.Helper()
	shot := chromedp.FullScreenshot(100)
	if strings.HasPrefix(name, "phone-") {
		shot = chromedp.CaptureScreenshot()
	}
	png, err := chromedp.Run(b.ctx, shot)
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, b *browserFixture, expr string) T {
	t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func TestBrowser(t *testing.T) {
	b := newBrowser(t)
	total, err := b.store.CountDevices(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if total != len(seededOrder)+showcaseDevices {
		t.Fatalf("seeded %d devices, want %d", total, len(seededOrder)+showcaseDevices)
	}

	t.Run("overview", func(t *testing.T) {
		b.open(t, "", "overview")
		// The keyboard reaches the skip link first, and it leads to the content.
		if err := chromedp.Do(b.ctx, chromedp.KeyEvent("\t")); err != nil {
			t.Fatal(err)
		}
		if got := eval[string](t, b, `document.activeElement.getAttribute("href") + " " + document.activeElement.textContent`); got != "#main Skip to the content" {
			t.Errorf("first Tab focuses %q, want the skip link", got)
		}
		if n := eval[int](t, b, `document.querySelectorAll("svg.timeline g.mark").length`); n != total {
			t.Errorf("timeline marks = %d, want one per device (%d)", n, total)
		}
		// Every mark names its device, and the device ids are those of the inventory.
		ids := eval[[]string](t, b, `[...document.querySelectorAll("svg.timeline g.mark title")].map(e => e.textContent.split(/[ :]/)[0])`)
		devs, err := b.store.Devices(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, d := range devs {
			want = append(want, d.ID)
		}
		slices.Sort(ids)
		slices.Sort(want)
		if !slices.Equal(ids, want) {
			t.Errorf("timeline marks name %q, want %q", ids, want)
		}
		if n := eval[int](t, b, `document.querySelectorAll("svg.rate").length`); n != 3 {
			t.Errorf("success-rate plots = %d, want 3 (24 h, 7 d, 30 d)", n)
		}
	})

	t.Run("devices filter", func(t *testing.T) {
		b.open(t, "devices", "devices")
		rows := func() int { return eval[int](t, b, `document.querySelectorAll("table.devices tbody tr").length`) }
		if n := rows(); n != total {
			t.Fatalf("device list rows = %d, want %d", n, total)
		}
		// Choose a family and apply, as a person does.
		if err := chromedp.Do(b.ctx, chromedp.SetValue(`select[name="family"]`, "camera"),
			chromedp.Click(`form.filters button[type="submit"]`)); err != nil {
			t.Fatal(err)
		}
		// Wait for the filtered page itself (the page being left has a footer too); while the
		// tab navigates, an evaluation may fail.
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			search, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.readyState === "complete" ? location.search : ""`))
			if err == nil && strings.Contains(search, "family=camera") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the filter form did not load the filtered page: %q, %v", search, err)
			}
		}
		if err := chromedp.Do(b.ctx, chromedp.WaitReady(`footer`)); err != nil {
			t.Fatal(err)
		}
		if err := chromedp.Do(b.ctx, chromedp.WaitVisible(`#count`)); err != nil {
			t.Fatal(err)
		}
		if got := eval[string](t, b, `location.search`); got != "?q=&family=camera&class=&state=&problem=&online=&sort=attention" {
			t.Errorf("filter form went to %q", got)
		}
		if n := rows(); n != 6 {
			t.Errorf("device list filtered by family camera = %d rows, want 6", n)
		}
		b.checkConsole(t, "devices?family=camera")
		b.screenshot(t, "devices-filtered")
		// The search narrows too.
		b.open(t, "devices?q=garden", "devices-search")
		if got := eval[[]string](t, b, `[...document.querySelectorAll("table.devices tbody tr")].map(r => r.dataset.device)`); !slices.Equal(got, []string{"garden-gate"}) {
			t.Errorf("search garden lists %q, want [garden-gate]", got)
		}
		// The no-problem and class filters narrow it to what judging the whole fleet gives
		// (lock-1 tagged high-risk for the while: the only device of that class).
		tag := func(tags []string) {
			t.Helper()
			if err := b.store.UpsertDevice(t.Context(), inventory.Device{ID: "lock-1", Tags: tags}); err != nil {
				t.Fatal(err)
			}
		}
		tag([]string{policy.HighRiskClass})
		defer tag([]string{})
		recs, err := b.store.Fleet(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		fleet := judgeFleet(recs, policy.Default(), t0)
		for _, q := range []string{"problem=none", "class=default&problem=none&sort=name", "class=high-risk"} {
			b.open(t, "devices?"+q, "devices-"+strings.NewReplacer("=", "-", "&", "_").Replace(q))
			vals, _ := url.ParseQuery(q)
			var want []string
			for _, d := range listDevices(fleet, parseDeviceQuery(vals.Get)).Devices {
				want = append(want, d.ID)
			}
			got := eval[[]string](t, b, `[...document.querySelectorAll("table.devices tbody tr")].map(r => r.dataset.device)`)
			if !slices.Equal(got, want) || len(got) == 0 || len(got) == total {
				t.Errorf("devices?%s lists %q, want %q (some, not all)", q, got, want)
			}
		}
	})

	t.Run("keyboard", func(t *testing.T) {
		// Tab reaches the device list's search field, every stop on the way shows its focus,
		// and typing then Enter submits the filters.
		b.open(t, "devices", "devices-keyboard")
		var stops []string
		for range 40 {
			if err := chromedp.Do(b.ctx, chromedp.KeyEvent("\t")); err != nil {
				t.Fatal(err)
			}
			stop := eval[string](t, b, `(e => e.name || e.getAttribute("href") || e.tagName.toLowerCase())(document.activeElement)`)
			stops = append(stops, stop)
			if outline := eval[string](t, b, `getComputedStyle(document.activeElement).outlineStyle`); outline == "none" {
				t.Errorf("Tab stop %q shows no focus outline", stop)
			}
			if stop == "q" {
				break
			}
		}
		if len(stops) == 0 || stops[len(stops)-1] != "q" {
			t.Fatalf("Tab never reaches the search field; stops: %q", stops)
		}
		if err := chromedp.Do(b.ctx, chromedp.KeyEvent("garden"), chromedp.KeyEvent("\r")); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 15*time.Second, func() bool {
			search, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.readyState === "complete" ? location.search : ""`))
			return err == nil && strings.Contains(search, "q=garden")
		}, "Enter in the search field did not load the filtered page")
		if err := chromedp.Do(b.ctx, chromedp.WaitReady(`footer`)); err != nil {
			t.Fatal(err)
		}
		if got := eval[[]string](t, b, `[...document.querySelectorAll("table.devices tbody tr")].map(r => r.dataset.device)`); !slices.Equal(got, []string{"garden-gate"}) {
			t.Errorf("search typed with the keyboard lists %q, want [garden-gate]", got)
		}
		b.checkConsole(t, "devices?q=garden")
	})

	t.Run("device pages", func(t *testing.T) {
		b.open(t, "devices/kitchen-plug", "device")
		if n := eval[int](t, b, `document.querySelectorAll("svg.history rect.cert").length`); n != 2 {
			t.Errorf("kitchen-plug history bars = %d, want 2 certificates", n)
		}
		if !eval[bool](t, b, `!!document.querySelector('form[action$="/renew"] button')`) {
			t.Error("kitchen-plug has no Renew now button")
		}
		b.open(t, "devices/old-bulb", "device-revoked")
		if eval[bool](t, b, `!!document.querySelector('form[action$="/renew"]')`) {
			t.Error("revoked old-bulb offers Renew now")
		}
		b.open(t, "devices/garden-gate", "device-manual")
		if eval[bool](t, b, `!!document.querySelector('form[action$="/renew"]')`) {
			t.Error("manual garden-gate offers Renew now")
		}
		if text := eval[string](t, b, `document.querySelector("main").innerText`); !strings.Contains(text, "renew by hand: 12 d 0 h left") ||
			strings.Contains(text, "nothing to do") {
			t.Errorf("garden-gate page does not say it needs renewing by hand:\n%s", text)
		}
	})

	t.Run("views", func(t *testing.T) {
		b.open(t, "campaigns", "campaigns")
		if n := eval[int](t, b, `document.querySelectorAll("svg.progress").length`); n != 3 {
			t.Errorf("campaign progress bars = %d, want 3", n)
		}
		b.open(t, "policy", "policy")
		b.open(t, "audit", "audit")
		if err := chromedp.Do(b.ctx, chromedp.Click(`button[name="verify"]`), chromedp.WaitVisible(`p.notice`)); err != nil {
			t.Fatal(err)
		}
		if text := eval[string](t, b, `document.querySelector("p.notice").innerText`); !strings.HasPrefix(text, "Chain verified") {
			t.Errorf("audit verification says %q", text)
		}
		b.checkConsole(t, "audit?verify=1")
	})

	t.Run("resident", func(t *testing.T) {
		b.open(t, "home", "home")
		text := eval[string](t, b, `document.querySelector("main").innerText`)
		for _, want := range []string{"need help", "Garage door", "Garden gate", "What to do:", "When each device renews", "Renews itself in"} {
			if !strings.Contains(text, want) {
				t.Errorf("resident view does not say %q:\n%s", want, text)
			}
		}
		if err := chromedp.Do(b.ctx, chromedp.SetValue(`select[name="device"]`, "garden-gate"),
			chromedp.SendKeys(`textarea[name="message"]`, "the gate app says certificate"),
			chromedp.Click(`form[action$="home/help"] button`), chromedp.WaitVisible(`p.notice`)); err != nil {
			t.Fatal(err)
		}
		b.checkConsole(t, "home/help")
		b.screenshot(t, "home-help-sent")
		select {
		case e := <-b.help:
			if e.DeviceID != "garden-gate" || e.Message != "the gate app says certificate" || e.Data["actor"] != ActorLocal {
				t.Errorf("help.requested event = %+v", e)
			}
		default:
			t.Error("Request help raised no help.requested event")
		}
		evs, err := b.store.Events(t.Context(), inventory.EventFilter{Kind: protocol.EventHelpRequested})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 1 || evs[0].DeviceID != "garden-gate" {
			t.Errorf("recorded help requests = %+v, want one about garden-gate", evs)
		}
	})

	t.Run("enroll and copy", func(t *testing.T) {
		b.open(t, "enroll", "enroll")
		if err := chromedp.Do(b.ctx, chromedp.SendKeys(`input[name="id"]`, "porch-light"),
			chromedp.SendKeys(`input[name="name"]`, "Porch light"),
			chromedp.Click(`form.enroll button`), chromedp.WaitVisible(`#command`)); err != nil {
			t.Fatal(err)
		}
		b.checkConsole(t, "token page")
		command := eval[string](t, b, `document.getElementById("command").textContent`)
		if !strings.HasPrefix(command, "hearth-agent enroll --hub mqtts://hub.test:8883 --id porch-light --token hst_") {
			t.Fatalf("token page command = %q", command)
		}
		if n := eval[int](t, b, `document.querySelectorAll("svg.qr path").length`); n != 1 {
			t.Errorf("token page QR code paths = %d, want 1", n)
		}
		if err := chromedp.Do(b.ctx, chromedp.Click(`button[data-copy="command"]`)); err != nil {
			t.Fatal(err)
		}
		if label := eval[string](t, b, `new Promise(r => setTimeout(() => r(document.querySelector("button[data-copy] .label").textContent), 0))`); label != "Copied" {
			t.Errorf("copy button says %q after the click, want Copied", label)
		}
		if got := eval[string](t, b, `navigator.clipboard.readText()`); got != command {
			t.Errorf("clipboard = %q, want the command %q", got, command)
		}
		b.checkConsole(t, "copy")
		b.screenshot(t, "token")
	})

	t.Run("phone and dark", func(t *testing.T) {
		if err := chromedp.Do(b.ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile)); err != nil {
			t.Fatal(err)
		}
		// Nothing may be wider than the phone's screen but the tables and plots, which scroll
		// inside their own boxes: on every page.
		for _, p := range []string{"home", "devices", "devices/porch-camera", "", "campaigns", "policy", "audit", "enroll"} {
			b.open(t, p, "phone-"+cmp.Or(strings.ReplaceAll(p, "/", "-"), "overview"))
			if w := eval[int](t, b, `document.documentElement.scrollWidth`); w > 390 {
				wide := eval[[]string](t, b, `[...document.querySelectorAll("body *")].filter(e => e.getBoundingClientRect().right > 391 && !e.closest(".scroll, svg *")).map(e => "<" + e.tagName.toLowerCase() + " class=" + JSON.stringify(e.className.baseVal ?? e.className) + ">").slice(0, 5)`)
				t.Errorf("page %q is %d px wide on a 390 px phone: %s", p, w, strings.Join(wide, " "))
			}
		}
		if err := chromedp.Do(b.ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
			t.Fatal(err)
		}
		if _, err := chromedp.Call(b.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}}); err != nil {
			t.Fatal(err)
		}
		b.open(t, "", "dark-overview")
		if bg := eval[string](t, b, `getComputedStyle(document.body).backgroundColor`); bg != "rgb(17, 19, 21)" {
			t.Errorf("dark mode body background = %s, want rgb(17, 19, 21)", bg)
		}
		// Every page in dark mode, each checked for contrast by open.
		for _, p := range []string{"devices", "devices/porch-camera", "campaigns", "policy", "audit", "home", "enroll"} {
			b.open(t, p, "dark-"+strings.ReplaceAll(p, "/", "-"))
		}
	})
}
