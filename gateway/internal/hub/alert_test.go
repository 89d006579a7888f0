package hub

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/gateway/internal/metrics"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
	"github.com/hearth-pki/hearth/protocol"
)

// hookRequest is one request a test HTTP server received.
type hookRequest struct {
	path   string
	header http.Header
	body   []byte
}

func recordingServer(t *testing.T) (*httptest.Server, chan hookRequest) {
	got := make(chan hookRequest, 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- hookRequest{r.URL.Path, r.Header.Clone(), b}
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

// nextAlert returns the next webhook notification, after checking its HMAC signature as a
// receiver would.
func nextAlert(t *testing.T, got chan hookRequest, secret string) map[string]any {
	t.Helper()
	var r hookRequest
	select {
	case r = <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("no webhook notification within 30 s")
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(r.header.Get("X-Hearth-Timestamp") + "." + string(r.body)))
	if want := "sha256=" + hex.EncodeToString(m.Sum(nil)); r.header.Get("X-Hearth-Signature") != want {
		t.Fatalf("webhook signature %q, want %q", r.header.Get("X-Hearth-Signature"), want)
	}
	var n map[string]any
	if err := json.Unmarshal(r.body, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// enrollIn enrolls id with a token of family.
func enrollIn(t *testing.T, h *Hub, id, family string) tls.Certificate {
	t.Helper()
	tok, err := h.Admin().CreateToken(t.Context(), protocol.TokenRequest{ID: id, Family: family})
	if err != nil {
		t.Fatal(err)
	}
	c, err := client(t, h, id, tok.Token, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(0)
	key, csr := testkit.KeyAndCSR(t, id)
	pair, reply, err := csrRoundTrip(h, c, id, key, &protocol.CSR{V: 1, RequestID: "enroll-1", CSR: csr, Reason: protocol.ReasonEnroll, Time: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if err := tryCommit(t, h, id, pair, "enroll-1", reply.Serial); err != nil {
		t.Fatal(err)
	}
	return pair
}

// TestFamilyAlertAndMetrics runs a hub whose alerts go to a webhook and to a test
// Supervisor. Three devices of one family have their renewals refused: one family alert
// reaches both, not one per device; when they renew, the resolution follows. /metrics counts
// the refusals by cause, the commits, the issuances and a refused login.
func TestFamilyAlertAndMetrics(t *testing.T) {
	const secret = "a-webhook-secret-for-the-test"
	hook, hooks := recordingServer(t)
	sup, sups := recordingServer(t)
	cfg := hubkit.Config(t, "")
	cfg.Alerts = config.Alerts{Webhook: config.Webhook{URL: hook.URL + "/hearth", Secret: secret},
		HomeAssistant: config.AlertNotifyPersistent, FamilyDevices: 3, Repeated: 10}
	cfg.HA.SupervisorURL, cfg.HA.SupervisorToken = sup.URL, "supervisor-token"
	h := runHub(t, cfg, Options{Version: "test"})

	ids := []string{"plug-1", "plug-2", "plug-3"}
	pairs := map[string]tls.Certificate{}
	for _, id := range ids {
		pairs[id] = enrollIn(t, h, id, "plug")
	}
	for _, id := range ids {
		testkit.Eventually(t, 10*time.Second, func() bool { f, _, ok := h.metrics.Device(id); return ok && f == "plug" },
			"the fleet view has not judged %s", id)
	}

	// Injected failures: each device asks for a certificate naming another device.
	for _, id := range ids {
		c, err := client(t, h, id, "", new(pairs[id]))
		if err != nil {
			t.Fatal(err)
		}
		_, csr := testkit.KeyAndCSR(t, "someone-else")
		raw, err := tryRequest(c, h.topics.Device(id, protocol.KindCSR),
			&protocol.CSR{V: 1, RequestID: "bad-1", CSR: csr, Reason: protocol.ReasonWindow, Replaces: serialOf(t, pairs[id]), Time: time.Now()},
			h.topics.Device(id, protocol.KindCert))
		c.Disconnect(0)
		var reply protocol.Cert
		if err != nil || protocol.Decode(raw, &reply) != nil || reply.Error == nil || reply.Error.Code != protocol.CodeIdentityMismatch {
			t.Fatalf("injected failure of %s: %s, %v; want identity_mismatch", id, raw, err)
		}
	}
	n := nextAlert(t, hooks, secret)
	if n["state"] != "raised" || n["kind"] != "family_failures" || n["family"] != "plug" || n["cause"] != "bad_request" ||
		fmt.Sprint(n["devices"]) != "[plug-1 plug-2 plug-3]" {
		t.Errorf("webhook alert = %v, want the plug family raised, cause bad_request, its three devices", n)
	}
	s := <-sups
	if s.path != "/core/api/services/persistent_notification/create" || s.header.Get("Authorization") != "Bearer supervisor-token" ||
		!bytes.Contains(s.body, []byte(`"notification_id":"hearth_family_failures_plug"`)) {
		t.Errorf("Supervisor got %s %s", s.path, s.body)
	}

	for i, id := range ids {
		pair, serial, err := tryRenew(t, h, id, pairs[id], serialOf(t, pairs[id]), fmt.Sprintf("good-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if err := tryCommit(t, h, id, pair, fmt.Sprintf("good-%d", i), serial); err != nil {
			t.Fatal(err)
		}
	}
	n = nextAlert(t, hooks, secret)
	if n["state"] != "resolved" || n["id"] != "family_failures/plug" {
		t.Errorf("second webhook notification = %v, want the family's resolution", n)
	}
	if s := <-sups; s.path != "/core/api/services/persistent_notification/dismiss" {
		t.Errorf("Supervisor got %s %s, want the dismissal", s.path, s.body)
	}
	if len(hooks) != 0 || len(sups) != 0 {
		t.Errorf("one alert and one resolution expected; %d webhook and %d Supervisor requests more", len(hooks), len(sups))
	}

	if _, err := client(t, h, "plug-9", "hst_not-a-token", nil); err == nil {
		t.Fatal("a bogus token logged in")
	}
	srv := httptest.NewServer(h.metrics.Handler())
	defer srv.Close()
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{metrics.NameRenewals, map[string]string{"outcome": "refused", "cause": "bad_request"}, 3},
		{metrics.NameRenewals, map[string]string{"outcome": "committed", "cause": ""}, 3}, // enrollments are not renewals
		{metrics.NameIssuances, map[string]string{"reason": "enroll"}, 3},
		{metrics.NameIssuances, map[string]string{"reason": "window"}, 3},
		{metrics.NameRefusedLogins, map[string]string{"reason": "token"}, 1},
	} {
		if got := counter(fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %g, want %g", c.name, c.labels, got, c.want)
		}
	}
	if got := fams[metrics.NameRenewalDuration]; got == nil || histCount(got, "committed") != 3 {
		t.Errorf("%s{outcome=committed} count = %v, want 3", metrics.NameRenewalDuration, got)
	}
	if got := counter(fams, metrics.NameCertReady, map[string]string{"device": "plug-1", "family": "plug", "condition": "True"}); got != 1 {
		t.Errorf("plug-1 ready = %g, want 1", got)
	}
}

func serialOf(t *testing.T, pair tls.Certificate) string {
	c, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.Text(16)
}

func counter(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		if m.Counter != nil {
			return m.Counter.GetValue()
		}
		return m.Gauge.GetValue()
	}
	return -1
}

func histCount(f *dto.MetricFamily, outcome string) uint64 {
	for _, m := range f.Metric {
		for _, l := range m.Label {
			if l.GetName() == "outcome" && l.GetValue() == outcome {
				return m.Histogram.GetSampleCount()
			}
		}
	}
	return 0
}

// TestReminderAlertForAgentlessDevice: a device signed by hand (no agent) nearing its
// expiry gets a renewal_reminder alert on the webhook, once per threshold.
func TestReminderAlertForAgentlessDevice(t *testing.T) {
	const secret = "a-webhook-secret-for-the-test"
	hook, hooks := recordingServer(t)
	cfg := hubkit.Config(t, "")
	cfg.Alerts = config.Alerts{Webhook: config.Webhook{URL: hook.URL, Secret: secret}}
	clock := testkit.NewClock(time.Now().UTC())
	h := runHub(t, cfg, Options{Version: "test", Now: clock.Now})

	_, csr := testkit.KeyAndCSR(t, "printer")
	signed, err := h.Admin().Sign(t.Context(), protocol.SignRequest{ManualDevice: protocol.ManualDevice{ID: "printer"}, CSR: csr})
	if err != nil {
		t.Fatal(err)
	}
	clock.Set(signed.NotAfter.Add(-24*time.Hour + time.Hour)) // past the 1-day reminder threshold
	h.renewal.Kick()
	n := nextAlert(t, hooks, secret)
	if n["kind"] != "renewal_reminder" || n["device_id"] != "printer" || n["state"] != "raised" {
		t.Errorf("webhook alert = %v, want a renewal reminder for printer", n)
	}
}
