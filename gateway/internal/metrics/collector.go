package metrics

import (
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/monitor"
)

// The help of the per-device families, which writeDevices writes too (no escaping needed).
const (
	helpExpiry  = "The not-after of the device's active certificate, as a Unix time (kept after a revocation)."
	helpRenewal = "When the device's active certificate is planned to renew (its renewal window's start), as a Unix time."
	helpReady   = "1 for the device certificate's ready condition (True, False, Unknown), 0 for the others."
)

var (
	deviceLabels = []string{"device", "family", "class"}
	descExpiry   = prometheus.NewDesc(NameCertExpiration, helpExpiry, deviceLabels, nil)
	descRenewal  = prometheus.NewDesc(NameCertRenewal, helpRenewal, deviceLabels, nil)
	descReady    = prometheus.NewDesc(NameCertReady, helpReady, append(deviceLabels[:3:3], "condition"), nil)
	descDevices  = prometheus.NewDesc(NameDevices, "Devices in the inventory, by state.", []string{"state"}, nil)
	descProblems = prometheus.NewDesc(NameDeviceProblems, "Devices with each problem (protocol/README.md, Problems).", []string{"problem"}, nil)
	descHubCert  = prometheus.NewDesc(NameHubCertExpiry,
		"The not-after of the hub's own certificates (root, intermediate, broker), as a Unix time.", []string{"certificate"}, nil)
)

// deviceStates are always exported, 0 when no device is in them, so that alerts see the
// series before the first device does.
var deviceStates = []string{inventory.StateEnrolling, inventory.StateActive, inventory.StateOffline,
	inventory.StateQuarantined, inventory.StateRemoved}

// fleetCollector reports the counts of devices by state and problem, and the hub's own
// certificates, at each scrape.
type fleetCollector struct {
	m   *Metrics
	hub func() map[string]time.Time
}

func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDevices, descProblems, descHubCert} {
		ch <- d
	}
}

func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.RLock()
	for _, s := range deviceStates {
		ch <- prometheus.MustNewConstMetric(descDevices, prometheus.GaugeValue, float64(c.m.states[s]), s)
	}
	for s, n := range c.m.states {
		if !slices.Contains(deviceStates, s) && n > 0 {
			ch <- prometheus.MustNewConstMetric(descDevices, prometheus.GaugeValue, float64(n), s)
		}
	}
	codes := monitor.Codes()
	for _, p := range codes {
		ch <- prometheus.MustNewConstMetric(descProblems, prometheus.GaugeValue, float64(c.m.problems[p]), p)
	}
	for p, n := range c.m.problems {
		if !slices.Contains(codes, p) && n > 0 {
			ch <- prometheus.MustNewConstMetric(descProblems, prometheus.GaugeValue, float64(n), p)
		}
	}
	c.m.mu.RUnlock()
	if c.hub != nil {
		for name, t := range c.hub() {
			if !t.IsZero() {
				ch <- prometheus.MustNewConstMetric(descHubCert, prometheus.GaugeValue, float64(t.Unix()), name)
			}
		}
	}
}

// deviceCollector reports the per-device gauges as client_golang metrics: the scrapes not
// in the text format (Handler).
type deviceCollector struct{ m *Metrics }

func (c *deviceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descExpiry, descRenewal, descReady} {
		ch <- d
	}
}

func (c *deviceCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.RLock()
	defer c.m.mu.RUnlock()
	for id, d := range c.m.devices {
		if !d.expires.IsZero() {
			ch <- prometheus.MustNewConstMetric(descExpiry, prometheus.GaugeValue, float64(d.expires.Unix()), id, d.family, d.class)
		}
		if !d.renewal.IsZero() {
			ch <- prometheus.MustNewConstMetric(descRenewal, prometheus.GaugeValue, float64(d.renewal.Unix()), id, d.family, d.class)
		}
		for _, cond := range conditions {
			v := 0.0
			if cond == d.condition {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, v, id, d.family, d.class, cond)
		}
	}
}
