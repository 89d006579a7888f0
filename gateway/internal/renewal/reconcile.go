package renewal

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

// maxCause bounds the LastCause stored for a device (the dashboard shows it).
const maxCause = 500

// device is one device with an active certificate, as a pass sees and changes it.
type device struct {
	dev   inventory.Device
	cert  inventory.Certificate
	win   policy.Window
	st    inventory.RenewalStatus // as the pass changes it
	saved inventory.RenewalStatus // as stored
}

// candidate is a device the pass would command now.
type candidate struct {
	d *device
	// routine is set when the device is due by its window, a failure's retry or Force;
	// reason is then the routine command's reason.
	routine bool
	reason  string
	// campaign is set when a campaign picked the device; entry is then the device's index
	// in the campaign's record.
	campaign *campaignRun
	entry    int
}

// pass is the state of one reconcile pass.
type pass struct {
	s         *Scheduler
	ctx       context.Context
	now       time.Time
	rep       Report
	devices   map[string]*device
	order     []*device // by device id
	cands     map[string]*candidate
	runs      []*campaignRun
	failed    map[string]hookFailure
	committed map[string]bool
	attempts  map[string]inventory.Attempt // latest attempt of the commanded devices
	unsaved   []*device                    // devices whose changed status flush stores
	full      bool                         // the pass read every device
	pol       *policy.Policy               // the policy in force
	gone      map[string]bool              // devices read or named that the scheduler no longer tracks
	changed   bool                         // a device's status or a campaign was stored
	errs      []error
}

// Reconcile runs one pass (see the package documentation) and reports what it did. The
// first pass, and the first after the policy in force changed, reads every device; the
// others read only the devices whose time came, those touched since (Touch and the hooks)
// and those of campaigns in progress (see dueIndex). It does not wait for anything: devices
// the rate limit or the cap holds back are left for a later pass, whose time the Report's
// NextWake gives. Errors reading the inventory end the pass; errors writing one device's
// state are joined into the returned error while the pass goes on with the other devices.
func (s *Scheduler) Reconcile(ctx context.Context) (Report, error) {
	if err := s.check(); err != nil {
		return Report{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.load(ctx)
	if err != nil {
		return Report{At: s.now()}, err
	}
	for _, d := range p.order {
		if d.dev.Mechanism == inventory.MechanismManual {
			p.remind(d)
		} else {
			p.track(d)
		}
		p.save(d)
	}
	p.flush()
	for _, r := range p.runs {
		p.progress(r)
		p.judge(r)
		p.pick(r)
	}
	p.dispatch()
	for _, r := range p.runs {
		p.settle(r)
	}
	p.index()
	if p.changed {
		s.cfg.Changed()
	}
	return p.rep, errors.Join(p.errs...)
}

// load reads the devices the pass looks at, their active certificates and the campaigns in
// progress: every device when the index is to be rebuilt, else those the index and the
// hooks name.
func (s *Scheduler) load(ctx context.Context) (*pass, error) {
	now := s.now()
	store := s.cfg.Store
	// Hooks first: a Committed hook follows its activation, so the devices read next show
	// the certificate it reports. (Hooks lost to an error are caught by the deadline.)
	failed, committed, touched := s.takeHooks()
	pol := s.policy()
	full := s.due == nil || pol != s.duePolicy
	var ids []string
	if !full {
		ids = s.due.due(now)
		for id := range touched {
			ids = append(ids, id)
		}
		for id := range failed {
			ids = append(ids, id)
		}
		for id := range committed {
			ids = append(ids, id)
		}
	}
	// A pass that fails to read looks at the same devices next time.
	keep := func() {
		s.retouch(ids)
		s.restoreHooks(failed, committed)
	}
	runs, err := s.loadCampaigns(ctx)
	if err != nil {
		keep()
		return nil, fmt.Errorf("renewal pass: %w", err)
	}
	var recs []inventory.DeviceRecord
	if full {
		recs, err = s.allDevices(ctx, inventory.DeviceFilter{})
	} else {
		// A campaign's commanded devices are looked at every pass (their outcome); its
		// pending ones only when they are due or touched anyway, or when pick reaches them
		// (pass.fetch).
		for _, r := range runs {
			for _, e := range r.rec.Devices {
				if e.Stage == inventory.StageCommanded {
					ids = append(ids, e.DeviceID)
				}
			}
		}
		recs, err = store.DeviceRecords(ctx, ids)
	}
	if err != nil {
		keep()
		return nil, fmt.Errorf("renewal pass: %w", err)
	}
	if full {
		s.due, s.duePolicy = newDueIndex(), pol
	}
	p := &pass{s: s, ctx: ctx, now: now, rep: Report{At: now}, devices: map[string]*device{},
		cands: map[string]*candidate{}, runs: runs, full: full, pol: pol, gone: map[string]bool{}}
	p.add(recs, ids)
	p.failed, p.committed = failed, committed
	if err := p.loadAttempts(); err != nil {
		keep()
		return nil, fmt.Errorf("renewal pass: %w", err)
	}
	return p, nil
}

// add makes the devices of recs that the scheduler tracks part of the pass; the others
// among ids are gone (no active certificate any more, quarantined, removed) and leave the
// index.
func (p *pass) add(recs []inventory.DeviceRecord, ids []string) {
	for _, r := range recs {
		d := r.Device
		if r.Active == nil || !tracked(d) {
			continue
		}
		c := *r.Active
		w := windowOf(p.pol, d, c, p.now)
		st := d.Renewal
		if st.State == "" {
			st.State = inventory.RenewalIdle
		}
		x := &device{dev: d, cert: c, win: w, st: st, saved: st}
		p.devices[d.ID] = x
		p.order = append(p.order, x)
	}
	for _, id := range ids {
		if p.devices[id] == nil {
			p.gone[id] = true
			p.s.due.remove(id)
		}
	}
}

// device returns the device with id as the pass sees it, nil when it is gone, and ok false
// when the pass has not read it (a pending campaign device neither due nor touched: its
// stored state is what the last pass left, see pick and fetch).
func (p *pass) device(id string) (d *device, ok bool) {
	if d := p.devices[id]; d != nil {
		return d, true
	}
	return nil, p.full || p.gone[id]
}

// fetch reads the devices of r's pending entries from index i on that the pass has not
// read, up to inventory.MaxBatch of them, in one DeviceRecords call. Such a device has
// nothing to track this pass (it would have been due or touched), so it only joins the
// pass for pick and dispatch.
func (p *pass) fetch(r *campaignRun, i int) error {
	var ids []string
	for ; i < len(r.rec.Devices) && len(ids) < inventory.MaxBatch; i++ {
		e := r.rec.Devices[i]
		if _, ok := p.device(e.DeviceID); e.Stage == inventory.StagePending && !ok {
			ids = append(ids, e.DeviceID)
		}
	}
	recs, err := p.s.cfg.Store.DeviceRecords(p.ctx, ids)
	if err != nil {
		return err
	}
	p.add(recs, ids)
	return nil
}

// allDevices reads every device f selects with its active certificate, in pages.
func (s *Scheduler) allDevices(ctx context.Context, f inventory.DeviceFilter) ([]inventory.DeviceRecord, error) {
	var out []inventory.DeviceRecord
	after := ""
	for {
		page, err := s.cfg.Store.DevicePage(ctx, f, after, inventory.MaxBatch)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if len(page) < inventory.MaxBatch {
			return out, nil
		}
		after = page[len(page)-1].Device.ID
	}
}

// loadAttempts reads the latest attempt of every commanded device the pass looks at, in
// one query per inventory.MaxBatch devices (attemptFailure).
func (p *pass) loadAttempts() error {
	var ids []string
	for _, d := range p.order {
		if d.st.State == inventory.RenewalCommanded && d.dev.Mechanism != inventory.MechanismManual {
			ids = append(ids, d.dev.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	atts, err := p.s.cfg.Store.LatestAttempts(p.ctx, ids)
	if err != nil {
		return err
	}
	p.attempts = atts
	return nil
}

// index records, after the pass, when each device it looked at next needs a look, and
// fills the report's fleet-wide counts from the index.
func (p *pass) index() {
	x := p.s.due
	for _, d := range p.order {
		x.set(d.dev.ID, p.nextLook(d), d.st.State == inventory.RenewalFailing)
	}
	p.rep.Devices, p.rep.Failing = len(x.at), len(x.failing)
}

// nextLook is when a pass must look at d again (zero: only when touched).
func (p *pass) nextLook(d *device) time.Time {
	st, w, now := d.st, d.win, p.now
	if d.dev.Mechanism == inventory.MechanismManual {
		return st.NextAttemptAt
	}
	switch st.State {
	case inventory.RenewalIdle:
		return w.End
	case inventory.RenewalCommanded:
		return now
	}
	// Due or failing.
	if now.Before(st.NextAttemptAt) {
		if w.Phase(now) < policy.PhaseEmergency {
			return minTime(st.NextAttemptAt, w.EmergencyAt)
		}
		return st.NextAttemptAt
	}
	if !p.online(d) {
		// Commanded when it reconnects (DeviceOnline touches it); still retried from the
		// emergency floor on when it is backing off, as above.
		return time.Time{}
	}
	return now // held back by the rate or the cap, or commanded by the next pass
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// track moves an agent device through idle → due → commanded → idle (or due/failing after
// a failure), and makes it a candidate when it needs a command now.
func (p *pass) track(d *device) {
	st, w, now, cfg := &d.st, d.win, p.now, &p.s.cfg
	if !st.WindowStart.Equal(w.Start) || !st.WindowEnd.Equal(w.End) {
		// A new certificate (or a new policy): the issuer published the window of a commit
		// itself; anything else is published here, once.
		if !p.committed[d.dev.ID] {
			cfg.PublishWindow(p.ctx, d.cert, w, now)
			p.rep.Published++
		}
		st.WindowStart, st.WindowEnd = w.Start, w.End
		if now.Before(w.End) && st.State != inventory.RenewalIdle {
			p.rep.Renewed++
			again := st.Again
			*st = inventory.RenewalStatus{State: inventory.RenewalIdle, WindowStart: w.Start, WindowEnd: w.End}
			if again {
				// A Force during the attempt that just ended: renew once more, now.
				st.State = inventory.RenewalDue
			}
		}
	}
	phase := w.Phase(now)
	switch st.State {
	case inventory.RenewalCommanded:
		p.checkCommand(d)
	case inventory.RenewalIdle:
		if phase < policy.PhaseOverdue {
			p.wake(w.End)
			return
		}
		st.State, st.NextAttemptAt = inventory.RenewalDue, time.Time{}
		_, why := policy.Due(w, now)
		p.s.event(p.ctx, inventory.Event{Time: now, Kind: protocol.EventRenewalDue, DeviceID: d.dev.ID,
			Message: fmt.Sprintf("certificate %s is due: %s", d.cert.Serial, why),
			Data:    map[string]string{"serial": d.cert.Serial, "reason": why}}, true)
	}
	if st.State != inventory.RenewalDue && st.State != inventory.RenewalFailing {
		return
	}
	// The emergency floor overrides a long backoff: retry within BackoffBase.
	if phase >= policy.PhaseEmergency && st.NextAttemptAt.After(now.Add(cfg.BackoffBase)) {
		st.NextAttemptAt = now
	}
	if now.Before(st.NextAttemptAt) {
		p.rep.Waiting++
		p.wake(st.NextAttemptAt)
		if phase < policy.PhaseEmergency {
			p.wake(w.EmergencyAt)
		}
		return
	}
	p.cands[d.dev.ID] = &candidate{d: d, routine: true, reason: routineReason(w, now)}
}

// routineReason says why a device is commanded, for the agent's log and the audit.
func routineReason(w policy.Window, now time.Time) string {
	if w.Phase(now) >= policy.PhaseOverdue {
		_, why := policy.Due(w, now)
		return why
	}
	return "renewal requested before the window closes"
}

// checkCommand ends a command in flight that failed or passed its deadline.
func (p *pass) checkCommand(d *device) {
	st := &d.st
	commandedAt := st.NextAttemptAt.Add(-p.s.cfg.AttemptDeadline)
	if f, ok := p.failed[d.dev.ID]; ok && !f.at.Before(commandedAt) {
		p.fail(d, f.cause, "the agent's renewal failed: "+f.code)
		return
	}
	if cause, detail := p.attemptFailure(d, commandedAt); cause != "" {
		p.fail(d, cause, detail)
		return
	}
	if !p.now.Before(st.NextAttemptAt) {
		p.fail(d, protocol.CauseCommitTimeout, "no commit before the deadline "+stamp(st.NextAttemptAt))
		return
	}
	p.rep.InFlight++
	p.wake(st.NextAttemptAt)
}

// attemptFailure returns the cause of the device's latest request since the command, and
// why in words, when it failed for good; "" while it may still succeed. It catches the
// failures a hook reported to a hub that then restarted.
func (p *pass) attemptFailure(d *device, since time.Time) (protocol.Cause, string) {
	a, ok := p.attempts[d.dev.ID]
	if !ok || a.StartedAt.Before(since) {
		return "", ""
	}
	cause := a.Cause
	if cause == "" {
		cause = protocol.CauseOf(protocol.Code(a.ErrorCode))
	}
	switch {
	case a.Outcome == inventory.OutcomeRolledBack:
		return cause, fmt.Sprintf("the agent rolled back certificate %s", a.Serial)
	case a.Outcome == inventory.OutcomeFailed && !retryable(a.ErrorCode):
		return cause, "the hub refused the agent's request: " + a.ErrorCode
	}
	return "", ""
}

// retryable reports whether an agent retries a request refused with code by itself.
func retryable(code string) bool {
	info, _ := protocol.Code(code).Info()
	return info.Retry
}

// fail records a failed attempt: one more failure, a backoff, "failing" from MaxFailures on.
// cause is the failure's cause from the protocol's list, carried by the renewal.failed and
// renewal.failing events; detail says what happened in words and becomes LastCause.
func (p *pass) fail(d *device, cause protocol.Cause, detail string) {
	st, cfg, now := &d.st, &p.s.cfg, p.now
	st.Failures++
	st.LastCause = protocol.Clip(detail, maxCause)
	wait := policy.Backoff(st.Failures-1, cfg.BackoffBase, cfg.BackoffMax, cfg.Rand())
	if d.win.Phase(now) >= policy.PhaseEmergency {
		wait = min(wait, cfg.BackoffBase)
	}
	st.NextAttemptAt = now.Add(wait).Truncate(time.Second)
	if st.Again {
		// A Force during the failed attempt: retry at once, as Force does.
		st.NextAttemptAt, st.Again = now, false
	}
	st.State = inventory.RenewalDue
	if st.Failures >= cfg.MaxFailures {
		st.State = inventory.RenewalFailing
	}
	p.rep.Failed++
	p.wake(st.NextAttemptAt)
	p.s.event(p.ctx, inventory.Event{Time: now, Kind: protocol.EventRenewalFailed, DeviceID: d.dev.ID,
		Message: fmt.Sprintf("renewal failed (%d in a row): %s; next attempt at %s", st.Failures, st.LastCause, stamp(st.NextAttemptAt)),
		Data: map[string]string{"cause": string(cause), "detail": st.LastCause, "failures": strconv.Itoa(st.Failures),
			"next_attempt_at": stamp(st.NextAttemptAt)}}, true)
	if st.Failures == cfg.MaxFailures {
		p.s.event(p.ctx, inventory.Event{Time: now, Kind: protocol.EventRenewalFailing, DeviceID: d.dev.ID,
			Message: fmt.Sprintf("renewal failing after %d attempts: %s", st.Failures, st.LastCause),
			Data:    map[string]string{"cause": string(cause), "detail": st.LastCause, "failures": strconv.Itoa(st.Failures)}}, true)
	}
}

// dispatch commands the candidates, most urgent first, under the in-flight cap and the rate.
func (p *pass) dispatch() {
	cands := slices.SortedFunc(maps.Values(p.cands), func(a, b *candidate) int {
		return cmp.Or(a.d.win.Urgency(p.now).Compare(b.d.win.Urgency(p.now)), strings.Compare(a.d.dev.ID, b.d.dev.ID))
	})
	slots := p.s.cfg.MaxInFlight - p.rep.InFlight
	var batch []order
	for _, c := range cands {
		if c.campaign != nil && c.campaign.rec.State != inventory.CampaignRunning {
			// The campaign stopped during this pass: leave its device untouched unless it
			// is due anyway.
			if !c.routine {
				continue
			}
			c.campaign = nil
		}
		p.rep.Due++
		if !p.online(c.d) {
			p.rep.QueuedOffline++
			continue
		}
		if slots <= 0 {
			p.rep.Held++
			continue
		}
		if ok, wait := p.s.limiter.Allow(p.now); !ok {
			p.rep.Held++
			p.wake(p.now.Add(wait))
			continue
		}
		batch = append(batch, p.prepare(c))
		slots--
	}
	p.command(batch)
}

// online reports whether d has a live session.
func (p *pass) online(d *device) bool {
	if p.s.cfg.Online != nil {
		return p.s.cfg.Online(d.dev.ID)
	}
	return d.dev.Online
}

// order is a command of a pass, prepared for storing.
type order struct {
	c   *candidate
	st  inventory.RenewalStatus // the device's status once commanded
	rec inventory.CommandRecord
}

// prepare builds the command of c's device: its status commanded until the deadline, the
// command, its campaign entry and its audit event.
func (p *pass) prepare(c *candidate) order {
	d, cfg, now := c.d, &p.s.cfg, p.now
	action, reason := protocol.ActionRenew, c.reason
	if c.campaign != nil {
		action = protocol.Action(c.campaign.rec.Action)
		reason = fmt.Sprintf("campaign %s: %s", c.campaign.rec.ID, action)
	}
	reason = protocol.ClipText(reason)
	st := d.st
	st.State, st.NextAttemptAt = inventory.RenewalCommanded, now.Add(cfg.AttemptDeadline)
	cmd := inventory.Command{ID: newCommandID(), Action: string(action), Reason: reason, Deadline: st.NextAttemptAt}
	rec := inventory.CommandRecord{DeviceID: d.dev.ID, Renewal: st, Command: cmd}
	data := map[string]string{"command_id": cmd.ID, "action": string(action), "reason": reason, "deadline": stamp(cmd.Deadline)}
	if c.campaign != nil {
		data["campaign"] = c.campaign.rec.ID
		rec.Campaign = c.campaign.rec.ID
		rec.Stage = inventory.CampaignStage{Stage: inventory.StageCommanded, CommandedAt: now, CommandID: cmd.ID, Failures: d.st.Failures}
	}
	rec.Event = inventory.Event{Time: now, Kind: protocol.EventRenewalCommanded, DeviceID: d.dev.ID,
		Message: fmt.Sprintf("%s command %s: %s", action, cmd.ID, reason), Data: data}
	return order{c: c, st: st, rec: rec}
}

// command stores the pass's commands, each in one transaction with the device's renewal
// state (commanded until the deadline), its campaign entry and its audit event, all of them
// with one commit (Store.RecordCommands); only then is each handed to the Commander, which
// sends it once the device subscribes. A command that could not be stored leaves its device
// as it was, for a later pass.
func (p *pass) command(batch []order) {
	if len(batch) == 0 {
		return
	}
	cfg := &p.s.cfg
	recs := make([]inventory.CommandRecord, len(batch))
	for i, o := range batch {
		recs[i] = o.rec
	}
	errs := cfg.Store.RecordCommands(p.ctx, recs)
	for i, o := range batch {
		if errs[i] != nil {
			p.errs = append(p.errs, errs[i])
			continue
		}
		d, c, cmd := o.c.d, o.c, o.rec.Command
		d.st, d.saved, p.changed = o.st, o.st, true
		cfg.DeviceChanged(d.dev.ID)
		if r := c.campaign; r != nil {
			r.rec.Devices[c.entry].CampaignStage = o.rec.Stage
			delete(r.dirty, c.entry) // stored with the command
		}
		p.rep.Commanded++
		p.rep.InFlight++
		p.wake(o.st.NextAttemptAt)
		if err := cfg.Commander.Queue(p.ctx, d.dev.ID, cmd); err != nil {
			p.errs = append(p.errs, fmt.Errorf("queue command %s of %q (stored; sent on its next subscription): %w", cmd.ID, d.dev.ID, err))
		}
		p.s.notify(o.rec.Event)
	}
}

// newCommandID returns a fresh command id (as admin.Service.Renew makes them).
func newCommandID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "cmd-" + hex.EncodeToString(b)
}

// save queues d's status for flush when the pass changed it.
func (p *pass) save(d *device) {
	if !sameStatus(d.st, d.saved) {
		p.unsaved = append(p.unsaved, d)
	}
}

// flush stores the statuses save queued (Store.SetRenewals: one transaction per
// inventory.MaxBatch devices). On an error the devices not stored keep their stored status;
// the next pass looks at every one of them again.
func (p *pass) flush() {
	if len(p.unsaved) == 0 {
		return
	}
	sts := make(map[string]inventory.RenewalStatus, len(p.unsaved))
	for _, d := range p.unsaved {
		sts[d.dev.ID] = d.st
	}
	if _, err := p.s.cfg.Store.SetRenewals(p.ctx, sts); err != nil { // a device removed meanwhile is skipped
		p.errs = append(p.errs, err)
		for _, d := range p.unsaved {
			p.s.retouch([]string{d.dev.ID})
		}
		p.unsaved = nil
		return
	}
	for _, d := range p.unsaved {
		d.saved, p.changed = d.st, true
		p.s.cfg.DeviceChanged(d.dev.ID)
	}
	p.unsaved = nil
}

// wake records that the pass has work at t.
func (p *pass) wake(t time.Time) {
	if t.After(p.now) && (p.rep.NextWake.IsZero() || t.Before(p.rep.NextWake)) {
		p.rep.NextWake = t
	}
}

func sameStatus(a, b inventory.RenewalStatus) bool {
	return a.State == b.State && a.Failures == b.Failures && a.NextAttemptAt.Equal(b.NextAttemptAt) && a.Again == b.Again &&
		a.LastCause == b.LastCause && a.WindowStart.Equal(b.WindowStart) && a.WindowEnd.Equal(b.WindowEnd)
}

// stamp formats a time for messages and event data.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
