package alert

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hearth-pki/hearth/gateway/internal/monitor"
	"github.com/hearth-pki/hearth/protocol"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// received is one request a test server got.
type received struct {
	path   string
	header http.Header
	body   []byte
}

// receiver is a real HTTP server on 127.0.0.1 that answers with the statuses queued (200
// once they run out) and hands every request to got.
type receiver struct {
	*httptest.Server
	got      chan received
	mu       sync.Mutex
	statuses []int
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	r := &receiver{got: make(chan received, 100), statuses: statuses}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.got <- received{path: req.URL.Path, header: req.Header.Clone(), body: body}
		r.mu.Lock()
		status := http.StatusOK
		if len(r.statuses) > 0 {
			status, r.statuses = r.statuses[0], r.statuses[1:]
		}
		r.mu.Unlock()
		w.WriteHeader(status)
		fmt.Fprint(w, http.StatusText(status))
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) next(t *testing.T) received {
	t.Helper()
	select {
	case g := <-r.got:
		return g
	case <-t.Context().Done():
		t.Fatal("no request")
	}
	return received{}
}

// checkHMAC recomputes the signature as a receiver would, without the package's helpers.
func checkHMAC(t *testing.T, secret []byte, g received) Notification {
	t.Helper()
	ts := g.header.Get("X-Hearth-Timestamp")
	if _, err := strconv.ParseInt(ts, 10, 64); err != nil {
		t.Fatalf("X-Hearth-Timestamp = %q, want Unix seconds", ts)
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts + "." + string(g.body)))
	want := "sha256=" + hex.EncodeToString(m.Sum(nil))
	if got := g.header.Get("X-Hearth-Signature"); !hmac.Equal([]byte(got), []byte(want)) {
		t.Fatalf("X-Hearth-Signature = %q, want %q", got, want)
	}
	if ct := g.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var n Notification
	if err := json.Unmarshal(g.body, &n); err != nil {
		t.Fatalf("webhook body %s: %v", g.body, err)
	}
	return n
}

// waits records the retry waits instead of sleeping.
type waits struct {
	mu sync.Mutex
	d  []time.Duration
}

func (w *waits) wait(_ context.Context, d time.Duration) error {
	w.mu.Lock()
	w.d = append(w.d, d)
	w.mu.Unlock()
	return nil
}

func TestWebhookSignsAndRetries(t *testing.T) {
	secret := []byte("s3cret")
	tests := []struct {
		name      string
		statuses  []int
		tries     int
		waits     []time.Duration
		rejected  bool
		wantError bool
	}{
		{"delivered at once", nil, 1, nil, false, false},
		{"retried after 503 and 429", []int{503, 429}, 3, []time.Duration{time.Second, 2 * time.Second}, false, false},
		{"gives up after the attempts", []int{500, 500, 500, 500}, 4, []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}, false, true},
		{"400 is not retried", []int{400}, 1, nil, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReceiver(t, tt.statuses...)
			var w waits
			hook := &Webhook{URL: r.URL + "/hook", Secret: secret, Retry: Retry{Attempts: 4, Backoff: time.Second, MaxBackoff: 3 * time.Second, Wait: w.wait},
				Now: func() time.Time { return t0 }}
			n := Notification{ID: "family_failures/plug", State: StateRaised, Kind: monitor.FindingFamilyFailures, Message: "3 plugs", Time: t0}
			err := hook.Send(t.Context(), n)
			if (err != nil) != tt.wantError || errors.Is(err, ErrRejected) != tt.rejected {
				t.Errorf("Send() = %v, want error %v (rejected %v)", err, tt.wantError, tt.rejected)
			}
			for i := range tt.tries {
				g := r.next(t)
				got := checkHMAC(t, secret, g)
				if got.ID != n.ID || got.State != n.State || g.header.Get("X-Hearth-Delivery") != "family_failures/plug/raised" || g.path != "/hook" {
					t.Errorf("try %d: %s %+v, delivery %q", i+1, g.path, got, g.header.Get("X-Hearth-Delivery"))
				}
				if g.header.Get("X-Hearth-Timestamp") != strconv.FormatInt(t0.Unix(), 10) {
					t.Errorf("timestamp %q", g.header.Get("X-Hearth-Timestamp"))
				}
			}
			if len(r.got) != 0 {
				t.Errorf("%d requests more than the %d expected", len(r.got), tt.tries)
			}
			if fmt.Sprint(w.d) != fmt.Sprint(tt.waits) {
				t.Errorf("waits = %v, want %v", w.d, tt.waits)
			}
		})
	}
}

// TestFamilyAlertOnEveryRoute injects failures into one device family: one family alert (not
// one per device) reaches the webhook, signed, and a test Supervisor as a Home Assistant
// notification request; when the devices renew, the resolution follows on both.
func TestFamilyAlertOnEveryRoute(t *testing.T) {
	secret := []byte("webhook-secret")
	hook := newReceiver(t)
	sup := newReceiver(t)
	var mu sync.Mutex
	var failed []string
	a := New(Config{
		Routes: []Route{
			&Webhook{URL: hook.URL, Secret: secret},
			&HomeAssistant{API: sup.URL + "/core/api", Token: "supervisor-token"},
		},
		Rules:  monitor.Rules{GroupDevices: 3, Window: time.Hour, Repeated: 100},
		Failed: func(route string, n Notification, err error) { mu.Lock(); failed = append(failed, route); mu.Unlock() },
		Now:    func() time.Time { return t0 },
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()

	for i := range 6 {
		a.Attempt(monitor.Attempt{DeviceID: fmt.Sprintf("plug-%d", i), Family: "plug", Cause: protocol.CauseChainVerification, At: t0})
	}
	n := checkHMAC(t, secret, hook.next(t))
	if n.State != StateRaised || n.Kind != monitor.FindingFamilyFailures || n.Family != "plug" || len(n.Devices) != 3 ||
		n.Cause != protocol.CauseChainVerification || n.CauseClass != protocol.Systemic {
		t.Errorf("webhook notification = %+v, want the plug family raised with 3 devices and a systemic cause", n)
	}
	g := sup.next(t)
	var create map[string]string
	json.Unmarshal(g.body, &create)
	if g.path != "/core/api/services/persistent_notification/create" || g.header.Get("Authorization") != "Bearer supervisor-token" ||
		create["notification_id"] != "hearth_family_failures_plug" || create["title"] == "" || create["message"] != n.Message {
		t.Errorf("Supervisor got %s %v %s, want a persistent notification with the Supervisor token", g.path, g.header.Get("Authorization"), g.body)
	}
	for i := range 6 {
		a.Attempt(monitor.Attempt{DeviceID: fmt.Sprintf("plug-%d", i), Family: "plug", OK: true, At: t0.Add(time.Minute)})
	}
	n = checkHMAC(t, secret, hook.next(t))
	if n.State != StateResolved || n.ID != "family_failures/plug" {
		t.Errorf("second webhook notification = %+v, want the resolution", n)
	}
	g = sup.next(t)
	if g.path != "/core/api/services/persistent_notification/dismiss" || string(g.body) != `{"notification_id":"hearth_family_failures_plug"}` {
		t.Errorf("Supervisor got %s %s, want the dismissal", g.path, g.body)
	}
	cancel()
	<-done
	if len(hook.got) != 0 || len(sup.got) != 0 {
		t.Errorf("more notifications than one alert and its resolution: webhook %d, Supervisor %d left", len(hook.got), len(sup.got))
	}
	if len(failed) != 0 {
		t.Errorf("failed deliveries: %v", failed)
	}
}

// recorder is a Route that keeps what it is sent.
type recorder struct{ got chan Notification }

func (r *recorder) Name() string { return "recorder" }
func (r *recorder) Send(_ context.Context, n Notification) error {
	r.got <- n
	return nil
}

func TestRateLimitAndDeduplication(t *testing.T) {
	rec := &recorder{got: make(chan Notification, 100)}
	limited := make(chan Notification, 100)
	a := New(Config{Routes: []Route{rec}, Rules: monitor.Rules{Repeated: 1, GroupDevices: 100}, PerHour: 1, Burst: 2,
		Failed: func(route string, n Notification, err error) {
			if route == "rate" && errors.Is(err, ErrRateLimited) {
				limited <- n
			}
		},
		Now: func() time.Time { return t0 }})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	for _, id := range []string{"a", "a", "a", "b", "c"} {
		a.Attempt(monitor.Attempt{DeviceID: id, Family: id, Cause: protocol.CauseTimeout, At: t0})
	}
	if n := <-rec.got; n.DeviceID != "a" {
		t.Errorf("first alert %+v, want device a", n)
	}
	if n := <-rec.got; n.DeviceID != "b" {
		t.Errorf("second alert %+v, want device b (a deduplicated)", n)
	}
	if n := <-limited; n.DeviceID != "c" {
		t.Errorf("limited alert %+v, want device c", n)
	}
	// c's raise was not sent, so its resolution is not either; a's is.
	a.Attempt(monitor.Attempt{DeviceID: "c", Family: "c", OK: true, At: t0})
	a.Attempt(monitor.Attempt{DeviceID: "a", Family: "a", OK: true, At: t0})
	if n := <-rec.got; n.DeviceID != "a" || n.State != StateResolved {
		t.Errorf("after recovery %+v, want a resolved", n)
	}
	cancel()
	<-done
	if len(rec.got) != 0 {
		t.Errorf("extra notifications: %d", len(rec.got))
	}
}

func TestHomeAssistantNotifyService(t *testing.T) {
	sup := newReceiver(t)
	h := &HomeAssistant{API: sup.URL + "/core/api/", Token: "tok", Service: "notify.mobile_app_phone"}
	n := Notification{ID: "repeated_cause/cam/timeout", State: StateRaised, Kind: monitor.FindingRepeatedCause, Title: "T", Message: "M", DeviceID: "cam"}
	if err := h.Send(t.Context(), n); err != nil {
		t.Fatal(err)
	}
	g := sup.next(t)
	var body struct {
		Title, Message string
		Data           struct {
			Tag    string
			Hearth Notification
		}
	}
	if err := json.Unmarshal(g.body, &body); err != nil {
		t.Fatal(err)
	}
	if g.path != "/core/api/services/notify/mobile_app_phone" || body.Title != "T" || body.Message != "M" ||
		body.Data.Tag != "hearth_repeated_cause_cam_timeout" || body.Data.Hearth.DeviceID != "cam" {
		t.Errorf("notify call %s %s", g.path, g.body)
	}
}

// TestHelpRequested: every help request is one notification, the same words twice too,
// and none is resolved or remembered for a resolution.
func TestHelpRequested(t *testing.T) {
	rec := &recorder{got: make(chan Notification, 100)}
	a := New(Config{Routes: []Route{rec}, Now: func() time.Time { return t0 }})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	a.HelpRequested("cam/1", "cam", "camera", "default", "ha:alice", "the app complains", []string{"expiring"}, t0)
	a.HelpRequested("cam/2", "cam", "camera", "default", "ha:alice", "the app complains", []string{"expiring"}, t0)
	a.HelpRequested("home/3", "", "", "", "", "nothing works", nil, t0)
	for _, want := range []Notification{
		{ID: "help_requested/cam/1", State: StateRaised, Kind: monitor.FindingHelpRequested, Title: "Hearth: a resident asks for help",
			Message: "ha:alice asks for help with device cam: the app complains (problems: expiring)", DeviceID: "cam", Family: "camera", Class: "default", Time: t0},
		{ID: "help_requested/cam/2", State: StateRaised, Kind: monitor.FindingHelpRequested, Title: "Hearth: a resident asks for help",
			Message: "ha:alice asks for help with device cam: the app complains (problems: expiring)", DeviceID: "cam", Family: "camera", Class: "default", Time: t0},
		{ID: "help_requested/home/3", State: StateRaised, Kind: monitor.FindingHelpRequested, Title: "Hearth: a resident asks for help",
			Message: "a resident asks for help with the home: nothing works", Time: t0},
	} {
		if diff := cmp.Diff(want, <-rec.got); diff != "" {
			t.Errorf("notification (-want +got):\n%s", diff)
		}
	}
	a.Renewed("cam", t0) // resolves a device's findings: a help request is not one
	cancel()
	<-done
	if len(rec.got) != 0 || len(a.sent) != 0 {
		t.Errorf("%d notifications more, %d remembered for a resolution; want none", len(rec.got), len(a.sent))
	}
}
