package metrics

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/monitor"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
)

// scrapeAs fetches /metrics asking for the format accept and returns its series of the
// hearth_ families, one line each ("name{label=value,…} value", labels sorted), sorted.
func scrapeAs(t *testing.T, url, accept string) []string {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", url+"/metrics", nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	dec := expfmt.NewDecoder(res.Body, expfmt.ResponseFormat(res.Header))
	var out []string
	for {
		var f dto.MetricFamily
		if err := dec.Decode(&f); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("decode /metrics (%s): %v", res.Header.Get("Content-Type"), err)
			}
			break
		}
		if !strings.HasPrefix(f.GetName(), "hearth_") {
			continue
		}
		for _, m := range f.Metric {
			var ls []string
			for _, l := range m.Label {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			slices.Sort(ls)
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
			out = append(out, fmt.Sprintf("%s %s{%s} %g", f.GetType(), f.GetName(), strings.Join(ls, ","), v))
		}
	}
	slices.Sort(out)
	return out
}

// TestTextScrapeMatchesClientGolang checks that the text format's hand-written per-device
// families (writeDevices) carry exactly the series client_golang writes in the protobuf
// format, label values that need escaping included, and that the counts by state and
// problem follow devices that change and leave.
func TestTextScrapeMatchesClientGolang(t *testing.T) {
	m := New(Config{Version: "test", Hub: func() map[string]time.Time { return map[string]time.Time{"root": t0.Add(time.Hour)} }})
	srv := serve(t, m)
	pol := policy.Default()
	judge := func(id, family, state string, active *inventory.Certificate) {
		r := inventory.DeviceRecord{Device: inventory.Device{ID: id, Family: family, State: state}, Active: active}
		m.Judged(r, monitor.Judge(r.Device, r.Active, pol, t0), pol, t0)
	}
	cert := func(serial string, status inventory.Status, days int) *inventory.Certificate {
		return &inventory.Certificate{Serial: serial, Status: status, NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(time.Duration(days) * 24 * time.Hour)}
	}
	judge("plug-1", "plug", inventory.StateActive, cert("01", inventory.StatusActive, 30))
	judge(`odd "quoted" \ back`, "fam\nwith newline", inventory.StateActive, cert("02", inventory.StatusActive, 1))
	judge("cam-1", "cam", inventory.StateOffline, cert("03", inventory.StatusRevoked, 60))
	judge("new-1", "", inventory.StateEnrolling, nil)
	judge("gone-1", "plug", inventory.StateQuarantined, cert("04", inventory.StatusActive, -1))
	// plug-1 changes state and gone-1 leaves: the counts follow.
	judge("plug-1", "plug", inventory.StateOffline, cert("05", inventory.StatusActive, 30))
	m.Removed("gone-1")
	m.Removed("never-judged")

	const protobuf = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
	text, full := scrapeAs(t, srv.URL, ""), scrapeAs(t, srv.URL, protobuf)
	if !slices.Equal(text, full) {
		t.Errorf("text scrape:\n%s\nprotobuf scrape (client_golang):\n%s", strings.Join(text, "\n"), strings.Join(full, "\n"))
	}
	for _, want := range []string{
		"GAUGE hearth_devices{state=offline} 2",
		"GAUGE hearth_devices{state=active} 1",
		"GAUGE hearth_devices{state=enrolling} 1",
		"GAUGE hearth_devices{state=quarantined} 0",
		"GAUGE hearth_device_problems{problem=revoked} 1",
		"GAUGE hearth_device_problems{problem=expired} 0",
		`GAUGE hearth_certificate_ready_status{class=default,condition=True,device=odd "quoted" \ back,family=fam` + "\n" + `with newline} 1`,
	} {
		if !slices.Contains(text, want) {
			t.Errorf("text scrape lacks %q", want)
		}
	}
	for _, l := range text {
		if strings.Contains(l, "gone-1") {
			t.Errorf("a removed device still has a series: %s", l)
		}
	}

	// The text body parses as the exposition format and lints clean (scrape does both).
	scrape(t, srv)
}

// TestScrapeWithoutDevices checks the text scrape of a hub with no device yet.
func TestScrapeWithoutDevices(t *testing.T) {
	srv := serve(t, New(Config{Version: "test"}))
	fams := scrape(t, srv)
	for _, name := range []string{NameCertExpiration, NameCertRenewal, NameCertReady} {
		if f := fams[name]; f != nil && len(f.Metric) > 0 {
			t.Errorf("family %s = %v, want no series", name, f)
		}
	}
	if _, ok := sample(fams, NameDevices, map[string]string{"state": inventory.StateActive}); !ok {
		t.Errorf("%s{state=active} missing", NameDevices)
	}
}
