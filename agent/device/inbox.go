package device

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/clock"
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

// updateCA replaces the pinned CA chain with the hub's published one when acceptCA takes it:
// an intermediate rotation under a pinned root, or a root rotation whose new root the pinned
// root cross-signed. Anything else is logged and changes nothing.
func (a *Agent) updateCA(pemChain string) {
	chain, err := parseChain([]byte(pemChain))
	if err != nil {
		a.log.Warn("ignoring an unreadable CA message", "err", err)
		return
	}
	next, err := acceptCA(chain, a.ca, a.clk.Read())
	if err != nil {
		a.log.Warn("ignoring a CA message", "err", err)
		return
	}
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

// acceptCA returns what to pin from a CA message (intermediates first, roots last), given the
// pinned chain, with the device's clock reading r. A root of the message is taken when it is pinned already, or when
// the message carries a cross-certificate for it — its subject and key, signed by a pinned
// root, valid then (a root rotation, issue 12): a new root is never trusted from the network
// otherwise, and a message with any root that is neither is refused whole. At least one root
// must be taken, and every intermediate must chain to a root taken.
func acceptCA(msg, pinned []*x509.Certificate, r clock.Reading) ([]*x509.Certificate, error) {
	var roots, inters []*x509.Certificate
	for _, c := range msg {
		switch {
		case !c.IsCA:
			return nil, fmt.Errorf("%q is not a CA certificate", c.Subject.CommonName)
		case selfSigned(c):
			roots = append(roots, c)
		default:
			inters = append(inters, c)
		}
	}
	var taken []*x509.Certificate
	for _, root := range roots {
		if !slices.ContainsFunc(pinned, root.Equal) && !crossSigned(root, inters, pinned, r) {
			return nil, fmt.Errorf("root %q is neither pinned nor cross-signed by the pinned root", root.Subject.CommonName)
		}
		taken = append(taken, root)
	}
	if len(taken) == 0 {
		return nil, errors.New("the chain holds no pinned root")
	}
	// Intermediates chain to a root taken, or (a cross-certificate) to a pinned one.
	anchors := append(slices.Clone(taken), pinned...)
	for _, c := range inters {
		if _, err := verifyChain([]*x509.Certificate{c}, anchors, verifyAt(r, c), x509.ExtKeyUsageAny, ""); err != nil {
			return nil, fmt.Errorf("intermediate %q does not verify against the pinned roots: %w", c.Subject.CommonName, err)
		}
	}
	return append(inters, taken...), nil
}

// crossSigned reports whether one of certs certifies root's subject and key under a pinned
// root, valid by the clock reading r.
func crossSigned(root *x509.Certificate, certs, pinned []*x509.Certificate, r clock.Reading) bool {
	for _, x := range certs {
		at := verifyAt(r, x)
		if !bytes.Equal(x.RawSubject, root.RawSubject) || !bytes.Equal(x.RawSubjectPublicKeyInfo, root.RawSubjectPublicKeyInfo) ||
			at.Before(x.NotBefore) || at.After(x.NotAfter) {
			continue
		}
		for _, p := range pinned {
			if selfSigned(p) && x.CheckSignatureFrom(p) == nil {
				return true
			}
		}
	}
	return false
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
