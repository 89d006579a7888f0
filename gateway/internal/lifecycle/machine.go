package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/protocol"
)

// Publisher sends a payload to a topic of the hub's broker (QoS 1).
type Publisher interface {
	Publish(topic string, payload []byte, retain bool) error
}

// IssueFunc runs the issuance pipeline for a request that single flight let through, and
// publishes its reply. It returns the serial of the certificate recorded pending (or
// recorded before, for a resubmission), or ok false when it refused the request.
type IssueFunc func(ctx context.Context) (serial string, ok bool)

// Hooks are told what the machine did, once it is durable. Every field is optional. They
// are called from the machine's workers: they must return fast and must not call back into
// the Machine synchronously.
type Hooks struct {
	// Committed follows a commit that activated a certificate.
	Committed func(Committed)
	// Ended follows a request that ended without a commit, or a rollback after a commit.
	Ended func(Ended)
	// Presence follows a device going online or offline.
	Presence func(deviceID string, online bool)
	// Finding follows a finding: a certificate presented on several live connections, or
	// a health report naming a certificate or issuer the hub does not expect.
	Finding func(Finding)
	// Changed follows any change of the device's stored state (for the bridge and HA).
	Changed func(deviceID string)
	// Revoked follows a revocation (drop the sessions, regenerate the CRL).
	Revoked func(Revoked)
}

// Committed is a commit the machine recorded.
type Committed struct {
	DeviceID  string
	RequestID string
	Serial    string
	Previous  string // the certificate it superseded, "" for an enrollment
	At        time.Time
}

// Ended is a request that ended without a commit (Outcome rolled back or expired), or a
// device that went back to its previous certificate after a commit (AfterCommit).
type Ended struct {
	DeviceID    string
	RequestID   string
	Serial      string // the certificate given up, "" if none was issued
	Current     string // the certificate the device stays on, when known
	Outcome     Outcome
	Cause       string         // what happened, for people
	Failure     protocol.Cause // why, one of protocol.Causes ("" after a commit)
	AfterCommit bool
	At          time.Time
}

// Finding is something wrong the machine noticed about a device.
type Finding struct {
	DeviceID string
	Kind     FindingKind
	Serial   string
	Count    int    // FindingDuplicateSession: the connections presenting Serial
	Detail   string // see Found
	At       time.Time
}

// Config configures a Machine. Store and Publisher are required.
type Config struct {
	Rules     Rules
	Store     *inventory.Store
	Publisher Publisher
	Topics    protocol.Topics
	Hooks     Hooks
	// Shards is the number of workers; a device always maps to the same one. Default 8.
	Shards int
	// Shared says that other hub replicas change the same inventory (PostgreSQL storage,
	// issue 17): a device's CSR may be handled by one replica and its commit by another, so
	// the stored part of a State kept in memory can be stale. With Shared, each event is
	// applied to the device's stored state read afresh (one read per event, never one per
	// device of the fleet), its live sessions kept.
	Shared bool
	// Now is the hub clock. Default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// ErrStopped is returned by Command once the Machine's Run has ended.
var ErrStopped = errors.New("lifecycle: machine stopped")

// Machine runs the state machine of every device: each event is applied to its device's
// State in the order it was submitted, and its effects are carried out before the device's
// next event. Submitting never blocks (queues are unbounded), so the broker can submit from
// its connection goroutines while it holds its own locks.
type Machine struct {
	cfg    Config
	seed   maphash.Seed
	shards []*shard
}

// shard is one worker's queue and the states of its devices. states and deadlines are
// touched only by the worker.
type shard struct {
	mu      sync.Mutex
	queue   []item
	wake    chan struct{}
	stopped bool

	states    map[string]*State
	deadlines map[string]time.Time
}

// item is one submitted event.
type item struct {
	device string
	ev     Event
	issue  IssueFunc    // with CSRReceived
	done   chan<- error // with CommandQueued: answered once durable (and sent, if it can be)
	stored bool         // with CommandQueued: the caller already stored the command
	probe  chan<- State // a State request (Inspect)

	revoked chan<- revokeResult // with RevokeRequested: answered once durable
}

// New returns a Machine; Run starts it.
func New(cfg Config) (*Machine, error) {
	if cfg.Store == nil || cfg.Publisher == nil {
		return nil, errors.New("lifecycle: Store and Publisher are required")
	}
	if cfg.Shards <= 0 {
		cfg.Shards = 8
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Machine{cfg: cfg, seed: maphash.MakeSeed(), shards: make([]*shard, cfg.Shards)}
	for i := range m.shards {
		m.shards[i] = &shard{wake: make(chan struct{}, 1), states: map[string]*State{}, deadlines: map[string]time.Time{}}
	}
	return m, nil
}

// Recover settles what a stop left behind, before Run takes the first event: every device is
// marked offline (presence is rebuilt from the sessions that connect), and requests in
// flight for longer than the in-flight timeout end expired, their pending certificates
// abandoned. With Config.Shared presence is left alone: the other replicas' devices are
// online, and their sessions do not connect again because this replica started.
func (m *Machine) Recover(ctx context.Context) error {
	now := m.now()
	if !m.cfg.Shared {
		if _, err := m.cfg.Store.ResetPresence(ctx); err != nil {
			return err
		}
	}
	n, err := m.cfg.Store.AbandonStale(ctx, now.Add(-m.cfg.Rules.inFlight()), now)
	if err != nil {
		return err
	}
	if n > 0 {
		m.cfg.Logger.Info("requests left in flight by the last run ended", "requests", n)
	}
	return nil
}

// Run applies submitted events until ctx ends, and every second ends the deadlines that
// passed. Events still queued when ctx ends are dropped: their sessions are gone.
func (m *Machine) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, sh := range m.shards {
		wg.Go(func() { m.work(ctx, sh) })
	}
	wg.Wait()
	return nil
}

func (m *Machine) now() time.Time { return m.cfg.Now().UTC() }

func (m *Machine) shard(device string) *shard {
	return m.shards[maphash.String(m.seed, device)%uint64(len(m.shards))]
}

// submit queues it on its device's shard.
func (m *Machine) submit(it item) bool {
	sh := m.shard(it.device)
	sh.mu.Lock()
	if sh.stopped {
		sh.mu.Unlock()
		return false
	}
	sh.queue = append(sh.queue, it)
	sh.mu.Unlock()
	select {
	case sh.wake <- struct{}{}:
	default:
	}
	return true
}

// SessionUp submits a session of the device that authenticated with its certificate.
func (m *Machine) SessionUp(device string, conn Conn, serial string) {
	m.submit(item{device: device, ev: SessionUp{Conn: conn, Serial: serial}})
}

// SessionDown submits a session of the device that closed.
func (m *Machine) SessionDown(device string, conn Conn) {
	m.submit(item{device: device, ev: SessionDown{Conn: conn}})
}

// Subscribed submits a session of the device that subscribed to its command topic.
func (m *Machine) Subscribed(device string, conn Conn) {
	m.submit(item{device: device, ev: Subscribed{Conn: conn}})
}

// CSR submits a certificate request; issue runs on the device's worker if single flight
// lets the request through, and replies itself. A refusal by single flight is published
// by the machine.
func (m *Machine) CSR(device string, conn Conn, req *protocol.CSR, issue IssueFunc) {
	m.submit(item{device: device, ev: CSRReceived{Conn: conn, RequestID: req.RequestID, CommandID: req.CommandID}, issue: issue})
}

// Health submits a health report that arrived on a session of the device; issuer is the
// issuer the agent reports, f the failure it reports (zero for none).
func (m *Machine) Health(device string, conn Conn, issuer string, h inventory.Health, f ReportedFailure) {
	m.submit(item{device: device, ev: HealthReported{Conn: conn, Issuer: issuer, Health: h, Failure: f}})
}

// Commit submits a commit report that arrived on a session presenting serial presented.
func (m *Machine) Commit(device string, conn Conn, presented string, c *protocol.Commit) {
	m.submit(item{device: device, ev: CommitReceived{Conn: conn, Presented: presented, RequestID: c.RequestID,
		Serial: c.Serial, Outcome: c.Outcome, Failed: c.Failed, Cause: c.Cause, Detail: c.Detail}})
}

// Command queues a renew command for the device: it is stored, then sent as soon as (and
// each time) a session of the device subscribes to its command topic, until the device
// sends a CSR or the deadline passes. Command returns once the command is stored (and sent,
// when the device is subscribed).
func (m *Machine) Command(ctx context.Context, device string, c Command) error {
	done := make(chan error, 1)
	if !m.submit(item{device: device, ev: CommandQueued{Command: c}, done: done}) {
		return ErrStopped
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Queue is Command for a command the caller already stored in the inventory
// (inventory.Store.SetCommand or a transaction that includes it, such as a campaign's):
// the machine only takes it up and sends it when it can.
func (m *Machine) Queue(ctx context.Context, device string, c Command) error {
	done := make(chan error, 1)
	if !m.submit(item{device: device, ev: CommandQueued{Command: c}, done: done, stored: true}) {
		return ErrStopped
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Inspect returns the device's current State as the machine holds it (loaded from the
// inventory if the machine does not hold it), after every event submitted before.
func (m *Machine) Inspect(ctx context.Context, device string) (State, error) {
	probe := make(chan State, 1)
	if !m.submit(item{device: device, probe: probe}) {
		return State{}, ErrStopped
	}
	select {
	case s := <-probe:
		return s, nil
	case <-ctx.Done():
		return State{}, ctx.Err()
	}
}

// work is one shard's worker.
func (m *Machine) work(ctx context.Context, sh *shard) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	defer func() {
		sh.mu.Lock()
		sh.stopped = true
		rest := sh.queue
		sh.queue = nil
		sh.mu.Unlock()
		for _, it := range rest {
			if it.done != nil {
				it.done <- ErrStopped
			}
			if it.revoked != nil {
				it.revoked <- revokeResult{err: ErrStopped}
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sh.wake:
		case <-tick.C:
			m.expire(ctx, sh)
			continue
		}
		for {
			sh.mu.Lock()
			batch := sh.queue
			sh.queue = nil
			sh.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			for _, it := range batch {
				if ctx.Err() != nil {
					return
				}
				m.handle(ctx, sh, it)
			}
		}
	}
}

// expire ticks the devices whose deadline passed.
func (m *Machine) expire(ctx context.Context, sh *shard) {
	now := m.now()
	for id, t := range sh.deadlines {
		if !now.Before(t) {
			m.handle(ctx, sh, item{device: id, ev: Tick{}})
		}
	}
}

// state returns the device's State, loading it from the inventory on first use (and, with
// Config.Shared, refreshing its stored part on every use).
func (m *Machine) state(ctx context.Context, sh *shard, id string) (*State, error) {
	if s, ok := sh.states[id]; ok {
		if m.cfg.Shared {
			fresh, err := m.load(ctx, id)
			if err != nil {
				return nil, err
			}
			fresh.Sessions = s.Sessions
			if fresh.Active == s.Active {
				fresh.Proven = s.Proven // else another replica committed since
			}
			if fresh.Command != nil && s.Command != nil && fresh.Command.ID == s.Command.ID {
				fresh.Command.Sent = s.Command.Sent
			}
			*s = fresh
		}
		return s, nil
	}
	s, err := m.load(ctx, id)
	if err != nil {
		return nil, err
	}
	sh.states[id] = &s
	return &s, nil
}

// load reads the stored part of a device's State.
func (m *Machine) load(ctx context.Context, id string) (State, error) {
	l, err := m.cfg.Store.Lifecycle(ctx, id)
	if err != nil {
		return State{}, err
	}
	s := State{Active: l.Active, Previous: l.Previous, LastRequest: l.LastRequest}
	if p := l.Pending; p != nil {
		s.Pending = &Pending{RequestID: p.RequestID, Serial: p.Serial, Expires: p.StartedAt.Add(m.cfg.Rules.inFlight())}
	}
	if c := l.Command; c.ID != "" {
		s.Command = &Command{ID: c.ID, Action: c.Action, Reason: c.Reason, Deadline: c.Deadline}
	}
	return s, nil
}

// handle applies one item to its device and carries out the effects.
func (m *Machine) handle(ctx context.Context, sh *shard, it item) {
	st, err := m.state(ctx, sh, it.device)
	if err != nil {
		m.cfg.Logger.Error("load device state", "device", it.device, "err", err)
		m.failItem(it, err)
		return
	}
	if it.probe != nil {
		it.probe <- st.clone()
		return
	}
	now := m.now()
	if q, ok := it.ev.(CommandQueued); ok {
		if !it.stored {
			err := m.cfg.Store.SetCommand(ctx, it.device, inventory.Command{ID: q.Command.ID, Action: q.Command.Action,
				Reason: q.Command.Reason, Deadline: q.Command.Deadline})
			if err != nil {
				it.done <- err
				return
			}
		}
		defer func() { it.done <- nil }() // once the command is sent, if it can be
	}
	next, effects := m.cfg.Rules.Step(*st, it.ev, now)
	*st = next
	for _, e := range effects {
		m.do(ctx, sh, it, st, e, now)
	}
	if st.Idle() {
		delete(sh.states, it.device)
	}
	if t := st.NextDeadline(); !t.IsZero() && !st.Idle() {
		sh.deadlines[it.device] = t
	} else {
		delete(sh.deadlines, it.device)
	}
}

// failItem answers an item that could not be applied (its device's state did not load).
func (m *Machine) failItem(it item, err error) {
	now := m.now()
	switch e := it.ev.(type) {
	case CSRReceived:
		m.refuse(it.device, Refuse{RequestID: e.RequestID, Code: protocol.CodeInternal,
			Message: "the hub could not read the device's state; nothing was issued", RetryAfter: time.Minute}, now)
	case CommitReceived:
		m.refuse(it.device, Refuse{Commit: true, RequestID: e.RequestID, Code: protocol.CodeInternal,
			Message: "the hub could not read the device's state", RetryAfter: time.Minute}, now)
	}
	if it.done != nil {
		it.done <- err
	}
	if it.probe != nil {
		close(it.probe)
	}
	if it.revoked != nil {
		it.revoked <- revokeResult{err: err}
	}
}

// do carries out one effect for st's device. An effect whose durable write fails leaves st
// as the inventory has it.
func (m *Machine) do(ctx context.Context, sh *shard, it item, st *State, e Effect, now time.Time) {
	id, store, hooks := it.device, m.cfg.Store, &m.cfg.Hooks
	switch e := e.(type) {
	case PresenceChanged:
		if err := store.SetOnline(ctx, id, e.Online, now); err != nil && !errors.Is(err, inventory.ErrNotFound) {
			m.cfg.Logger.Warn("record presence", "device", id, "err", err)
		}
		if hooks.Presence != nil {
			hooks.Presence(id, e.Online)
		}
		m.changed(id)
	case Found:
		if hooks.Finding != nil {
			hooks.Finding(Finding{DeviceID: id, Kind: e.Kind, Serial: e.Serial, Count: e.Count, Detail: e.Detail, At: now})
		}
	case RecordHealth:
		h := e.Health
		h.At = now
		update := store.UpdateHealth
		if st.Online() {
			// A report arrives over a live session: the device was seen now.
			update = store.RecordHealth
		}
		if err := update(ctx, id, h); err != nil {
			m.cfg.Logger.Warn("record health", "device", id, "err", err)
			return
		}
		m.changed(id)
	case RecordFailure:
		f := e.Failure
		recorded, err := store.RecordReportedFailure(ctx, inventory.Attempt{DeviceID: id, RequestID: f.RequestID,
			StartedAt: now, FinishedAt: now, Cause: f.Cause, Detail: protocol.ClipText(f.Detail)})
		if err != nil {
			m.cfg.Logger.Warn("record a failure the agent reported", "device", id, "request", f.RequestID, "err", err)
			return
		}
		if !recorded {
			return // reported before, or the hub's own record of the request
		}
		if hooks.Ended != nil {
			hooks.Ended(Ended{DeviceID: id, RequestID: f.RequestID, Outcome: OutcomeFailed, Cause: f.Detail, Failure: f.Cause, At: now})
		}
		m.changed(id)
	case Proceed:
		serial, ok := it.issue(ctx)
		var follow Event = RequestRefused(e)
		if ok {
			follow = Issued{RequestID: e.RequestID, Serial: serial}
		}
		*st, _ = m.cfg.Rules.Step(*st, follow, now) // Issued and RequestRefused have no effects
		m.changed(id)
	case Refuse:
		m.refuse(id, e, now)
	case Activate:
		prev, err := store.Commit(ctx, id, e.RequestID, e.Serial, e.Rollback, now)
		if err != nil {
			m.reload(ctx, sh, id, st)
			code, msg, retry := protocol.CodeInternal, "the hub could not record the commit", time.Minute
			switch {
			case errors.Is(err, inventory.ErrRevoked):
				code, msg, retry = protocol.CodeRevoked, fmt.Sprintf("certificate %s is revoked", e.Serial), 0
			case errors.Is(err, inventory.ErrAbandoned), errors.Is(err, inventory.ErrNotFound):
				code, msg, retry = protocol.CodeUnknownRequest, fmt.Sprintf("certificate %s cannot be committed: %v", e.Serial, err), 0
			default:
				m.cfg.Logger.Error("record commit", "device", id, "serial", e.Serial, "err", err)
			}
			m.refuse(id, Refuse{Commit: true, RequestID: e.RequestID, Code: code, Message: msg, RetryAfter: retry}, now)
			return
		}
		m.ack(id, e.RequestID, e.Serial, now)
		if e.Rollback {
			if hooks.Ended != nil {
				hooks.Ended(Ended{DeviceID: id, RequestID: e.RequestID, Serial: prev, Current: e.Serial, Outcome: OutcomeRolledBack,
					Cause: "the agent went back to its previous certificate after the commit", AfterCommit: true, At: now})
			}
		} else if hooks.Committed != nil {
			hooks.Committed(Committed{DeviceID: id, RequestID: e.RequestID, Serial: e.Serial, Previous: prev, At: now})
		}
		m.changed(id)
	case Reacknowledge:
		m.ack(id, e.RequestID, e.Serial, now)
	case EndRequest:
		outcome := inventory.OutcomeRolledBack
		if e.Outcome == OutcomeExpired {
			outcome = inventory.OutcomeExpired
		}
		if err := store.EndRequest(ctx, id, e.RequestID, e.Serial, e.Current, outcome, e.Failure, protocol.ClipText(e.Cause), now); err != nil {
			m.cfg.Logger.Error("record end of request", "device", id, "request", e.RequestID, "err", err)
			m.reload(ctx, sh, id, st)
			if e.Acknowledge {
				m.refuse(id, Refuse{Commit: true, RequestID: e.RequestID, Code: protocol.CodeInternal,
					Message: "the hub could not record the rollback", RetryAfter: time.Minute}, now)
			}
			return
		}
		if e.Acknowledge {
			m.ack(id, e.RequestID, e.Current, now)
		}
		if hooks.Ended != nil {
			hooks.Ended(Ended{DeviceID: id, RequestID: e.RequestID, Serial: e.Serial, Current: e.Current, Outcome: e.Outcome,
				Cause: e.Cause, Failure: e.Failure, At: now})
		}
		m.changed(id)
	case SendCommand:
		c := e.Command
		m.publish(m.cfg.Topics.Device(id, protocol.KindCmd), &protocol.Command{V: protocol.Version, CommandID: c.ID,
			Action: protocol.Action(c.Action), Reason: c.Reason, Deadline: c.Deadline, HubTime: now})
	case CommandSeen:
		if err := store.ClearCommand(ctx, id, e.ID); err != nil {
			m.cfg.Logger.Warn("clear command", "device", id, "err", err)
		}
	case RevokeCertificates:
		m.revokeNow(ctx, sh, it, st, e, now)
	default:
		panic(fmt.Sprintf("lifecycle: unknown effect %T", e))
	}
}

// reload replaces the stored part of st with what the inventory holds, keeping its live
// sessions: after a failed write, the machine must not believe what was not stored.
func (m *Machine) reload(ctx context.Context, sh *shard, id string, st *State) {
	fresh, err := m.load(ctx, id)
	if err != nil {
		// Not even a read works: forget the device, to load it afresh on its next event.
		m.cfg.Logger.Error("reload device state", "device", id, "err", err)
		sessions := st.Sessions
		*st = State{Sessions: sessions}
		delete(sh.states, id)
		return
	}
	fresh.Sessions, fresh.Proven = st.Sessions, st.Proven
	*st = fresh
}

func (m *Machine) changed(id string) {
	if m.cfg.Hooks.Changed != nil {
		m.cfg.Hooks.Changed(id)
	}
}

func (m *Machine) ack(id, requestID, serial string, now time.Time) {
	m.publish(m.cfg.Topics.Device(id, protocol.KindAck), &protocol.Ack{V: protocol.Version, RequestID: requestID, Serial: serial, HubTime: now})
}

// refuse publishes r as an error reply: on the ack topic for a commit, on the cert topic for
// a CSR.
func (m *Machine) refuse(id string, r Refuse, now time.Time) {
	werr := &protocol.Error{Code: r.Code, Message: protocol.ClipText(r.Message)}
	if r.RetryAfter > 0 {
		werr.RetryAfter = int((r.RetryAfter + time.Second - 1) / time.Second)
	} else if info, _ := r.Code.Info(); info.Retry {
		werr.RetryAfter = info.RetryAfter
	}
	m.cfg.Logger.Info("device request refused", "device", id, "request", r.RequestID, "commit", r.Commit, "code", r.Code, "reason", r.Message)
	if r.Commit {
		m.publish(m.cfg.Topics.Device(id, protocol.KindAck), &protocol.Ack{V: protocol.Version, RequestID: r.RequestID, HubTime: now, Error: werr})
		return
	}
	m.publish(m.cfg.Topics.Device(id, protocol.KindCert), &protocol.Cert{V: protocol.Version, RequestID: r.RequestID, HubTime: now, Error: werr})
}

func (m *Machine) publish(topic string, msg protocol.Message) {
	b, err := protocol.EncodeWith(msg, json.Marshal) // the agent's bytes, faster (issue 11)
	if err != nil {
		m.cfg.Logger.Error("encode reply", "topic", topic, "err", err)
		return
	}
	if err := m.cfg.Publisher.Publish(topic, b, false); err != nil {
		m.cfg.Logger.Warn("publish", "topic", topic, "err", err)
	}
}
