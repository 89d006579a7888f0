// Package fleetview publishes the hub's view of its fleet, incrementally: each device's
// retained "bridge/device/<id>" topic, the "bridge/devices" summary, and the device's Home
// Assistant entities. Callers say which device changed (DeviceChanged); the View coalesces
// those notifications into a dirty set and, at most every Config.Interval, loads only the
// dirty devices from the inventory in batched queries and publishes what changed.
//
// # Invariants
//
//   - No work proportional to the fleet per change (issue 10): a flush costs two queries per
//     inventory.MaxBatch dirty devices (plus, with Home Assistant, one aggregate query over
//     the last day's attempts for the summary), and
//     publishes one retained message per dirty device whose state changed, one summary, and
//     the Home Assistant updates of the dirty devices. Only Resync (at start, and when the
//     policy changes) reads every device, in batches.
//   - A device's topic is republished only when its payload changes; a removed device's topic
//     is cleared with an empty retained payload, and its entities are removed.
//   - Verdicts that change with time alone (a renewal window ends, the emergency floor or the
//     expiry is reached: monitor.Verdict.Until) are re-judged when that time comes, without
//     any notification.
//   - The summary comes from what the View keeps in memory of the devices it has loaded (a
//     few dozen bytes per device): problem counts from their verdicts, totals, states and
//     presence from their records (issue 11: an aggregate query over the devices at every
//     flush cost a storm in proportion to the fleet). A device the View is not told of is
//     counted at the next Resync.
//
// # Concurrency
//
// New starts nothing. DeviceChanged, RefreshSummary and Resync may be called from any
// goroutine, before or during Run, and never block: they record the request and wake Run.
// Run owns every query and publication; it must be called once.
package fleetview

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/hass"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/monitor"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

// Defaults of Config.
const (
	DefaultInterval = 250 * time.Millisecond
	DefaultRefresh  = 5 * time.Minute
)

// retryDelay is the wait after a flush that failed (the inventory could not be read) before
// the next one.
const retryDelay = 5 * time.Second

// HomeAssistant is what the View needs of the Home Assistant publisher (*hass.Publisher); a
// test counts the updates through it.
type HomeAssistant interface {
	UpdateHub(hass.Hub)
	UpdateDevice(hass.Device)
	RemoveDevice(id string)
	Complete()
}

// Observer receives the View's verdict on every device it judges (each changed device, and
// every device at a resync) and the removal of a device, from Run's goroutine: the
// in-memory fleet state the metrics and the alerts keep. It must not block.
type Observer interface {
	Judged(r inventory.DeviceRecord, v monitor.Verdict, pol *policy.Policy, now time.Time)
	Removed(id string)
}

// Config configures a View. Store and Publish are required; the zero value of every other
// field means its default.
type Config struct {
	Store *inventory.Store
	// Topics names the bridge topics; the zero value uses the default prefix.
	Topics protocol.Topics
	// Publish publishes on the hub's own broker (broker.Broker.Publish).
	Publish func(topic string, payload []byte, retain bool) error
	// Hub is the static part of the hub's Home Assistant entity: Version and CAExpires. The
	// View fills in Online, the counts, the success rate and the problem.
	Hub hass.Hub
	// CADates, if set, returns the expiry of the issuing intermediate, the root and the
	// broker's certificate as they are now, read at each summary in place of Hub's: a
	// rotation or a renewal of the broker's certificate then reaches Home Assistant with
	// the RefreshSummary that follows it.
	CADates func() (intermediate, root, broker time.Time)
	// Policy is the policy in force, whose windows decide "expiring". Default policy.Default.
	Policy func() *policy.Policy
	// Now is the clock devices are judged by. Default time.Now.
	Now func() time.Time
	// Interval is the least time between two flushes: notifications within it coalesce.
	// Default DefaultInterval.
	Interval time.Duration
	// Refresh is the longest time between two summaries, which carry the time they were
	// computed and the success rate of the last 24 hours. Default DefaultRefresh.
	Refresh time.Duration
	// Observer, if set, hears every verdict and removal.
	Observer Observer
	// Serving reports whether the hub's broker for agents accepts connections: the hub's
	// Connectivity entity, checked at each summary. Nil: always.
	Serving func() bool
	Logger  *slog.Logger
}

// View keeps the published view of the fleet current. Create it with New.
type View struct {
	cfg Config
	ha  HomeAssistant // nil without Home Assistant

	mu      sync.Mutex
	dirty   map[string]struct{} // devices to load and publish at the next flush
	resync  bool                // load every device at the next flush
	summary bool                // publish the summary at the next flush
	wake    chan struct{}

	// Owned by Run.
	known    map[string]*judged // every device judged so far, by id
	reviews  reviews            // when verdicts change with time
	counts   map[string]int     // devices with each problem code
	problems int                // devices with at least one problem
	expiring int                // devices with the expiring or expired problem
	complete bool               // the first Resync finished (Home Assistant was told)
	devices  deviceCounts       // devices by state and presence, from the records judged
}

// deviceCounts are the summary's totals, kept from the device records the View loaded, so
// that publishing the summary reads nothing proportional to the fleet.
type deviceCounts struct {
	total, online int
	states        map[string]int
}

// add counts a device in state, online or not, delta times (+1 or -1).
func (c *deviceCounts) add(state string, online bool, delta int) {
	c.total += delta
	if online {
		c.online += delta
	}
	if c.states[state] += delta; c.states[state] == 0 {
		delete(c.states, state)
	}
}

// judged is what the View remembers of a device it published.
type judged struct {
	state [32]byte  // digest of the retained bridge/device payload; zero when none
	codes []string  // its problem codes, for the summary's counts
	until time.Time // when its verdict changes by itself; zero: never
	dev   string    // the device's state as last loaded, for the summary's counts
	on    bool      // whether it was online then
}

// New returns a View for cfg. It starts nothing; the first flush of Run reads every device.
func New(cfg Config) *View {
	if cfg.Policy == nil {
		cfg.Policy = policy.Default
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &View{cfg: cfg, dirty: map[string]struct{}{}, resync: true, summary: true, wake: make(chan struct{}, 1),
		known: map[string]*judged{}, counts: map[string]int{}, devices: deviceCounts{states: map[string]int{}}}
}

// SetHomeAssistant makes the View keep Home Assistant's entities too. It must be called
// before Run: the hub learns Home Assistant's broker only when it starts.
func (v *View) SetHomeAssistant(ha HomeAssistant) { v.ha = ha }

// DeviceChanged tells the View that device id may have changed (or been removed). It never
// blocks; notifications coalesce until the next flush.
func (v *View) DeviceChanged(id string) {
	if id == "" {
		return
	}
	v.mu.Lock()
	v.dirty[id] = struct{}{}
	v.mu.Unlock()
	v.notify()
}

// RefreshSummary asks for the summary to be published again at the next flush, after a
// change that names no device. It never blocks.
func (v *View) RefreshSummary() {
	v.mu.Lock()
	v.summary = true
	v.mu.Unlock()
	v.notify()
}

// Resync asks for every device to be judged and published again at the next flush: after a
// change of policy, which moves every renewal window. It never blocks; the flush reads the
// inventory in batches.
func (v *View) Resync() {
	v.mu.Lock()
	v.resync = true
	v.mu.Unlock()
	v.notify()
}

func (v *View) notify() {
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

// work is what one flush has to do.
type work struct {
	ids     []string
	resync  bool
	summary bool
}

// take returns the pending work and resets it.
func (v *View) take() work {
	v.mu.Lock()
	defer v.mu.Unlock()
	w := work{resync: v.resync, summary: v.summary || v.resync || len(v.dirty) > 0}
	for id := range v.dirty {
		w.ids = append(w.ids, id)
	}
	clear(v.dirty)
	v.resync, v.summary = false, false
	return w
}

// putBack returns the work of a failed flush to the pending set.
func (v *View) putBack(w work) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, id := range w.ids {
		v.dirty[id] = struct{}{}
	}
	v.resync = v.resync || w.resync
	v.summary = v.summary || w.summary
}

// Run flushes pending work until ctx ends, at most once per Interval, re-judges devices whose
// verdict changes with time, and refreshes the summary at least every Refresh. It returns nil
// when ctx ends, or an error at once if the Config lacks Store or Publish.
func (v *View) Run(ctx context.Context) error {
	if v.cfg.Store == nil || v.cfg.Publish == nil {
		return fmt.Errorf("fleetview: Store and Publish are required")
	}
	review := time.NewTimer(time.Hour)
	defer review.Stop()
	refresh := time.NewTicker(v.cfg.Refresh)
	defer refresh.Stop()
	for {
		if w := v.take(); w.resync || w.summary || len(w.ids) > 0 {
			if err := v.flush(ctx, w); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				v.cfg.Logger.Warn("fleet view not published; retrying", "err", err, "devices", len(w.ids), "resync", w.resync)
				v.putBack(w)
				if !sleep(ctx, retryDelay) {
					return nil
				}
				continue
			}
		}
		review.Reset(v.reviews.wait(v.cfg.Now()))
		select {
		case <-ctx.Done():
			return nil
		case <-v.wake:
		case <-review.C:
			v.due(v.cfg.Now())
		case <-refresh.C:
			v.RefreshSummary()
		}
		// Coalesce: whatever else changes within Interval joins this flush.
		if !sleep(ctx, v.cfg.Interval) {
			return nil
		}
	}
}

// due marks dirty the devices whose verdict changes by now.
func (v *View) due(now time.Time) {
	for _, id := range v.reviews.due(now, v.known) {
		v.DeviceChanged(id)
	}
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
