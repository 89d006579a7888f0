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

// campaignRun is a campaign during a pass.
type campaignRun struct {
	rec     *campaignRecord
	before  protocol.CampaignStatus // progress when the pass began
	changed bool
	limiter *rate.Limiter
}

// loadCampaigns reads the campaigns a pass must look at: running ones, and stopped ones
// with devices still in flight. Mu must be held.
func (s *Scheduler) loadCampaigns(ctx context.Context) ([]*campaignRun, error) {
	recs, err := s.readCampaigns(ctx, s.done)
	if err != nil {
		return nil, err
	}
	var runs []*campaignRun
	for _, r := range recs {
		st := r.status()
		if r.State != protocol.CampaignRunning && st.InFlight == 0 {
			s.done[r.Campaign.ID] = true
			continue
		}
		l := s.campaigns[r.Campaign.ID]
		if l == nil {
			perSecond := r.Campaign.Rate / 60
			l = rate.New(perSecond, max(1, int(math.Ceil(perSecond*minPassGap.Seconds()))))
			s.campaigns[r.Campaign.ID] = l
		}
		runs = append(runs, &campaignRun{rec: r, before: st, limiter: l})
	}
	return runs, nil
}

// commanded records that e's device was commanded (id "" when it already had a command in
// flight) while it had failures failures.
func (r *campaignRun) commanded(e *campaignDevice, now time.Time, failures int, id string) {
	e.Stage, e.CommandedAt, e.Failures, e.CommandID = stageCommanded, now, failures, id
	r.changed = true
}

// finish records e's outcome.
func (r *campaignRun) finish(e *campaignDevice, stage, cause string) {
	e.Stage, e.Cause = stage, protocol.Clip(cause, maxCause)
	r.changed = true
}

// progress records the outcomes of r's devices: committed when the device's active
// certificate is no longer the one it had at the start, failed when its failure count grew
// since the command or it left the inventory.
func (p *pass) progress(r *campaignRun) {
	for i := range r.rec.Devices {
		e := &r.rec.Devices[i]
		if e.Stage != stagePending && e.Stage != stageCommanded {
			continue
		}
		d := p.devices[e.ID]
		switch {
		case d == nil || !commandable(d.dev):
			r.finish(e, stageFailed, "the device has no active certificate or agent any more")
		case d.cert.Serial != e.Serial:
			r.finish(e, stageCommitted, "")
		case e.Stage != stageCommanded:
		case d.st.Failures > e.Failures:
			r.finish(e, stageFailed, d.st.LastCause)
		case d.st.State != inventory.RenewalCommanded:
			// No command in flight, no failure, the same certificate: the command was
			// forgotten (a new policy moved the window); command it again.
			e.Stage = stagePending
			r.changed = true
		}
	}
}

// judge aborts r when a canary failed or too many devices did.
func (p *pass) judge(r *campaignRun) {
	if r.rec.State != protocol.CampaignRunning {
		return
	}
	var cause string
	st := r.rec.status()
	for _, e := range r.rec.Devices {
		if e.Canary && e.Stage == stageFailed {
			cause = fmt.Sprintf("canary %s failed: %s", e.ID, e.Cause)
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
	r.rec.State, r.rec.Ended, r.rec.Cause, r.changed = protocol.CampaignAborted, p.now, cause, true
	st = r.rec.status()
	p.s.event(p.ctx, inventory.Event{Time: p.now, Kind: protocol.EventCampaignAborted,
		Message: fmt.Sprintf("campaign %s aborted: %s; %d devices left untouched", r.rec.Campaign.ID, cause, st.Pending),
		Data:    campaignData(st)}, true)
}

// pick makes candidates of r's pending devices that are online, canaries first, as r's rate
// allows.
func (p *pass) pick(r *campaignRun) {
	if r.rec.State != protocol.CampaignRunning {
		return
	}
	canaries := false
	for _, e := range r.rec.Devices {
		if e.Canary && e.Stage != stageCommitted {
			canaries = true
		}
	}
	for i := range r.rec.Devices {
		e := &r.rec.Devices[i]
		if e.Stage != stagePending || canaries && !e.Canary {
			continue
		}
		d := p.devices[e.ID]
		if d == nil || !p.online(d) {
			continue
		}
		if d.st.State == inventory.RenewalCommanded {
			r.commanded(e, p.now, d.st.Failures, "") // its commit counts for the campaign
			continue
		}
		if ok, wait := r.limiter.Allow(p.now); !ok {
			p.wake(p.now.Add(wait))
			return
		}
		c := p.cands[e.ID]
		if c == nil {
			c = &candidate{d: d}
			p.cands[e.ID] = c
		}
		c.campaign, c.entry = r, e
	}
}

// settle finishes r when nothing is left to do, and stores and announces its progress.
func (p *pass) settle(r *campaignRun) {
	st := r.rec.status()
	if r.rec.State == protocol.CampaignRunning {
		p.rep.Campaigns++
		if st.Pending == 0 && st.InFlight == 0 {
			r.rec.State, r.rec.Ended, r.changed = protocol.CampaignFinished, p.now, true
			p.rep.Campaigns--
			p.s.event(p.ctx, inventory.Event{Time: p.now, Kind: protocol.EventCampaignFinished,
				Message: fmt.Sprintf("campaign %s finished: %d committed, %d failed", r.rec.Campaign.ID, st.Committed, st.Failed),
				Data:    campaignData(st)}, true)
		} else if progress(st) != progress(r.before) {
			p.s.event(p.ctx, inventory.Event{Time: p.now, Kind: protocol.EventCampaignProgress,
				Message: fmt.Sprintf("campaign %s: %d of %d committed, %d failed, %d in flight, %d pending",
					r.rec.Campaign.ID, st.Committed, st.Total, st.Failed, st.InFlight, st.Pending),
				Data: campaignData(st)}, true)
		}
	}
	if !r.changed {
		return
	}
	if err := p.s.saveCampaign(p.ctx, r.rec); err != nil {
		p.errs = append(p.errs, fmt.Errorf("campaign %q: %w", r.rec.Campaign.ID, err))
		return
	}
	p.changed = true
}

// campaignData is the data of campaign events.
func campaignData(st protocol.CampaignStatus) map[string]string {
	return map[string]string{"id": st.ID, "state": string(st.State), "total": strconv.Itoa(st.Total),
		"commanded": strconv.Itoa(st.Commanded), "committed": strconv.Itoa(st.Committed),
		"failed": strconv.Itoa(st.Failed), "pending": strconv.Itoa(st.Pending)}
}
