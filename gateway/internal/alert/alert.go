// Package alert tells people about what the monitor finds (issue 13): each finding raised by
// monitor.Detector becomes one Notification, delivered to every configured route — a
// webhook, Home Assistant notifications through the Supervisor, the hub's bridge events and
// Home Assistant's event entity — and its resolution a second one.
//
// # Invariants
//
//   - Deduplicated: a finding's key (a device and a cause, a family, a hub certificate) is
//     notified once while it stays open, however many times it is observed; a family failing
//     gives one alert, not one per device (monitor.FindingFamilyFailures).
//   - Rate-limited: at most Config.Burst raised alerts at once and Config.PerHour an hour;
//     one over the limit is not sent and is reported as a delivery failure of route "rate".
//     Resolutions are never limited, but only an alert that was sent gets one.
//   - A route's failure is recorded (Config.Failed) after its own retries, and never holds
//     up the other routes or the detector: each route delivers from its own queue, in order.
//   - Incremental: each observation costs time independent of the fleet (monitor.Detector).
//
// # Concurrency
//
// New starts nothing. The observation methods (Attempt, IssuerChanged, Skipped, Renewed,
// Reminder, HelpRequested) may be called from any goroutine, before or during Run, and never block: they
// queue the observation and wake Run, which owns the detector and runs one goroutine per
// route.
package alert

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/monitor"
	"github.com/hearth-pki/hearth/gateway/internal/rate"
	"github.com/hearth-pki/hearth/protocol"
)

// States of a Notification.
const (
	StateRaised   = "raised"
	StateResolved = "resolved"
)

// Notification is one message to people: an alert raised or resolved. Its JSON form is the
// webhook's body (addon/DOCS.md, "Alerts").
type Notification struct {
	ID       string              `json:"id"`    // the finding's key: the same problem, the same id
	State    string              `json:"state"` // raised or resolved
	Kind     monitor.FindingKind `json:"kind"`
	Title    string              `json:"title"`
	Message  string              `json:"message"`
	DeviceID string              `json:"device_id,omitempty"`
	Family   string              `json:"family,omitempty"`
	Class    string              `json:"class,omitempty"`
	Devices  []string            `json:"devices,omitempty"`
	Cause    protocol.Cause      `json:"cause,omitempty"`
	// CauseClass is transient or systemic (protocol/README.md, "Causes").
	CauseClass protocol.Class `json:"cause_class,omitempty"`
	Time       time.Time      `json:"time"`
}

// Route delivers notifications somewhere. Send retries as its transport allows and returns
// the last error once it gives up.
type Route interface {
	Name() string
	Send(ctx context.Context, n Notification) error
}

// Config configures an Alerter. The zero value of every field but Routes means its default.
type Config struct {
	Routes []Route
	Rules  monitor.Rules
	// PerHour and Burst limit the alerts raised: default 30 an hour, 10 at once.
	PerHour float64
	Burst   int
	// Tick is how often windows age and the hub's certificates are judged. Default 1 minute.
	Tick time.Duration
	// HubCertificates returns the hub's own certificates' not-after by name (root,
	// intermediate, broker), judged at each Tick. Nil judges none.
	HubCertificates func() map[string]time.Time
	// Failed records a delivery that failed for good (route "rate": not sent, over the limit).
	Failed func(route string, n Notification, err error)
	// Now is the clock. Default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Alerter turns observations into notifications. Create it with New.
type Alerter struct {
	cfg     Config
	det     *monitor.Detector
	limiter *rate.Limiter

	mu    sync.Mutex
	queue []func(*monitor.Detector) []monitor.Finding
	wake  chan struct{}

	sent map[string]bool // keys whose raise was delivered; owned by Run
}

// New returns an Alerter for cfg. It starts nothing.
func New(cfg Config) *Alerter {
	if cfg.PerHour <= 0 {
		cfg.PerHour = 30
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 10
	}
	if cfg.Tick <= 0 {
		cfg.Tick = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Failed == nil {
		cfg.Failed = func(string, Notification, error) {}
	}
	return &Alerter{cfg: cfg, det: monitor.NewDetector(cfg.Rules), limiter: rate.New(cfg.PerHour/3600, cfg.Burst),
		wake: make(chan struct{}, 1), sent: map[string]bool{}}
}

// enqueue queues an observation for Run.
func (a *Alerter) enqueue(f func(*monitor.Detector) []monitor.Finding) {
	a.mu.Lock()
	a.queue = append(a.queue, f)
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// Attempt observes a renewal attempt that ended.
func (a *Alerter) Attempt(at monitor.Attempt) {
	a.enqueue(func(d *monitor.Detector) []monitor.Finding { return d.Observe(at) })
}

// IssuerChanged observes a device reporting a certificate from another issuer.
func (a *Alerter) IssuerChanged(id, family, class, issuer string, at time.Time) {
	a.enqueue(func(d *monitor.Detector) []monitor.Finding { return d.IssuerChanged(id, family, class, issuer, at) })
}

// Skipped observes a device that reached the end of its renewal window without renewing.
func (a *Alerter) Skipped(id, family, class, detail string, at time.Time) {
	a.enqueue(func(d *monitor.Detector) []monitor.Finding { return d.Skipped(id, family, class, detail, at) })
}

// Renewed observes a device's commit: its skipped-window, other-issuer and reminder
// findings end.
func (a *Alerter) Renewed(id string, at time.Time) {
	a.enqueue(func(d *monitor.Detector) []monitor.Finding { return d.Renewed(id, at) })
}

// Reminder observes a device without an agent reaching a reminder threshold before its
// certificate expires.
func (a *Alerter) Reminder(id, family, class, threshold string, expires, at time.Time) {
	a.enqueue(func(d *monitor.Detector) []monitor.Finding {
		return d.Reminder(id, family, class, threshold, expires, at)
	})
}

// HelpRequested observes a resident's "Request help" (the dashboard's help.requested event):
// one notification per request, keyed by key (its audit sequence number).
func (a *Alerter) HelpRequested(key, id, family, class, actor, message string, problems []string, at time.Time) {
	a.enqueue(func(d *monitor.Detector) []monitor.Finding {
		return d.HelpRequested(key, id, family, class, actor, message, problems, at)
	})
}

// Run delivers notifications until ctx ends. It runs one goroutine per route, each with its
// own queue; at the end, what is queued for a route is dropped with the routes' context.
func (a *Alerter) Run(ctx context.Context) error {
	outs := make([]*outbox, len(a.cfg.Routes))
	var wg sync.WaitGroup
	for i, r := range a.cfg.Routes {
		outs[i] = &outbox{wake: make(chan struct{}, 1)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i].run(ctx, r, a.cfg)
		}()
	}
	defer wg.Wait()
	tick := time.NewTicker(a.cfg.Tick)
	defer tick.Stop()
	a.deliver(outs, a.hubCertificates())
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.wake:
			a.mu.Lock()
			q := a.queue
			a.queue = nil
			a.mu.Unlock()
			for _, f := range q {
				a.deliver(outs, f(a.det))
			}
		case <-tick.C:
			a.deliver(outs, a.det.Tick(a.cfg.Now()))
			a.deliver(outs, a.hubCertificates())
		}
	}
}

func (a *Alerter) hubCertificates() []monitor.Finding {
	if a.cfg.HubCertificates == nil {
		return nil
	}
	return a.det.HubCertificates(a.cfg.HubCertificates(), a.cfg.Now())
}

// deliver applies deduplication and the rate limit, and queues what passes for every route.
func (a *Alerter) deliver(outs []*outbox, fs []monitor.Finding) {
	for _, f := range fs {
		n := notificationOf(f)
		if f.Resolved {
			if !a.sent[f.Key] {
				continue // its raise was never sent
			}
			delete(a.sent, f.Key)
		} else {
			if ok, _ := a.limiter.Allow(a.cfg.Now()); !ok {
				a.cfg.Logger.Warn("alert not sent: over the rate limit", "id", n.ID, "message", n.Message)
				a.cfg.Failed("rate", n, ErrRateLimited)
				continue
			}
			if !f.Once { // a Once finding has no resolution to send
				a.sent[f.Key] = true
			}
		}
		for _, o := range outs {
			o.push(n)
		}
	}
}

// notificationOf renders a finding for people.
func notificationOf(f monitor.Finding) Notification {
	n := Notification{ID: f.Key, State: StateRaised, Kind: f.Kind, Message: f.Message, DeviceID: f.DeviceID,
		Family: f.Family, Class: f.Class, Devices: f.Devices, Cause: f.Cause, Time: f.At.UTC()}
	if f.Cause != "" {
		n.CauseClass = f.Cause.Class()
	}
	n.Title = titles[f.Kind]
	if n.Title == "" {
		n.Title = "Hearth: " + string(f.Kind)
	}
	if f.Resolved {
		n.State, n.Title = StateResolved, "Resolved — "+n.Title
	}
	return n
}

// titles are the notifications' titles by finding kind.
var titles = map[monitor.FindingKind]string{
	monitor.FindingFamilyFailures: "Hearth: a device family fails to renew",
	monitor.FindingClassFailures:  "Hearth: a device class fails to renew",
	monitor.FindingFamilyRate:     "Hearth: renewal failures above normal",
	monitor.FindingRepeatedCause:  "Hearth: a device keeps failing to renew",
	monitor.FindingSlowRenewal:    "Hearth: a slow renewal",
	monitor.FindingIssuerChanged:  "Hearth: a certificate from another issuer",
	monitor.FindingRenewalSkipped: "Hearth: a renewal window passed",
	monitor.FindingHubCertificate: "Hearth: a hub certificate expires soon",
	monitor.FindingReminder:       "Hearth: renew a device by hand",
	monitor.FindingHelpRequested:  "Hearth: a resident asks for help",
}

// outbox is one route's queue.
type outbox struct {
	mu   sync.Mutex
	q    []Notification
	wake chan struct{}
}

func (o *outbox) push(n Notification) {
	o.mu.Lock()
	o.q = append(o.q, n)
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func (o *outbox) run(ctx context.Context, r Route, cfg Config) {
	for {
		o.mu.Lock()
		if len(o.q) == 0 {
			o.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-o.wake:
				continue
			}
		}
		n := o.q[0]
		o.q = o.q[1:]
		o.mu.Unlock()
		if err := r.Send(ctx, n); err != nil {
			if ctx.Err() != nil {
				return
			}
			cfg.Logger.Warn("alert delivery failed", "route", r.Name(), "id", n.ID, "state", n.State, "err", err)
			cfg.Failed(r.Name(), n, err)
		}
	}
}
