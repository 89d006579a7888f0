// Package metrics is the hub's Prometheus face (issue 13): counters of what happened
// (renewals by outcome and cause, issuances, commands, refused logins), a histogram of
// renewal durations, cert-manager-like gauges per device certificate, the CA and broker
// certificates' expiry, and the Go and process collectors, all on one registry served by
// Handler.
//
// # Invariants
//
//   - A scrape reads memory only: the per-device gauges come from the state the fleet view
//     hands over as it judges each changed device (Judged, Removed), never from a query, and
//     the counts by state and problem are kept as devices change, so a scrape costs one pass
//     over an in-memory map, writing each device's lines (about 0.6 KB) and nothing else per
//     device.
//   - No precomputed time windows: rates over time are the scraper's job (rate(), increase()).
//   - Label values are bounded: outcomes and causes come from fixed lists (protocol.Causes;
//     a newer peer's cause is counted as it is), devices by the inventory.
//
// # Concurrency
//
// Every method is safe for concurrent use; none blocks on I/O. New starts nothing.
package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/monitor"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

// The metric names, documented in gateway/README.md ("Metrics").
const (
	NameRenewals        = "hearth_renewals_total"                               // {outcome, cause}
	NameIssuances       = "hearth_issuances_total"                              // {reason}
	NameCommands        = "hearth_commands_total"                               // {action}
	NameRefusedLogins   = "hearth_refused_logins_total"                         // {reason}
	NameRenewalDuration = "hearth_renewal_duration_seconds"                     // histogram {outcome}
	NameCertExpiration  = "hearth_certificate_expiration_timestamp_seconds"     // {device, family, class}
	NameCertRenewal     = "hearth_certificate_renewal_timestamp_seconds"        // {device, family, class}
	NameCertReady       = "hearth_certificate_ready_status"                     // {device, family, class, condition}
	NameDevices         = "hearth_devices"                                      // {state}
	NameDeviceProblems  = "hearth_device_problems"                              // {problem}
	NameHubCertExpiry   = "hearth_hub_certificate_expiration_timestamp_seconds" // {certificate}
	NameBuildInfo       = "hearth_build_info"                                   // {version}
	NameAlertFailures   = "hearth_alert_delivery_failures_total"                // {route}
	NameSchedulerLeader = "hearth_scheduler_leader"                             // replicas only
)

// Outcomes of a renewal, the outcome label of NameRenewals and NameRenewalDuration.
const (
	OutcomeCommitted  = "committed"   // the device installed and proved its new certificate
	OutcomeRefused    = "refused"     // the hub refused the request: nothing was issued
	OutcomeRolledBack = "rolled_back" // the agent gave the request up or went back
	OutcomeExpired    = "expired"     // no commit before the in-flight timeout
	OutcomeFailed     = "failed"      // the agent reported a failure the hub did not see (a health report); counted, not timed
)

// DurationBuckets are the renewal-duration histogram's upper bounds in seconds: a renewal
// through the hub takes tens of milliseconds on a LAN (README, Performance: p50 0.03–0.04 s,
// p99 0.16–0.56 s in a storm), seconds over a slow link or a busy hub, and up to the commit
// timeout (minutes) when it fails.
var DurationBuckets = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}

// Ready conditions of NameCertReady, as cert-manager's certmanager_certificate_ready_status.
const (
	ReadyTrue    = "True"    // a valid certificate, nothing wrong
	ReadyFalse   = "False"   // expired, revoked, no certificate
	ReadyUnknown = "Unknown" // a problem that does not stop the certificate working (expiring, renewal failing, clock skew)
)

var conditions = []string{ReadyTrue, ReadyFalse, ReadyUnknown}

// Config configures Metrics.
type Config struct {
	Version string
	// Hub lists the hub's own certificates by name ("root", "intermediate", "broker") and
	// returns their not-after; it is called at each scrape. Nil exports none.
	Hub func() map[string]time.Time
	// Replica, if set, labels every metric replica="<Replica>": hub replicas sharing one
	// PostgreSQL inventory each export their own (the fleet's gauges are then the same on
	// every replica: aggregate them with max). Empty for a single hub: no label.
	Replica string
	// Leader, if set, reports whether this replica runs the renewal scheduler
	// (NameSchedulerLeader). Nil exports none.
	Leader func() bool
}

// Metrics holds the hub's registry. Create it with New.
type Metrics struct {
	reg      *prometheus.Registry
	renewals *prometheus.CounterVec
	issued   *prometheus.CounterVec
	commands *prometheus.CounterVec
	logins   *prometheus.CounterVec
	duration *prometheus.HistogramVec
	alerts   *prometheus.CounterVec

	devReg *prometheus.Registry // the per-device gauges alone, for scrapes not in the text format

	mu       sync.RWMutex
	devices  map[string]deviceState
	states   map[string]int // devices in each state, kept as devices change
	problems map[string]int // devices with each problem code, kept as devices change
}

// deviceState is what a scrape reports of one device.
type deviceState struct {
	family, class, state string
	expires, renewal     time.Time // zero: none
	condition            string
	problems             []string
}

// New returns the hub's metrics with every collector registered. It starts nothing.
func New(cfg Config) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: NameRenewals,
			Help: "Renewal attempts that ended, by outcome and, when not committed, cause (protocol/README.md, Causes)."},
			[]string{"outcome", "cause"}),
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{Name: NameIssuances,
			Help: "Certificates issued, by the request's reason (enroll, window, command, rekey, recovery, import)."},
			[]string{"reason"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{Name: NameCommands,
			Help: "Commands sent to agents, by action (renew, rekey)."}, []string{"action"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{Name: NameRefusedLogins,
			Help: "Logins refused, by what was refused (certificate, token: at the broker; dashboard: a password login to the dashboard or API, throttled ones included)."},
			[]string{"reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: NameRenewalDuration,
			Help:    "Time from a certificate request to its end (the commit's acknowledgement, a refusal, a rollback).",
			Buckets: DurationBuckets}, []string{"outcome"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: NameAlertFailures,
			Help: "Alerts not delivered, by route (webhook, home_assistant, bridge; rate: over the rate limit)."}, []string{"route"}),
		devReg:   prometheus.NewRegistry(),
		devices:  map[string]deviceState{},
		states:   map[string]int{},
		problems: map[string]int{},
	}
	var reg prometheus.Registerer = m.reg
	if cfg.Replica != "" {
		reg = prometheus.WrapRegistererWith(prometheus.Labels{"replica": cfg.Replica}, m.reg)
	}
	if cfg.Leader != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: NameSchedulerLeader,
			Help: "1 while this hub replica holds the scheduler's lease (runs renewals and campaigns), else 0."},
			func() float64 {
				if cfg.Leader() {
					return 1
				}
				return 0
			}))
	}
	reg.MustRegister(m.renewals, m.issued, m.commands, m.logins, m.duration, m.alerts,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&fleetCollector{m: m, hub: cfg.Hub},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: NameBuildInfo, Help: "Hub build information; the value is always 1.",
			ConstLabels: prometheus.Labels{"version": cfg.Version}}, func() float64 { return 1 }))
	for _, o := range []string{OutcomeCommitted, OutcomeRefused, OutcomeRolledBack, OutcomeExpired} {
		m.duration.WithLabelValues(o) // present from the start, so rate() sees the first one
	}
	m.renewals.WithLabelValues(OutcomeCommitted, "")
	m.devReg.MustRegister(&deviceCollector{m: m})
	for _, k := range []string{LoginCertificate, LoginToken, LoginDashboard} {
		m.logins.WithLabelValues(k) // zero from the start, so increase() counts the first refusal
	}
	return m
}

// Handler serves the registry in the Prometheus exposition formats. A scrape in the text
// format (Prometheus's default, and curl's) writes the per-device gauges straight from the
// in-memory device states (writeDevices), uncompressed: at 10,000 devices, 50,000 series
// built as client_golang metrics, sorted and encoded cost 0.4–0.8 s of CPU per scrape
// (issue 11). Other formats (protobuf, when a scraper asks for it) go through client_golang
// whole.
func (m *Metrics) Handler() http.Handler {
	opts := promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}
	full := promhttp.HandlerFor(prometheus.Gatherers{m.reg, m.devReg}, opts)
	formats := expfmt.DefaultAcceptedFormats() // promhttp's, so that both choose alike
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := expfmt.NegotiateAccept(r.Header, formats...); f.FormatType() == expfmt.TypeTextPlain {
			m.serveText(w, f)
			return
		}
		full.ServeHTTP(w, r)
	})
}

// Renewal counts a renewal attempt that ended, with how long it took (zero: not observed).
// cause is "" for a committed one.
func (m *Metrics) Renewal(outcome string, cause protocol.Cause, took time.Duration) {
	m.renewals.WithLabelValues(outcome, string(cause)).Inc()
	if took > 0 {
		m.duration.WithLabelValues(outcome).Observe(took.Seconds())
	}
}

// Issued counts a certificate issued for reason.
func (m *Metrics) Issued(reason string) { m.issued.WithLabelValues(reason).Inc() }

// Command counts a command sent with action.
func (m *Metrics) Command(action string) { m.commands.WithLabelValues(action).Inc() }

// The reasons of hearth_refused_logins_total: what kind of login was refused.
const (
	LoginCertificate = "certificate" // a device certificate at the broker
	LoginToken       = "token"       // an enrollment token at the broker
	LoginDashboard   = "dashboard"   // a password login to the dashboard or its API (form or HTTP basic), or one throttled
)

// RefusedLogin counts a refused login of a kind (LoginCertificate, LoginToken,
// LoginDashboard).
func (m *Metrics) RefusedLogin(kind string) { m.logins.WithLabelValues(kind).Inc() }

// AlertFailed counts an alert not delivered on route.
func (m *Metrics) AlertFailed(route string) { m.alerts.WithLabelValues(route).Inc() }

// Device returns the family and class of a device as last judged, and whether it is known.
func (m *Metrics) Device(id string) (family, class string, ok bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	d, ok := m.devices[id]
	return d.family, d.class, ok
}

// Judged records the fleet view's verdict on a device that changed: the gauges of its next
// scrape. pol is the policy in force (nil: policy.Default), now the time of the verdict.
func (m *Metrics) Judged(r inventory.DeviceRecord, v monitor.Verdict, pol *policy.Policy, now time.Time) {
	d := r.Device
	st := deviceState{family: d.Family, class: d.Class, state: d.State, problems: v.Codes(), condition: condition(r.Active, v)}
	if r.Active != nil && r.Active.Status == inventory.StatusActive {
		if pol == nil {
			pol = policy.Default()
		}
		w := pol.Window(policy.Subject{DeviceID: d.ID, Family: d.Family, Tags: d.Tags},
			policy.CertInfo{Serial: r.Active.Serial, NotBefore: r.Active.NotBefore, NotAfter: r.Active.NotAfter}, now)
		st.expires, st.renewal = r.Active.NotAfter, w.Start
		if st.class == "" {
			st.class = w.Class
		}
	} else if r.Active != nil {
		st.expires = r.Active.NotAfter // a revoked certificate keeps its date
	}
	m.mu.Lock()
	if old, ok := m.devices[d.ID]; ok {
		m.count(old, -1)
	}
	m.devices[d.ID] = st
	m.count(st, 1)
	m.mu.Unlock()
}

// Removed forgets a device that left the inventory.
func (m *Metrics) Removed(id string) {
	m.mu.Lock()
	if old, ok := m.devices[id]; ok {
		m.count(old, -1)
		delete(m.devices, id)
	}
	m.mu.Unlock()
}

// count adds delta to the counts of d's state and problems. m.mu must be held.
func (m *Metrics) count(d deviceState, delta int) {
	m.states[d.state] += delta
	for _, p := range d.problems {
		m.problems[p] += delta
	}
}

// condition is the ready condition of a device's certificate.
func condition(active *inventory.Certificate, v monitor.Verdict) string {
	switch {
	case active == nil || v.Has(monitor.ProblemExpired) || v.Has(monitor.ProblemRevoked) || v.Has(monitor.ProblemNoCertificate):
		return ReadyFalse
	case len(v.Problems) > 0:
		return ReadyUnknown
	}
	return ReadyTrue
}
