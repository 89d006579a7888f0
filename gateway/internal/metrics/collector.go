package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/monitor"
)

var (
	deviceLabels = []string{"device", "family", "class"}
	descExpiry   = prometheus.NewDesc(NameCertExpiration,
		"The not-after of the device's active certificate, as a Unix time (kept after a revocation).", deviceLabels, nil)
	descRenewal = prometheus.NewDesc(NameCertRenewal,
		"When the device's active certificate is planned to renew (its renewal window's start), as a Unix time.", deviceLabels, nil)
	descReady = prometheus.NewDesc(NameCertReady,
		"1 for the device certificate's ready condition (True, False, Unknown), 0 for the others.",
		append(deviceLabels[:3:3], "condition"), nil)
	descDevices  = prometheus.NewDesc(NameDevices, "Devices in the inventory, by state.", []string{"state"}, nil)
	descProblems = prometheus.NewDesc(NameDeviceProblems, "Devices with each problem (protocol/README.md, Problems).", []string{"problem"}, nil)
	descHubCert  = prometheus.NewDesc(NameHubCertExpiry,
		"The not-after of the hub's own certificates (root, intermediate, broker), as a Unix time.", []string{"certificate"}, nil)
)

// deviceStates are always exported, 0 when no device is in them, so that alerts see the
// series before the first device does.
var deviceStates = []string{inventory.StateEnrolling, inventory.StateActive, inventory.StateOffline,
	inventory.StateQuarantined, inventory.StateRemoved}

// fleetCollector reports the in-memory fleet state at each scrape.
type fleetCollector struct {
	m   *Metrics
	hub func() map[string]time.Time
}

func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descExpiry, descRenewal, descReady, descDevices, descProblems, descHubCert} {
		ch <- d
	}
}

func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	states := map[string]int{}
	problems := map[string]int{}
	for _, s := range deviceStates {
		states[s] = 0
	}
	for _, p := range monitor.Codes() {
		problems[p] = 0
	}
	c.m.mu.RLock()
	for id, d := range c.m.devices {
		states[d.state]++
		for _, p := range d.problems {
			problems[p]++
		}
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
	c.m.mu.RUnlock()
	for s, n := range states {
		ch <- prometheus.MustNewConstMetric(descDevices, prometheus.GaugeValue, float64(n), s)
	}
	for p, n := range problems {
		ch <- prometheus.MustNewConstMetric(descProblems, prometheus.GaugeValue, float64(n), p)
	}
	if c.hub != nil {
		for name, t := range c.hub() {
			if !t.IsZero() {
				ch <- prometheus.MustNewConstMetric(descHubCert, prometheus.GaugeValue, float64(t.Unix()), name)
			}
		}
	}
}
