package renewal

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/rate"
	"github.com/hearth-pki/hearth/protocol"
)

// campaignRun is a campaign during a pass. The pass changes rec in memory and stores only
// what changed: each command with its entry (Store.RecordCommand), the other entries that
// changed (dirty, at the end of the pass), and the campaign's end.
type campaignRun struct {
	rec     *inventory.CampaignRecord
	before  protocol.CampaignStatus // progress when the pass began
	dirty   map[int]bool            // indexes of rec.Devices changed and not yet stored
	ended   bool                    // rec.State changed from running during the pass, not yet stored
	limiter *rate.Limiter
}

// loadCampaigns reads the campaigns a pass must look at: running ones, and stopped ones
// with devices still in flight. Mu must be held.
func (s *Scheduler) loadCampaigns(ctx context.Context) ([]*campaignRun, error) {
	recs, err := s.cfg.Store.CampaignsInProgress(ctx)
	if err != nil {
		return nil, err
	}
	runs := make([]*campaignRun, 0, len(recs))
	for i := range recs {
		r := &recs[i]
		l := s.campaigns[r.ID]
		if l == nil {
			perSecond := r.Rate / 60
			l = rate.New(perSecond, max(1, int(math.Ceil(perSecond*minPassGap.Seconds()))))
			s.campaigns[r.ID] = l
		}
		runs = append(runs, &campaignRun{rec: r, before: statusOf(r), dirty: map[int]bool{}, limiter: l})
	}
	return runs, nil
}

// set changes the stage of entry i, to be stored at the end of the pass.
func (r *campaignRun) set(i int, st inventory.CampaignStage) {
	r.rec.Devices[i].CampaignStage = st
	r.dirty[i] = true
}

// commanded records that entry i's device was commanded (id "" when it already had a
// command in flight) while it had failures failures.
func (r *campaignRun) commanded(i int, now time.Time, failures int, id string) {
	r.set(i, inventory.CampaignStage{Stage: inventory.StageCommanded, CommandedAt: now, CommandID: id, Failures: failures})
}

// finish records entry i's outcome.
func (r *campaignRun) finish(i int, stage, cause string) {
	st := r.rec.Devices[i].CampaignStage
	st.Stage, st.Cause = stage, protocol.Clip(cause, maxCause)
	r.set(i, st)
}

// progress records the outcomes of r's devices: committed when the device's active
// certificate is no longer the one it had at the start, failed when its failure count grew
// since the command or it left the inventory.
func (p *pass) progress(r *campaignRun) {
	for i := range r.rec.Devices {
		e := &r.rec.Devices[i]
		if e.Stage != inventory.StagePending && e.Stage != inventory.StageCommanded {
			continue
		}
		d, ok := p.device(e.DeviceID)
		switch {
		case !ok:
			// A pending device the pass did not read: unchanged since the last pass.
		case d == nil || !commandable(d.dev):
			r.finish(i, inventory.StageFailed, "the device has no active certificate or agent any more")
		case d.cert.Serial != e.Serial:
			r.finish(i, inventory.StageCommitted, "")
		case e.Stage != inventory.StageCommanded:
		case d.st.Failures > e.Failures:
			r.finish(i, inventory.StageFailed, d.st.LastCause)
		case d.st.State != inventory.RenewalCommanded:
			// No command in flight, no failure, the same certificate: the command was
			// forgotten (a new policy moved the window); command it again.
			st := e.CampaignStage
			st.Stage = inventory.StagePending
			r.set(i, st)
		}
	}
}

// judge aborts r when a canary failed or too many devices did.
func (p *pass) judge(r *campaignRun) {
	if r.rec.State != inventory.CampaignRunning {
		return
	}
	var cause string
	st := statusOf(r.rec)
	for _, e := range r.rec.Devices {
		if e.Canary && e.Stage == inventory.StageFailed {
			cause = fmt.Sprintf("canary %s failed: %s", e.DeviceID, e.Cause)
			break
		}
	}
	// The small margin keeps 3 of 10 at the threshold 0.3 (0.3 × 10 is 3.0000000000000004).
	if c := r.rec.Campaign; cause == "" && c.AbortAfter > 0 && float64(st.Failed) >= c.AbortAfter*float64(st.Total)-1e-9 {
		cause = fmt.Sprintf("%d of %d devices failed, at least the %g allowed", st.Failed, st.Total, c.AbortAfter)
	}
	if cause == "" {
		return
	}
	r.rec.State, r.rec.Ended, r.rec.Cause, r.ended = inventory.CampaignAborted, p.now, protocol.Clip(cause, maxCause), true
}

// pick makes candidates of r's pending devices that are online, canaries first, as r's rate
// allows.
func (p *pass) pick(r *campaignRun) {
	if r.rec.State != inventory.CampaignRunning {
		return
	}
	canaries := false
	for _, e := range r.rec.Devices {
		if e.Canary && e.Stage != inventory.StageCommitted {
			canaries = true
		}
	}
	for i := range r.rec.Devices {
		e := &r.rec.Devices[i]
		if e.Stage != inventory.StagePending || canaries && !e.Canary {
			continue
		}
		d, ok := p.device(e.DeviceID)
		if !ok {
			if err := p.fetch(r, i); err != nil {
				p.errs = append(p.errs, err)
				return
			}
			d, _ = p.device(e.DeviceID)
		}
		if d == nil || !commandable(d.dev) {
			r.finish(i, inventory.StageFailed, "the device has no active certificate or agent any more")
			continue
		}
		if !p.online(d) {
			continue
		}
		if d.st.State == inventory.RenewalCommanded {
			r.commanded(i, p.now, d.st.Failures, "") // its commit counts for the campaign
			continue
		}
		if ok, wait := r.limiter.Allow(p.now); !ok {
			p.wake(p.now.Add(wait))
			return
		}
		c := p.cands[e.DeviceID]
		if c == nil {
			c = &candidate{d: d}
			p.cands[e.DeviceID] = c
		}
		c.campaign, c.entry = r, i
	}
}

// settle stores what the pass changed of r besides its commands — the entries whose stage
// changed, one row each, then its end (aborted by judge, or finished when nothing is left
// to do) with its event — and announces its progress. An entry that could not be stored
// keeps the campaign from ending in this pass: the next one derives the same outcomes
// again from the devices.
func (p *pass) settle(r *campaignRun) {
	if len(r.dirty) > 0 {
		stages := make(map[string]inventory.CampaignStage, len(r.dirty))
		for i := range r.dirty {
			stages[r.rec.Devices[i].DeviceID] = r.rec.Devices[i].CampaignStage
		}
		if err := p.s.cfg.Store.SetCampaignStages(p.ctx, r.rec.ID, stages); err != nil {
			p.errs = append(p.errs, err)
			return
		}
		r.dirty = map[int]bool{}
		p.changed = true
	}
	st := statusOf(r.rec)
	if r.rec.State == inventory.CampaignRunning && st.Pending == 0 && st.InFlight == 0 {
		r.rec.State, r.rec.Ended, r.ended = inventory.CampaignFinished, p.now, true
	}
	if r.ended {
		st = statusOf(r.rec)
		e := inventory.Event{Time: p.now, Kind: protocol.EventCampaignFinished, Data: campaignData(st),
			Message: fmt.Sprintf("campaign %s finished: %d committed, %d failed", r.rec.ID, st.Committed, st.Failed)}
		if r.rec.State == inventory.CampaignAborted {
			e.Kind = protocol.EventCampaignAborted
			e.Message = fmt.Sprintf("campaign %s aborted: %s; %d devices left untouched", r.rec.ID, r.rec.Cause, st.Pending)
		}
		if err := p.s.cfg.Store.EndCampaign(p.ctx, r.rec.ID, r.rec.State, r.rec.Ended, r.rec.Cause, e); err != nil {
			p.errs = append(p.errs, err)
			return
		}
		r.ended, p.changed = false, true
		p.s.notify(e)
		return
	}
	if r.rec.State != inventory.CampaignRunning {
		return
	}
	p.rep.Campaigns++
	if progress(st) != progress(r.before) {
		p.s.event(p.ctx, inventory.Event{Time: p.now, Kind: protocol.EventCampaignProgress,
			Message: fmt.Sprintf("campaign %s: %d of %d committed, %d failed, %d in flight, %d pending",
				r.rec.ID, st.Committed, st.Total, st.Failed, st.InFlight, st.Pending),
			Data: campaignData(st)}, true)
	}
}

// campaignData is the data of campaign events.
func campaignData(st protocol.CampaignStatus) map[string]string {
	return map[string]string{"id": st.ID, "state": string(st.State), "total": strconv.Itoa(st.Total),
		"commanded": strconv.Itoa(st.Commanded), "committed": strconv.Itoa(st.Committed),
		"failed": strconv.Itoa(st.Failed), "pending": strconv.Itoa(st.Pending)}
}
