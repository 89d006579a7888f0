package metrics

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/monitor"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// scrape fetches /metrics from a real HTTP server, checks it with the exposition format's
// parser and the linter promtool uses, and returns the families by name.
func scrape(t *testing.T, srv *httptest.Server) map[string]*dto.MetricFamily {
	t.Helper()
	res, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d, %v", res.StatusCode, err)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type = %q, want the text format 0.0.4", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse as the text exposition format: %v\n%s", err, body)
	}
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "hearth_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
	return fams
}

func serve(t *testing.T, m *Metrics) *httptest.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// sample returns the value of the family's series with the given labels, and whether it exists.
func sample(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (*dto.Metric, bool) {
	f := fams[name]
	if f == nil {
		return nil, false
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
		return m, true
	}
	return nil, false
}

func TestExpositionAndCounters(t *testing.T) {
	m := New(Config{Version: "1.2.3", Hub: func() map[string]time.Time {
		return map[string]time.Time{"root": t0.Add(10 * 365 * 24 * time.Hour), "broker": t0.Add(90 * 24 * time.Hour)}
	}})
	srv := serve(t, m)
	fams := scrape(t, srv)
	for name, typ := range map[string]dto.MetricType{
		NameRenewals: dto.MetricType_COUNTER, NameRenewalDuration: dto.MetricType_HISTOGRAM,
		NameDevices: dto.MetricType_GAUGE, NameDeviceProblems: dto.MetricType_GAUGE, NameHubCertExpiry: dto.MetricType_GAUGE,
		NameBuildInfo: dto.MetricType_GAUGE, "go_goroutines": dto.MetricType_GAUGE, "process_cpu_seconds_total": dto.MetricType_COUNTER,
	} {
		if f := fams[name]; f == nil || f.GetType() != typ {
			t.Errorf("family %s = %v, want type %s", name, f, typ)
		}
	}
	if _, ok := sample(fams, NameDevices, map[string]string{"state": inventory.StateActive}); !ok {
		t.Errorf("%s{state=active} missing before the first device", NameDevices)
	}
	if s, ok := sample(fams, NameHubCertExpiry, map[string]string{"certificate": "broker"}); !ok || s.GetGauge().GetValue() != float64(t0.Add(90*24*time.Hour).Unix()) {
		t.Errorf("broker certificate expiry = %v, want %d", s, t0.Add(90*24*time.Hour).Unix())
	}

	m.Renewal(OutcomeCommitted, "", 40*time.Millisecond)
	m.Renewal(OutcomeCommitted, "", 3*time.Second)
	m.Renewal(OutcomeRolledBack, protocol.CauseChainVerification, 200*time.Millisecond)
	m.Renewal(OutcomeRefused, protocol.CausePolicyRefused, 0)
	m.Issued(string(protocol.ReasonWindow))
	m.Command(string(protocol.ActionRenew))
	m.RefusedLogin("mqtt")
	fams = scrape(t, srv)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{NameRenewals, map[string]string{"outcome": OutcomeCommitted, "cause": ""}, 2},
		{NameRenewals, map[string]string{"outcome": OutcomeRolledBack, "cause": "chain_verification"}, 1},
		{NameRenewals, map[string]string{"outcome": OutcomeRefused, "cause": "policy_refused"}, 1},
		{NameIssuances, map[string]string{"reason": "window"}, 1},
		{NameCommands, map[string]string{"action": "renew"}, 1},
		{NameRefusedLogins, map[string]string{"reason": "mqtt"}, 1},
	} {
		s, ok := sample(fams, c.name, c.labels)
		if !ok || s.GetCounter().GetValue() != c.want {
			t.Errorf("%s%v = %v, want %g", c.name, c.labels, s, c.want)
		}
	}
	h, ok := sample(fams, NameRenewalDuration, map[string]string{"outcome": OutcomeCommitted})
	if !ok || h.GetHistogram().GetSampleCount() != 2 {
		t.Fatalf("%s{outcome=committed} = %v, want 2 samples", NameRenewalDuration, h)
	}
	var bounds []float64
	for _, b := range h.GetHistogram().GetBucket() {
		bounds = append(bounds, b.GetUpperBound())
		if b.GetUpperBound() == 0.05 && b.GetCumulativeCount() != 1 {
			t.Errorf("bucket le=0.05 holds %d renewals, want the 40 ms one", b.GetCumulativeCount())
		}
	}
	// Buckets around typical renewal times: tens of milliseconds to seconds.
	for _, want := range []float64{0.025, 0.05, 0.1, 0.25, 0.5, 1, 5} {
		found := false
		for _, b := range bounds {
			found = found || b == want
		}
		if !found {
			t.Errorf("histogram buckets %v lack %g s", bounds, want)
		}
	}
}

func TestDeviceGauges(t *testing.T) {
	m := New(Config{Version: "test"})
	srv := serve(t, m)
	pol := policy.Default()
	good := inventory.DeviceRecord{
		Device: inventory.Device{ID: "plug-1", Family: "plug", State: inventory.StateActive},
		Active: &inventory.Certificate{Serial: "0a", Status: inventory.StatusActive, NotBefore: t0, NotAfter: t0.Add(30 * 24 * time.Hour)},
	}
	revoked := inventory.DeviceRecord{
		Device: inventory.Device{ID: "cam-1", Family: "cam", Class: "camera", State: inventory.StateActive},
		Active: &inventory.Certificate{Serial: "0b", Status: inventory.StatusRevoked, NotBefore: t0, NotAfter: t0.Add(60 * 24 * time.Hour)},
	}
	for _, r := range []inventory.DeviceRecord{good, revoked} {
		m.Judged(r, monitor.Judge(r.Device, r.Active, pol, t0), pol, t0)
	}
	fams := scrape(t, srv)
	w := pol.Window(policy.Subject{DeviceID: "plug-1", Family: "plug"}, policy.CertInfo{Serial: "0a", NotBefore: t0, NotAfter: good.Active.NotAfter}, t0)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{NameCertExpiration, map[string]string{"device": "plug-1", "family": "plug", "class": w.Class}, float64(good.Active.NotAfter.Unix())},
		{NameCertRenewal, map[string]string{"device": "plug-1"}, float64(w.Start.Unix())},
		{NameCertReady, map[string]string{"device": "plug-1", "condition": ReadyTrue}, 1},
		{NameCertReady, map[string]string{"device": "plug-1", "condition": ReadyFalse}, 0},
		// A revoked certificate keeps its expiry date and is not ready.
		{NameCertExpiration, map[string]string{"device": "cam-1", "family": "cam", "class": "camera"}, float64(revoked.Active.NotAfter.Unix())},
		{NameCertReady, map[string]string{"device": "cam-1", "condition": ReadyFalse}, 1},
		{NameDevices, map[string]string{"state": inventory.StateActive}, 2},
		{NameDeviceProblems, map[string]string{"problem": monitor.ProblemRevoked}, 1},
	} {
		s, ok := sample(fams, c.name, c.labels)
		if !ok || s.GetGauge().GetValue() != c.want {
			t.Errorf("%s%v = %v, want %g", c.name, c.labels, s, c.want)
		}
	}
	if _, ok := sample(fams, NameCertRenewal, map[string]string{"device": "cam-1"}); ok {
		t.Errorf("a revoked certificate has a planned renewal")
	}
	m.Removed("plug-1")
	fams = scrape(t, srv)
	if _, ok := sample(fams, NameCertExpiration, map[string]string{"device": "plug-1"}); ok {
		t.Errorf("a removed device still has gauges")
	}
}

// TestReplicaLabels: a replica's metrics all carry its replica label, and the leader gauge
// follows the lease; a single hub's carry none.
func TestReplicaLabels(t *testing.T) {
	var leader atomic.Bool
	m := New(Config{Version: "1.2.3", Replica: "hub-2", Leader: leader.Load})
	m.Renewal(OutcomeCommitted, "", time.Second)
	srv := serve(t, m)
	fams := scrape(t, srv)
	for _, name := range []string{NameRenewals, NameBuildInfo, NameSchedulerLeader, "go_goroutines"} {
		if _, ok := sample(fams, name, map[string]string{"replica": "hub-2"}); !ok {
			t.Errorf("%s{replica=hub-2} missing", name)
		}
	}
	if s, _ := sample(fams, NameSchedulerLeader, map[string]string{"replica": "hub-2"}); s.GetGauge().GetValue() != 0 {
		t.Errorf("%s = %v while not leader, want 0", NameSchedulerLeader, s.GetGauge().GetValue())
	}
	leader.Store(true)
	if s, _ := sample(scrape(t, srv), NameSchedulerLeader, map[string]string{"replica": "hub-2"}); s.GetGauge().GetValue() != 1 {
		t.Errorf("%s = %v while leader, want 1", NameSchedulerLeader, s.GetGauge().GetValue())
	}
	single := scrape(t, serve(t, New(Config{Version: "1.2.3"})))
	if single[NameSchedulerLeader] != nil {
		t.Errorf("a single hub exports %s", NameSchedulerLeader)
	}
	for _, mf := range single[NameBuildInfo].GetMetric() {
		for _, l := range mf.GetLabel() {
			if l.GetName() == "replica" {
				t.Errorf("a single hub's %s has a replica label", NameBuildInfo)
			}
		}
	}
}
