package hub

import (
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/metrics"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
	"github.com/hearth-pki/hearth/protocol"
)

// TestReportedFailures: failures only the agent saw reach the hub in its health reports
// (last_request_id, last_cause, last_error). Each distinct one is one failed attempt with
// the agent's cause and detail, however often a report repeats it; /metrics counts them by
// cause (outcome failed); and two in a row with one cause raise the repeated_cause alert on
// the webhook, as any other failure does.
func TestReportedFailures(t *testing.T) {
	const secret = "a-webhook-secret-for-the-test"
	hook, hooks := recordingServer(t)
	cfg := hubkit.Config(t, "")
	cfg.Alerts = config.Alerts{Webhook: config.Webhook{URL: hook.URL + "/hearth", Secret: secret}, FamilyDevices: 10, Repeated: 2}
	h := runHub(t, cfg, Options{Version: "test"})
	pair := enrollIn(t, h, "cam", "camera")
	c, err := client(t, h, "cam", "", &pair)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(0)
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	report := func(reqID, detail string) {
		t.Helper()
		b, err := protocol.Encode(&protocol.Health{V: 1, Serial: serialOf(t, pair), Issuer: leaf.Issuer.String(), ChainOK: true,
			DeviceTime: time.Now(), AgentVersion: "test", KeyAlgorithm: protocol.KeyP256, KeyStorage: "file",
			NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter,
			LastError: detail, LastCause: protocol.CauseNetwork, LastRequestID: reqID})
		if err != nil {
			t.Fatal(err)
		}
		if tok := c.Publish(h.topics.Device("cam", protocol.KindHealth), 1, false, b); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish health: %v", tok.Error())
		}
	}
	for range 3 {
		report("11111111111111111111111111111111", "hub: connect: connection refused")
	}
	report("22222222222222222222222222222222", "hub: connect: no route to host")
	report("22222222222222222222222222222222", "hub: connect: no route to host")

	n := nextAlert(t, hooks, secret)
	if n["state"] != "raised" || n["kind"] != "repeated_cause" || n["cause"] != "network" || n["cause_class"] != "transient" {
		t.Errorf("webhook alert = %v, want repeated_cause raised for network (transient)", n)
	}
	attempts, err := h.store.Attempts(t.Context(), "cam", 0)
	if err != nil {
		t.Fatal(err)
	}
	failed := map[string]inventory.Attempt{}
	for _, a := range attempts {
		if a.Outcome == inventory.OutcomeFailed {
			failed[a.RequestID] = a
		}
	}
	for id, detail := range map[string]string{"11111111111111111111111111111111": "connection refused", "22222222222222222222222222222222": "no route to host"} {
		if a, ok := failed[id]; !ok || a.Cause != protocol.CauseNetwork || a.Detail != "hub: connect: "+detail {
			t.Errorf("attempt %s = %+v (found %v), want failed with cause network, detail naming %q", id, a, ok, detail)
		}
	}
	if len(failed) != 2 {
		t.Errorf("failed attempts = %d, want 2 (one per distinct failure): %+v", len(failed), attempts)
	}

	srv := httptest.NewServer(h.metrics.Handler())
	defer srv.Close()
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	if got := counter(fams, metrics.NameRenewals, map[string]string{"outcome": metrics.OutcomeFailed, "cause": "network"}); got != 2 {
		t.Errorf("%s{outcome=failed,cause=network} = %g, want 2", metrics.NameRenewals, got)
	}
}
