package renewal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/gateway/internal/rate"
	"github.com/hearth-pki/hearth/protocol"
)

// Commander hands over a renew command the scheduler has stored (Store.RecordCommand, with
// the device's renewal state, its campaign entry and its event) to what sends it: in the hub,
// the device state machine (lifecycle.Machine.Queue), which sends it once the device
// subscribes to its command topic. An error means it was not taken up now; the command stays
// stored, and the state machine sends stored commands on the device's next subscription.
type Commander interface {
	Queue(ctx context.Context, deviceID string, c inventory.Command) error
}

// Config holds the scheduler's collaborators and limits. Zero values mean the defaults.
type Config struct {
	// Store is the inventory; required.
	Store *inventory.Store
	// Policy returns the policy in force; called once per pass. A pass that finds another
	// policy than the last one (another pointer) reads every device. Default
	// policy.Default, made once.
	Policy func() *policy.Policy
	// Commander takes up the renew commands the scheduler stored; required.
	Commander Commander
	// Online reports whether a device has a live session. Default: the inventory's
	// Device.Online (the hub records presence there).
	Online func(deviceID string) bool
	// PublishWindow publishes the retained renewal window w of certificate c
	// (issuer.PublishWindow). Default: publish nothing.
	PublishWindow func(ctx context.Context, c inventory.Certificate, w policy.Window, now time.Time)
	// Now is the hub clock. Default time.Now. Run's timers follow the time package, so
	// anything but time.Now is for tests that call Reconcile themselves.
	Now func() time.Time
	// Rand returns a number in [0, 1) for the backoff's jitter. Default math/rand/v2.Float64.
	Rand func() float64
	// Interval is the period of reconcile passes when nothing asks for one sooner.
	// Default 1 minute.
	Interval time.Duration
	// Rate is the number of commands per second across the fleet. Default 20.
	Rate float64
	// Burst is how many commands may leave at once. Default Rate × 1 s (at least 1): Run
	// spaces passes by at least a second, so a smaller Burst lowers the effective rate.
	Burst int
	// MaxInFlight caps the devices commanded and not yet committed or failed. Default 50.
	MaxInFlight int
	// AttemptDeadline is how long a commanded device has to commit. Default 10 minutes
	// (admin.CommandTimeout).
	AttemptDeadline time.Duration
	// MaxFailures is the number of consecutive failures that make a device "failing".
	// Default 5.
	MaxFailures int
	// BackoffBase and BackoffMax bound the wait before a retry (policy.Backoff).
	// Defaults 1 minute and 6 hours.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// ReminderLeads are the times before expiry at which a manual device gets a reminder,
	// besides the opening of its window; 0 is the expiry itself. Default 7 days, 1 day, 0.
	ReminderLeads []time.Duration
	// Notify receives the events worth showing (bridge/event). Default: none.
	Notify func(protocol.Event)
	// DeviceChanged is called with each device whose renewal status a pass or Force stored
	// (refresh its bridge topic and entities); Changed after a pass, Force or StartCampaign
	// changed anything, devices or campaigns (refresh the summary). Default: nothing.
	DeviceChanged func(deviceID string)
	Changed       func()
	// Logger receives a line per pass (Info when it did something, Debug otherwise) and
	// the errors that do not stop a pass. Default: discard.
	Logger *slog.Logger
	// Leader gates Run among hub replicas (lease.Lease.Leader): Run makes a pass only while
	// it reports true, with the context it returns, whose fence makes the database refuse the
	// pass's writes once the leader's term moved on; otherwise Run asks again every
	// FollowerPoll. The first pass of a new leadership reads every device (another replica
	// led meanwhile). Default: always leader (a single hub).
	Leader func(ctx context.Context) (context.Context, bool)
	// FollowerPoll is how often Run asks Leader while not leading. Default 1 s.
	FollowerPoll time.Duration
	// LeaderFullPass is, with Leader set, how often the leader's pass reads every device:
	// the hooks (Touch, Committed, Failed) reach only the replica they happen on, so the
	// leader sees what other replicas changed at its next full pass. Default 5 minutes.
	LeaderFullPass time.Duration
}

// ErrConfig reports a Config the scheduler cannot work with.
var ErrConfig = errors.New("renewal: invalid configuration")

// ErrNotRenewable reports a Force on a device the scheduler cannot command: unknown, without
// an active certificate, without an agent, or quarantined.
var ErrNotRenewable = errors.New("device cannot be renewed by command")

// minPassGap is the least time between two passes of Run, however often it is kicked: a pass
// reads every device touched since the last one, and those commanded or held back.
const minPassGap = time.Second

// Scheduler is the renewal orchestrator. Create it with New; run it with Run.
type Scheduler struct {
	cfg     Config
	limiter *rate.Limiter
	kick    chan struct{}

	mu        sync.Mutex               // serializes passes, Force and StartCampaign
	campaigns map[string]*rate.Limiter // campaign id → its command rate; under mu
	due       *dueIndex                // when each device needs a pass; nil until the first pass; under mu
	duePolicy *policy.Policy           // the policy due was built with; under mu
	// defaultPolicy stands in when Policy returns nil; under mu.
	defaultPolicy *policy.Policy

	hookMu    sync.Mutex
	failed    map[string]hookFailure // device → failure reported by Failed, not yet applied
	committed map[string]bool        // device → Committed since the last pass
	touched   map[string]bool        // device → Touch, DeviceOnline or Force since the last pass
}

// hookFailure is a failure reported by the hub, applied by the next pass.
type hookFailure struct {
	code  string
	cause protocol.Cause
	at    time.Time
}

// New returns a Scheduler with cfg's defaults filled in. It starts nothing.
func New(cfg Config) *Scheduler {
	if cfg.Policy == nil {
		def := policy.Default()
		cfg.Policy = func() *policy.Policy { return def }
	}
	if cfg.PublishWindow == nil {
		cfg.PublishWindow = func(context.Context, inventory.Certificate, policy.Window, time.Time) {}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.FollowerPoll <= 0 {
		cfg.FollowerPoll = time.Second
	}
	if cfg.LeaderFullPass <= 0 {
		cfg.LeaderFullPass = 5 * time.Minute
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 20
	}
	if cfg.Burst <= 0 {
		cfg.Burst = max(1, int(math.Ceil(cfg.Rate*minPassGap.Seconds())))
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 50
	}
	if cfg.AttemptDeadline <= 0 {
		cfg.AttemptDeadline = 10 * time.Minute
	}
	if cfg.MaxFailures <= 0 {
		cfg.MaxFailures = 5
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = time.Minute
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 6 * time.Hour
	}
	cfg.BackoffMax = max(cfg.BackoffMax, cfg.BackoffBase)
	if cfg.ReminderLeads == nil {
		cfg.ReminderLeads = []time.Duration{7 * 24 * time.Hour, 24 * time.Hour, 0}
	}
	if cfg.Notify == nil {
		cfg.Notify = func(protocol.Event) {}
	}
	if cfg.DeviceChanged == nil {
		cfg.DeviceChanged = func(string) {}
	}
	if cfg.Changed == nil {
		cfg.Changed = func() {}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Scheduler{
		cfg:       cfg,
		limiter:   rate.New(cfg.Rate, cfg.Burst),
		kick:      make(chan struct{}, 1),
		campaigns: map[string]*rate.Limiter{},
		failed:    map[string]hookFailure{},
		committed: map[string]bool{},
		touched:   map[string]bool{},
	}
}

// check reports a Config missing a required collaborator.
func (s *Scheduler) check() error {
	switch {
	case s.cfg.Store == nil:
		return fmt.Errorf("%w: no Store", ErrConfig)
	case s.cfg.Commander == nil:
		return fmt.Errorf("%w: no Commander", ErrConfig)
	}
	return nil
}

// now is the hub clock in UTC, truncated to the second as the inventory stores it.
func (s *Scheduler) now() time.Time { return s.cfg.Now().UTC().Truncate(time.Second) }

// Run reconciles every Interval, sooner when a pass asks for it (a deadline, a backoff, a
// window's end, the rate limiter's next token) or when kicked, and at most once a second. It
// returns nil when ctx ends; a failed pass is logged and retried, never fatal.
func (s *Scheduler) Run(ctx context.Context) error {
	if err := s.check(); err != nil {
		return err
	}
	var last, lastFull time.Time
	leading := false
	for {
		last = time.Now()
		pctx, lead := ctx, true
		if s.cfg.Leader != nil {
			pctx, lead = s.cfg.Leader(ctx)
		}
		// Another replica led, or other replicas changed devices since the last full pass:
		// this pass reads every device.
		if s.cfg.Leader != nil && lead && (!leading || last.Sub(lastFull) >= s.cfg.LeaderFullPass) {
			s.mu.Lock()
			s.due = nil
			s.mu.Unlock()
			lastFull = last
		}
		leading = lead
		var rep Report
		var err error
		if lead {
			rep, err = s.Reconcile(pctx)
		}
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case !lead:
			rep.NextWake = s.cfg.Now().Add(s.cfg.FollowerPoll)
		case err != nil:
			s.cfg.Logger.Warn("renewal pass failed", "err", err, "report", rep)
		case rep.busy():
			s.cfg.Logger.Info("renewal pass", "report", rep)
		default:
			s.cfg.Logger.Debug("renewal pass", "report", rep)
		}
		wait := s.cfg.Interval
		if !rep.NextWake.IsZero() {
			wait = min(wait, rep.NextWake.Sub(s.cfg.Now()))
		}
		wait = max(wait, minPassGap)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-s.kick:
			t.Stop()
			if gap := minPassGap - time.Since(last); gap > 0 {
				t = time.NewTimer(gap)
				select {
				case <-ctx.Done():
					t.Stop()
					return nil
				case <-t.C:
				}
			}
		}
	}
}

// Kick asks Run for a pass soon (a device came online, a commit arrived, the policy
// changed). It never blocks; kicks before the pass starts coalesce.
func (s *Scheduler) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// DeviceOnline tells the scheduler that a device has (re)connected: a due device queued
// while it was offline is commanded by the next pass. Call it after recording the presence
// in the inventory. It never blocks.
func (s *Scheduler) DeviceOnline(deviceID string) { s.Touch(deviceID) }

// Touch tells the scheduler that something it decides on changed in the device's stored
// state outside the scheduler — a new active certificate, a quarantine or removal, a
// mechanism, family or tags, presence —: the next pass looks at the device (between full
// passes a pass reads only the devices it has reason to, see Reconcile). Call it after the
// change is stored. It never blocks.
func (s *Scheduler) Touch(deviceID string) {
	s.hookMu.Lock()
	s.touched[deviceID] = true
	s.hookMu.Unlock()
	s.Kick()
}

// retouch makes the next pass look at ids (a pass that could not read them).
func (s *Scheduler) retouch(ids []string) {
	s.hookMu.Lock()
	defer s.hookMu.Unlock()
	for _, id := range ids {
		s.touched[id] = true
	}
}

// restoreHooks puts back outcomes taken by a pass that could not apply them, unless a newer
// one arrived meanwhile.
func (s *Scheduler) restoreHooks(failed map[string]hookFailure, committed map[string]bool) {
	s.hookMu.Lock()
	defer s.hookMu.Unlock()
	for id, f := range failed {
		if _, ok := s.failed[id]; !ok {
			s.failed[id] = f
		}
	}
	for id := range committed {
		s.committed[id] = true
	}
}

// Committed tells the scheduler that the issuer activated a new certificate of the device and
// published its window (issuer.HandleCommit does both): the next pass returns the device to
// idle without publishing the window again. It never blocks.
func (s *Scheduler) Committed(deviceID string) {
	s.hookMu.Lock()
	s.committed[deviceID] = true
	s.hookMu.Unlock()
	s.Kick()
}

// Failed tells the scheduler that the device's renewal failed for good (code: the protocol
// error code, or "rolled_back" when the agent went back to its previous certificate; cause:
// the failure's cause, or "" for the cause of code). The next pass counts it against the
// command in flight, if the device has one; otherwise it is ignored (an agent renewing on its
// own in its window retries by itself). It never blocks.
func (s *Scheduler) Failed(deviceID, code string, cause protocol.Cause) {
	if cause == "" {
		cause = protocol.CauseOf(protocol.Code(code))
	}
	s.hookMu.Lock()
	s.failed[deviceID] = hookFailure{code: code, cause: cause, at: s.now()}
	s.hookMu.Unlock()
	s.Kick()
}

// takeHooks returns and clears the outcomes and touches the hooks reported since the last
// pass.
func (s *Scheduler) takeHooks() (map[string]hookFailure, map[string]bool, map[string]bool) {
	s.hookMu.Lock()
	defer s.hookMu.Unlock()
	f, c, t := s.failed, s.committed, s.touched
	s.failed, s.committed, s.touched = map[string]hookFailure{}, map[string]bool{}, map[string]bool{}
	return f, c, t
}

// Forced is what Force did.
type Forced struct {
	// AfterCurrent is set when the device was already commanded: the renewal asked for
	// follows once the one in flight ends (committed or failed).
	AfterCurrent bool
}

// Force makes an agent device due at once, whatever its window says (an admin's "renew
// now"): it is commanded by the next pass when it is online, else when it reconnects, and
// retried with backoff until it commits. A device already commanded renews again once the
// current attempt ends (Forced.AfterCurrent); a device backing off is retried at once. Force
// returns ErrNotRenewable (wrapped) for a device it cannot command.
func (s *Scheduler) Force(ctx context.Context, deviceID, reason string) (Forced, error) {
	if err := s.check(); err != nil {
		return Forced{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	store := s.cfg.Store
	d, err := store.Device(ctx, deviceID)
	if errors.Is(err, inventory.ErrNotFound) {
		return Forced{}, fmt.Errorf("force renewal of %q: %w: not in the inventory", deviceID, ErrNotRenewable)
	}
	if err != nil {
		return Forced{}, fmt.Errorf("force renewal of %q: %w", deviceID, err)
	}
	cert, err := store.ActiveCertificate(ctx, deviceID)
	if errors.Is(err, inventory.ErrNotFound) {
		return Forced{}, fmt.Errorf("force renewal of %q: %w: no active certificate", deviceID, ErrNotRenewable)
	} else if err != nil {
		return Forced{}, fmt.Errorf("force renewal of %q: %w", deviceID, err)
	}
	if !commandable(d) {
		return Forced{}, fmt.Errorf("force renewal of %q: %w: mechanism %q, state %q", deviceID, ErrNotRenewable, d.Mechanism, d.State)
	}
	st := d.Renewal
	if st.State == inventory.RenewalCommanded {
		st.Again = true
		if err := store.SetRenewal(ctx, deviceID, st); err != nil {
			return Forced{}, fmt.Errorf("force renewal of %q: %w", deviceID, err)
		}
		s.event(ctx, inventory.Event{Time: s.now(), Kind: protocol.EventRenewalForced, DeviceID: deviceID,
			Message: "renewal forced while one is in flight; it follows once that one ends: " + reason,
			Data:    map[string]string{"reason": reason, "after_current": "true"}}, true)
		s.cfg.DeviceChanged(deviceID)
		s.cfg.Changed()
		s.Touch(deviceID)
		return Forced{AfterCurrent: true}, nil
	}
	if st.State != inventory.RenewalFailing {
		st.State = inventory.RenewalDue
	}
	now := s.now()
	st.NextAttemptAt = time.Time{}
	// Record the window in force, as a pass would: a pass resets a device whose window
	// changed and is not overdue to idle (a commit), which would undo the Force.
	w := windowOf(s.policy(), d, cert, now)
	if !st.WindowStart.Equal(w.Start) || !st.WindowEnd.Equal(w.End) {
		s.cfg.PublishWindow(ctx, cert, w, now)
		st.WindowStart, st.WindowEnd = w.Start, w.End
	}
	if err := store.SetRenewal(ctx, deviceID, st); err != nil {
		return Forced{}, fmt.Errorf("force renewal of %q: %w", deviceID, err)
	}
	s.event(ctx, inventory.Event{Time: now, Kind: protocol.EventRenewalForced, DeviceID: deviceID,
		Message: "renewal forced: " + reason, Data: map[string]string{"reason": reason}}, true)
	s.cfg.DeviceChanged(deviceID)
	s.cfg.Changed()
	s.Touch(deviceID)
	return Forced{}, nil
}

// policy returns the policy in force.
func (s *Scheduler) policy() *policy.Policy {
	if p := s.cfg.Policy(); p != nil {
		return p
	}
	if s.defaultPolicy == nil {
		s.defaultPolicy = policy.Default()
	}
	return s.defaultPolicy
}

// windowOf computes the renewal window of device d's certificate c under pol.
func windowOf(pol *policy.Policy, d inventory.Device, c inventory.Certificate, now time.Time) policy.Window {
	return pol.Window(policy.Subject{DeviceID: d.ID, Family: d.Family, Tags: d.Tags},
		policy.CertInfo{Serial: c.Serial, NotBefore: c.NotBefore, NotAfter: c.NotAfter}, now)
}

// commandable reports whether d is a device the scheduler commands (it runs an agent and is
// not shut out).
func commandable(d inventory.Device) bool {
	return d.Mechanism != inventory.MechanismManual && tracked(d)
}

// tracked reports whether the scheduler looks after d at all.
func tracked(d inventory.Device) bool {
	return d.State != inventory.StateQuarantined && d.State != inventory.StateRemoved
}

// event appends e to the audit log and, when notify is set, passes it to Notify. A failure to
// append is logged: the state change it describes is already stored.
func (s *Scheduler) event(ctx context.Context, e inventory.Event, notify bool) {
	if _, err := s.cfg.Store.AppendEvent(ctx, e); err != nil {
		s.cfg.Logger.Warn("append renewal event", "kind", e.Kind, "device", e.DeviceID, "err", err)
	}
	if notify {
		s.notify(e)
	}
}

// notify passes e, appended already, to Notify.
func (s *Scheduler) notify(e inventory.Event) {
	s.cfg.Notify(protocol.Event{V: protocol.Version, Type: e.Kind, Time: e.Time, DeviceID: e.DeviceID,
		Message: e.Message, Data: e.Data})
}
