package web

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/monitor"
)

// Metric names, all gauges computed from the inventory at scrape time. Label cardinality is
// bounded by the device count (one expiry series per device) and by fixed lists otherwise.
const (
	MetricDevices         = "hearth_devices"                              // {state}
	MetricDevicesOnline   = "hearth_devices_online"                       //
	MetricCertExpiry      = "hearth_certificate_expiry_timestamp_seconds" // {device}: active certificate's not_after
	MetricCertsExpiring   = "hearth_certificates_expiring"                // devices with the expiring or expired problem
	MetricDeviceProblems  = "hearth_device_problems"                      // {problem}: devices with that problem
	MetricRenewalAttempts = "hearth_renewal_attempts_24h"                 // {outcome="success|failure"}
	MetricCAExpiry        = "hearth_ca_expiry_timestamp_seconds"          // {ca="root|intermediate"}
	MetricBuildInfo       = "hearth_build_info"                           // {version} 1

	metricsContentType = "text/plain; version=0.0.4; charset=utf-8"
)

// deviceStates and problems are always exported, 0 when no device is in them, so that
// dashboards and alerts see the series before the first device does.
var (
	deviceStates = []string{inventory.StateEnrolling, inventory.StateActive, inventory.StateOffline,
		inventory.StateQuarantined, inventory.StateRemoved}
	problems = monitor.Codes()
)

func (s *server) metrics(w http.ResponseWriter, r *http.Request) {
	snap, err := s.gather(r.Context())
	if err != nil {
		s.cfg.Logger.Error("metrics", "err", err)
		http.Error(w, "inventory unavailable: "+err.Error(), http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	writeMetrics(&buf, snap, s.cfg.CA, s.cfg.Version)
	w.Header().Set("Content-Type", metricsContentType)
	w.Write(buf.Bytes())
}

// writeMetrics writes the snapshot in the Prometheus text exposition format 0.0.4, families
// and series in a fixed order.
func writeMetrics(w io.Writer, snap snapshot, ca CAInfo, version string) {
	m := metricWriter{w: w}

	byState := map[string]int{}
	byProblem := map[string]int{}
	for _, d := range snap.Devices {
		byState[d.State]++
		for _, p := range d.Problems {
			byProblem[p]++
		}
	}
	m.family(MetricDevices, "Devices in the inventory, by state.")
	for _, st := range withExtra(deviceStates, byState) {
		m.sample(MetricDevices, int64(byState[st]), "state", st)
	}

	m.family(MetricDevicesOnline, "Devices with a live MQTT session.")
	m.sample(MetricDevicesOnline, int64(snap.Online))

	m.family(MetricCertExpiry, "Expiry (not_after) of each device's active certificate, as a Unix time.")
	for _, d := range snap.Devices {
		if !d.NotAfter.IsZero() {
			m.sample(MetricCertExpiry, d.NotAfter.Unix(), "device", d.ID)
		}
	}

	m.family(MetricCertsExpiring, "Devices whose certificate is past its renewal window's end, inside the emergency floor, or expired.")
	m.sample(MetricCertsExpiring, int64(snap.Expiring))

	m.family(MetricDeviceProblems, "Devices with each problem.")
	for _, p := range withExtra(problems, byProblem) {
		m.sample(MetricDeviceProblems, int64(byProblem[p]), "problem", p)
	}

	m.family(MetricRenewalAttempts, "Certificate requests started in the last 24 hours, by outcome.")
	m.sample(MetricRenewalAttempts, int64(snap.Successes), "outcome", "success")
	m.sample(MetricRenewalAttempts, int64(snap.Failures), "outcome", "failure")

	m.family(MetricCAExpiry, "Expiry (not_after) of the hub's CA certificates, as a Unix time.")
	for _, c := range []struct {
		name string
		t    time.Time
	}{{"root", ca.RootNotAfter}, {"intermediate", ca.IntermediateNotAfter}} {
		if !c.t.IsZero() {
			m.sample(MetricCAExpiry, c.t.Unix(), "ca", c.name)
		}
	}

	m.family(MetricBuildInfo, "Hub build information; the value is always 1.")
	m.sample(MetricBuildInfo, 1, "version", version)
}

// withExtra returns known followed by the keys of seen that known lacks, sorted.
func withExtra(known []string, seen map[string]int) []string {
	out := slices.Clone(known)
	for _, k := range slices.Sorted(maps.Keys(seen)) {
		if !slices.Contains(known, k) {
			out = append(out, k)
		}
	}
	return out
}

type metricWriter struct{ w io.Writer }

// family writes a family's HELP and TYPE lines; every family here is a gauge.
func (m metricWriter) family(name, help string) {
	fmt.Fprintf(m.w, "# HELP %s %s\n# TYPE %s gauge\n", name, escapeHelp(help), name)
}

// sample writes one series: name, label pairs (name, value, name, value…) and the value.
func (m metricWriter) sample(name string, v int64, labels ...string) {
	var b strings.Builder
	b.WriteString(name)
	if len(labels) > 0 {
		b.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(labels[i])
			b.WriteString(`="`)
			b.WriteString(escapeLabel(labels[i+1]))
			b.WriteByte('"')
		}
		b.WriteByte('}')
	}
	b.WriteByte(' ')
	b.WriteString(strconv.FormatInt(v, 10))
	b.WriteByte('\n')
	io.WriteString(m.w, b.String())
}

// escapeLabel escapes a label value as the text format requires: backslash, double quote and
// line feed become \\, \" and \n.
var escapeLabel = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace

// escapeHelp escapes HELP text: backslash and line feed.
var escapeHelp = strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace
