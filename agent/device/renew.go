package device

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/hub"
	"github.com/hearth-pki/hearth/agent/internal/keystore"
	"github.com/hearth-pki/hearth/protocol"
)

// emergencyRetryMax caps the renewal backoff once the emergency floor is reached.
const emergencyRetryMax = 5 * time.Minute

// Renew performs one renewal now, in the foreground (hearth-agent renew): connect with the
// current pair, send a CSR, install, reconnect, commit, and roll back on any failure. Once
// the state directory is open, a failure, even to reach the hub, is recorded as the last
// error with its cause and the attempt's request id (Status, and the health report of the
// next session) before Renew returns it. It fails with ErrLocked while an agent runs on the
// same directory: ask the hub for a renew command instead.
func Renew(ctx context.Context, cfg Config) error {
	a, err := New(cfg)
	if err != nil {
		return err
	}
	ks, release, err := openDir(a.cfg)
	if err != nil {
		return err
	}
	defer release()
	if err := a.load(ks); err != nil {
		return err
	}
	defer a.shutdown()
	// The attempt's id is drawn before anything can fail, so that a failure to reach the hub
	// is recorded under it too and reaches the hub with the next health report.
	reqID := newRequestID()
	sess, err := a.dial(ctx)
	if err != nil {
		err = fmt.Errorf("device: renew: %w", err)
		a.setLastError(reqID, err)
		return err
	}
	a.attach(sess)
	if a.st.Pending != nil {
		a.resume(ctx)
	}
	if a.sess == nil {
		err := fmt.Errorf("device: renew: %w", hub.ErrConnectionLost)
		a.setLastError(reqID, err)
		return err
	}
	if a.st.LastError != "" {
		a.sendHealth(ctx) // an earlier failure the hub may not know of
	}
	reason := protocol.ReasonCommand
	if r := a.clk.Read(); r.Now.After(a.current().Leaf().NotAfter) {
		reason = protocol.ReasonRecovery
	}
	if err := a.renew(ctx, reqID, reason, ""); err != nil {
		a.setLastError(reqID, err)
		if a.sess != nil {
			a.sendHealth(ctx)
		}
		return err
	}
	a.sendHealth(ctx)
	return nil
}

// attempt runs one renewal and records its outcome for the schedule: on failure an
// exponential backoff (or the hub's retry-after, if longer) before the next try. It returns
// the renewal's error.
func (a *Agent) attempt(ctx context.Context, reason protocol.Reason, commandID string) error {
	reqID := newRequestID()
	err := a.renew(ctx, reqID, reason, commandID)
	if err == nil {
		a.failures, a.retryAt = 0, time.Time{}
		return nil
	}
	if ctx.Err() != nil {
		return err
	}
	a.failures++
	hi := a.cfg.RetryMax
	if !a.clk.Read().Now.Before(emergencyAt(a.current().Leaf())) {
		hi = min(hi, max(emergencyRetryMax, a.cfg.RetryMin))
	}
	d := backoff(a.failures, a.cfg.RetryMin, hi, a.cfg.Rand.Float64())
	var he *HubError
	if errors.As(err, &he) && he.RetryAfter > d {
		d = he.RetryAfter
	}
	a.retryAt = a.now().Add(d)
	a.setLastError(reqID, err)
	a.log.Warn("renewal failed", "err", err, "retry_in", d.Round(time.Second))
	return err
}

// retryable reports whether err is a hub refusal the protocol says to retry after
// retry_after (busy, rate_limited, internal).
func retryable(err error) bool {
	var he *HubError
	if !errors.As(err, &he) {
		return false
	}
	_, retry := protocol.Code(he.Code).Retry()
	return retry
}

// renew is one renewal transaction, request reqID (agent/README.md, "How it renews", steps
// 2–5; protocol/README.md, "Renewal: two phases, commit by reconnect"). It needs a session.
func (a *Agent) renew(ctx context.Context, reqID string, reason protocol.Reason, commandID string) error {
	if a.sess == nil {
		return errors.New("device: renew: not connected to the hub")
	}
	old := a.current()
	a.emit(Event{Kind: EventRenewing, Detail: string(reason)})
	key, err := a.genKey(protocol.KeyAlgorithm(a.cfg.KeyAlgorithm))
	if err != nil {
		return fmt.Errorf("device: renew: %w", withCause(protocol.CauseKeyGeneration, err))
	}
	csr, err := keystore.NewCSR(key, a.cfg.DeviceID)
	if err != nil {
		return fmt.Errorf("device: renew: %w", withCause(protocol.CauseKeyGeneration, err))
	}
	a.st.Pending = &keystore.Pending{RequestID: reqID, Replaces: old.Serial()}
	a.saveState()
	a.log.Info("requesting a certificate", "request_id", reqID, "reason", reason, "replaces", old.Serial())
	msg := &protocol.CSR{
		V: protocol.Version, RequestID: reqID, CSR: string(csr), Reason: reason,
		Replaces: old.Serial(), CommandID: commandID,
	}
	reply, attempt, err := a.request(ctx, msg)
	if err != nil {
		a.giveUp(ctx, reqID, attempt, "", err, true)
		return fmt.Errorf("device: renew: %w", err)
	}
	a.observe(reply.HubTime, false)
	if reply.Error != nil {
		err := hubError(reply.Error)
		a.giveUp(ctx, reqID, attempt, "", err, false) // the hub refused: it knows
		return fmt.Errorf("device: renew: %w", err)
	}
	chain, err := verifyIssued(reply.Chain, key, a.cfg.DeviceID, a.ca, reply.HubTime)
	if err != nil {
		a.giveUp(ctx, reqID, attempt, reply.Serial, err, true)
		return fmt.Errorf("device: renew: %w", err)
	}
	if err := a.ks.Install(key, chain); err != nil && !errors.Is(err, keystore.ErrExport) {
		err = withCause(protocol.CauseStorage, err)
		a.giveUp(ctx, reqID, attempt, reply.Serial, err, true)
		return fmt.Errorf("device: renew: %w", err)
	}
	fresh, err := a.ks.Current()
	if err != nil {
		return a.rollback(ctx, reqID, attempt, old, reply.Serial,
			withCause(protocol.CauseStorage, fmt.Errorf("read back the installed pair: %w", err)))
	}
	a.pair.Store(&fresh)
	a.clk.AtLeast(fresh.Leaf().NotBefore)
	a.log.Info("certificate installed, reconnecting with it", "pair", fresh)
	return a.commit(ctx, reqID, attempt, old, fresh)
}

// request submits msg and waits for the reply. When the connection drops first, it
// reconnects with the current pair and resubmits the same request id (the hub answers a
// resubmission idempotently), at most maxRequestTries times in all.
func (a *Agent) request(ctx context.Context, msg *protocol.CSR) (*protocol.Cert, int, error) {
	for attempt := 1; ; attempt++ {
		msg.Time = a.clk.Read().Device
		rctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
		reply, err := a.sess.Request(rctx, msg)
		cancel()
		if err == nil {
			return reply, attempt, nil
		}
		if !errors.Is(err, hub.ErrConnectionLost) || attempt >= maxRequestTries || ctx.Err() != nil {
			return nil, attempt, noReply(ctx, err)
		}
		a.log.Info("connection lost while waiting for the certificate; resubmitting the same request", "request_id", msg.RequestID)
		a.detach()
		if err := sleep(ctx, backoff(attempt, a.reconnectMin(), a.cfg.ReconnectMax, a.cfg.Rand.Float64())); err != nil {
			return nil, attempt, err
		}
		// A hub that restarts is back within the request's timeout: wait for it.
		dctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
		err = a.reconnect(dctx)
		cancel()
		if err != nil {
			return nil, attempt, err
		}
	}
}

// reconnect opens a session presenting the current pair in the middle of a renewal, after
// the hub went away: a hub that cannot be reached is tried again, backing off, until ctx
// ends; a hub that refuses the connection (its CONNACK) ends it at once. A hub restarting
// is no reason to give up a request or a commit: it keeps both, and answers a resubmitted
// CSR or a repeated commit the same way (protocol/README.md, "Timeouts and failures").
func (a *Agent) reconnect(ctx context.Context) error {
	for n := 1; ; n++ {
		sess, err := a.dial(ctx)
		if err == nil {
			a.attach(sess)
			return nil
		}
		// A hub that answers and turns this session down (CONNECT refused, or a TLS alert, as
		// for a certificate it does not trust) is a refusal: roll back now. An address that
		// cannot be reached, or a connection that breaks (a hub restarting), is waited for.
		var refused *hub.RefusedError
		var dialErr *hub.DialError
		if errors.As(err, &refused) || (errors.As(err, &dialErr) && dialErr.Alert) || ctx.Err() != nil {
			return err
		}
		a.emit(Event{Kind: EventUnreachable, Err: err})
		a.log.Info("cannot reach the hub during a renewal; trying again", "err", err)
		if sleep(ctx, backoff(n, a.reconnectMin(), a.cfg.ReconnectMax, a.cfg.Rand.Float64())) != nil {
			return err
		}
	}
}

// commit is the second phase: reconnect with the new pair, commit, wait for the ack; roll
// back on any failure. The commit deadline (Config.AckTimeout) covers the whole phase: a hub
// that cannot be reached, or that drops the session before its ack (a restart), is waited
// for and sent the same commit again, which it answers the same way.
func (a *Agent) commit(ctx context.Context, reqID string, attempt int, old, fresh keystore.Pair) error {
	if a.sess != nil {
		a.sess.Drop()
		a.sess = nil
	}
	actx, cancel := context.WithTimeout(ctx, a.cfg.AckTimeout)
	defer cancel()
	msg := &protocol.Commit{V: protocol.Version, RequestID: reqID, Serial: fresh.Serial(), Outcome: protocol.OutcomeCommitted,
		Hook: a.hook, Attempt: attempt}
	var ack *protocol.Ack
	for {
		if a.sess == nil {
			if err := a.reconnect(actx); err != nil {
				var refused *hub.RefusedError
				var dialErr *hub.DialError
				if errors.As(err, &refused) || (errors.As(err, &dialErr) && dialErr.Alert) {
					err = withCause(protocol.CauseReconnectRefused, fmt.Errorf("reconnect with the new certificate refused: %w", err))
				} else {
					err = withCause(protocol.CauseCommitTimeout, fmt.Errorf("no session with the new certificate before the commit deadline: %w", err))
				}
				return a.rollback(ctx, reqID, attempt, old, fresh.Serial(), err)
			}
		}
		msg.Time = a.clk.Read().Device
		var err error
		ack, err = a.sess.Commit(actx, msg)
		if errors.Is(err, hub.ErrConnectionLost) && actx.Err() == nil {
			a.log.Info("connection lost while waiting for the commit's ack; committing again", "request_id", reqID)
			a.detach()
			continue
		}
		if err := checkAck(ctx, ack, err, fresh.Serial()); err != nil {
			return a.rollback(ctx, reqID, attempt, old, fresh.Serial(), err)
		}
		break
	}
	a.observe(ack.HubTime, false)
	a.lastAckHub = ack.HubTime
	a.hook = nil
	a.st.Pending, a.st.LastRenewal, a.st.LastError, a.st.LastCause, a.st.LastRequestID = nil, a.clk.Read().Now, "", "", ""
	a.saveState()
	a.info = nil
	a.healthDue = true
	a.emit(Event{Kind: EventRenewed, RequestID: reqID})
	a.log.Info("renewed", "serial", fresh.Serial(), "not_after", fresh.Leaf().NotAfter)
	a.runHook(ctx, fresh)
	return nil
}

// rollback goes back to the previous pair after an install, reconnects with it and reports
// the rolled-back commit (now, or on the next connection).
func (a *Agent) rollback(ctx context.Context, reqID string, attempt int, old keystore.Pair, failed string, cause error) error {
	a.log.Warn("renewal failed after install, rolling back", "request_id", reqID, "failed", failed, "err", cause)
	if a.sess != nil {
		a.sess.Drop()
		a.sess = nil
	}
	a.st.Pending = nil
	if err := a.ks.Rollback(); err != nil {
		// Only an enrollment has no previous pair: keep the new one and let the next
		// connection commit it again.
		a.log.Error("cannot roll back; keeping the new certificate", "err", err)
		a.emit(Event{Kind: EventRolledBack, RequestID: reqID, Err: cause})
		return fmt.Errorf("device: renew: %w (and rollback failed: %w)", cause, err)
	}
	a.pair.Store(&old)
	a.saveState()
	c := &protocol.Commit{
		V: protocol.Version, RequestID: reqID, Serial: old.Serial(), Outcome: protocol.OutcomeRolledBack,
		Detail: protocol.ClipText(cause.Error()), Failed: failed, Time: a.clk.Read().Device,
		Hook: a.hook, Attempt: attempt, Cause: causeOf(cause),
	}
	if sess, err := a.dial(ctx); err == nil {
		a.attach(sess)
		if err := a.sess.Report(ctx, c); err != nil {
			a.unsent = c
		}
	} else {
		a.unsent = c
		a.log.Warn("cannot reconnect with the previous certificate yet", "err", err)
	}
	a.emit(Event{Kind: EventRolledBack, RequestID: reqID, Err: cause})
	return fmt.Errorf("device: renew: rolled back to serial %s: %w", old.Serial(), cause)
}

// giveUp ends a renewal that failed before anything was installed and, when tell is set,
// tells the hub so that it can drop the pending certificate (failed, when there is one) or
// the request.
func (a *Agent) giveUp(ctx context.Context, reqID string, attempt int, failed string, cause error, tell bool) {
	a.st.Pending = nil
	a.saveState()
	a.emit(Event{Kind: EventRenewFailed, RequestID: reqID, Err: cause})
	if !tell || a.sess == nil {
		return
	}
	c := &protocol.Commit{
		V: protocol.Version, RequestID: reqID, Serial: a.current().Serial(), Outcome: protocol.OutcomeRolledBack,
		Detail: protocol.ClipText(cause.Error()), Failed: failed, Time: a.clk.Read().Device,
		Hook: a.hook, Attempt: attempt, Cause: causeOf(cause),
	}
	if err := a.sess.Report(ctx, c); err != nil {
		a.unsent = c
	}
}

// resume settles a renewal that a restart interrupted. If the pair it installed is in use
// (the session just opened with it), the commit is sent again; otherwise the request is
// given up — its key is gone — and the hub is told with a rolled_back report (now, or on
// the next connection), so that it ends the request at once instead of holding it in
// flight until its timeout. The next renewal starts afresh.
func (a *Agent) resume(ctx context.Context) {
	p := a.st.Pending
	cur := a.current()
	if p.Replaces == cur.Serial() {
		a.log.Info("giving up a renewal request interrupted before install", "request_id", p.RequestID)
		a.st.Pending = nil
		a.saveState()
		c := &protocol.Commit{
			V: protocol.Version, RequestID: p.RequestID, Serial: cur.Serial(), Outcome: protocol.OutcomeRolledBack,
			Detail: "the agent restarted before installing the certificate", Time: a.clk.Read().Device,
			Cause: protocol.CauseInterrupted,
		}
		if err := a.sess.Report(ctx, c); err != nil {
			a.unsent = c
		}
		err := withCause(protocol.CauseInterrupted, fmt.Errorf("device: renew: request %s: %s", p.RequestID, c.Detail))
		a.setLastError(p.RequestID, err)
		a.emit(Event{Kind: EventRenewFailed, RequestID: p.RequestID, Err: err})
		return
	}
	a.log.Info("committing a certificate installed before a restart", "request_id", p.RequestID, "serial", cur.Serial())
	actx, cancel := context.WithTimeout(ctx, a.cfg.AckTimeout)
	ack, err := a.sess.Commit(actx, &protocol.Commit{
		V: protocol.Version, RequestID: p.RequestID, Serial: cur.Serial(), Outcome: protocol.OutcomeCommitted,
		Time: a.clk.Read().Device, Hook: a.hook, Attempt: 1,
	})
	cancel()
	if err := checkAck(ctx, ack, err, cur.Serial()); err != nil {
		old, perr := a.ks.Previous()
		if perr != nil {
			// First certificate: nothing to go back to, retry next time. The request is not
			// over, so the error names none: the hub must keep it in flight.
			a.setLastError("", err)
			return
		}
		a.setLastError(p.RequestID, a.rollback(ctx, p.RequestID, 1, old, cur.Serial(), err))
		return
	}
	a.observe(ack.HubTime, false)
	a.lastAckHub = ack.HubTime
	a.hook = nil
	a.st.Pending, a.st.LastRenewal, a.st.LastError, a.st.LastCause, a.st.LastRequestID = nil, a.clk.Read().Now, "", "", ""
	a.saveState()
	a.emit(Event{Kind: EventRenewed, RequestID: p.RequestID})
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
