package device

import (
	"context"
	"crypto/x509"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/hub"
	"github.com/hearth-pki/hearth/protocol"
)

// observe records a hub time: live messages give the time, retained ones only a lower bound.
func (a *Agent) observe(t time.Time, retained bool) {
	if retained {
		a.clk.AtLeast(t)
	} else {
		a.clk.Observe(t)
	}
}

// handle acts on a push from the hub.
func (a *Agent) handle(ctx context.Context, in hub.Inbound) {
	switch {
	case in.Command != nil:
		a.command(ctx, in.Command, in.Retained)
	case in.Renewal != nil:
		a.observe(in.Renewal.HubTime, in.Retained)
		if in.Renewal.Serial != a.current().Serial() {
			a.log.Debug("ignoring a renewal window for another certificate", "serial", in.Renewal.Serial)
			return
		}
		if a.info == nil || a.info.WindowStart != in.Renewal.WindowStart || a.info.WindowEnd != in.Renewal.WindowEnd {
			a.info = in.Renewal
			a.healthDue = true
			p := a.plan(a.current())
			a.log.Info("renewal window from the hub", "start", in.Renewal.WindowStart, "end", in.Renewal.WindowEnd, "renew_at", p.At)
		}
	case in.CA != "":
		a.updateCA(in.CA)
	case in.CRL != "":
		a.updateCRL(in.CRL)
	}
}

// command acts on a hub command.
func (a *Agent) command(ctx context.Context, c *protocol.Command, retained bool) {
	a.observe(c.HubTime, retained)
	a.emit(Event{Kind: EventCommand, Detail: string(c.Action), RequestID: c.CommandID})
	switch {
	case c.CommandID == a.lastCommand:
		a.log.Debug("ignoring a repeated command", "command_id", c.CommandID)
		return
	case a.clk.Read().Known && a.clk.Read().Best().After(c.Deadline):
		a.log.Info("ignoring an expired command", "command_id", c.CommandID, "deadline", c.Deadline)
		return
	case c.Action != protocol.ActionReport && !a.lastAckHub.IsZero() && c.HubTime.Before(a.lastAckHub):
		a.log.Info("ignoring a renew command older than the last renewal", "command_id", c.CommandID)
		return
	}
	a.lastCommand = c.CommandID
	a.log.Info("command from the hub", "action", c.Action, "command_id", c.CommandID, "reason", c.Reason)
	switch c.Action {
	case protocol.ActionReport:
		a.healthDue = true
	case protocol.ActionRenew, protocol.ActionRekey:
		a.obey(ctx, c)
	}
}

// obey runs the renewal a command asks for. A refusal the hub says to retry (busy,
// rate_limited) keeps the command owed: work retries it after retry_after, until its
// deadline, instead of waiting for the window.
func (a *Agent) obey(ctx context.Context, c *protocol.Command) {
	a.owed = nil
	reason := protocol.ReasonCommand
	if c.Action == protocol.ActionRekey {
		reason = protocol.ReasonRekey
	}
	if err := a.attempt(ctx, reason, c.CommandID); err != nil && retryable(err) {
		a.owed = c
	}
}

// updateCA replaces the pinned CA chain with the hub's published one if it keeps the pinned
// root (an intermediate rotation). A different root is never accepted from the network.
func (a *Agent) updateCA(pemChain string) {
	chain, err := parseChain([]byte(pemChain))
	if err != nil {
		a.log.Warn("ignoring an unreadable CA message", "err", err)
		return
	}
	var root *x509.Certificate
	for _, c := range a.ca {
		if selfSigned(c) {
			root = c
		}
	}
	var next []*x509.Certificate
	keepsRoot := false
	for _, c := range chain {
		switch {
		case root != nil && c.Equal(root):
			keepsRoot = true
		case selfSigned(c) || !c.IsCA:
			a.log.Warn("ignoring a CA message with a foreign root or a non-CA certificate", "subject", c.Subject.CommonName)
			return
		default:
			at := verifyAt(a.clk.Read(), c)
			if _, err := verifyChain([]*x509.Certificate{c}, []*x509.Certificate{root}, at, x509.ExtKeyUsageAny, ""); err != nil {
				a.log.Warn("ignoring a CA message whose intermediate does not verify against the pinned root", "err", err)
				return
			}
			next = append(next, c)
		}
	}
	if !keepsRoot {
		a.log.Warn("the hub publishes a CA chain without the pinned root; keeping the pinned CA")
		return
	}
	next = append(next, root)
	if sameChain(next, a.ca) {
		return
	}
	if err := a.ks.WriteCA(next); err != nil {
		a.log.Error("cannot pin the updated CA chain", "err", err)
		return
	}
	a.ca = next
	a.emit(Event{Kind: EventCAUpdated})
	a.log.Info("pinned CA chain updated from the hub", "certificates", len(next))
}

func sameChain(x, y []*x509.Certificate) bool {
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		if !x[i].Equal(y[i]) {
			return false
		}
	}
	return true
}
