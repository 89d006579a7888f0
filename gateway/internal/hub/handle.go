package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/broker"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/issuer"
	"github.com/hearth-pki/hearth/gateway/internal/lifecycle"
	"github.com/hearth-pki/hearth/protocol"
)

// handle receives every message the broker accepted on a hub-bound topic. Certificate
// requests and commits go to the device state machine, which applies them in order with the
// device's session events. The hub reads and writes protocol messages with encoding/json
// (protocol.DecodeWith, EncodeWith): the same bytes as the agent's codec, in less time.
func (h *Hub) handle(ctx context.Context, from broker.Identity, t protocol.Topic, payload []byte) {
	switch t.Kind {
	case protocol.KindCSR:
		s := issuer.Sender{DeviceID: from.DeviceID, Serial: from.Serial, Expired: from.Expired}
		if from.Role == broker.RoleEnrolling {
			s.Serial, s.TokenHash = "", h.checker.TokenHash(from.DeviceID)
		}
		req, ok := h.issuer.Decode(s, payload)
		if !ok {
			return
		}
		h.machine.CSR(from.DeviceID, lifecycle.Conn(from.Conn), req, func(ctx context.Context) (string, bool) {
			return h.issuer.Answer(ctx, s, req)
		})
	case protocol.KindCommit:
		var c protocol.Commit
		if err := protocol.DecodeWith(payload, &c, json.Unmarshal); err != nil {
			h.log.Info("commit refused", "device", from.DeviceID, "err", err)
			ack := protocol.Ack{V: protocol.Version, RequestID: "unknown", HubTime: h.now().UTC(),
				Error: &protocol.Error{Code: protocol.CodeFor(err), Message: protocol.ClipText(err.Error())}}
			if protocol.ValidateRequestID(c.RequestID) == nil {
				ack.RequestID = c.RequestID
			}
			if b, err := protocol.EncodeWith(&ack, json.Marshal); err == nil {
				h.publish(h.topics.Device(from.DeviceID, protocol.KindAck), b, false)
			}
			return
		}
		h.machine.Commit(from.DeviceID, lifecycle.Conn(from.Conn), from.Serial, &c)
	case protocol.KindHealth:
		h.health(from, payload)
	case protocol.KindBridgeRequest:
		resp := protocol.BridgeResponse{Status: "error", Code: protocol.CodeInternal, Error: "the hub could not look up the sender's role"}
		if p, err := h.bridgePrincipal(ctx, from.Username); err != nil {
			h.log.Error("bridge request: look up the sender", "user", from.Username, "err", err)
		} else {
			resp = h.admin.DoAs(ctx, p, t.Op, payload)
		}
		b, err := json.Marshal(resp)
		if err == nil {
			h.publish(h.topics.BridgeResponse(t.Op), b, false)
		}
	}
}

// sessions hands the broker's session events to the device state machine.
type sessions struct{ h *Hub }

func (s sessions) SessionUp(id broker.Identity) {
	s.h.machine.SessionUp(id.DeviceID, lifecycle.Conn(id.Conn), id.Serial)
}

func (s sessions) Subscribed(id broker.Identity) {
	s.h.machine.Subscribed(id.DeviceID, lifecycle.Conn(id.Conn))
}

func (s sessions) SessionDown(id broker.Identity) {
	s.h.machine.SessionDown(id.DeviceID, lifecycle.Conn(id.Conn))
}

// committed follows a commit the state machine recorded: the bridge hears of it, the
// renewal scheduler returns the device to idle, and the new window is published.
func (h *Hub) committed(c lifecycle.Committed) {
	msg := fmt.Sprintf("certificate %s is active", c.Serial)
	if c.Previous != "" {
		msg += "; " + c.Previous + " superseded"
	}
	h.notify(protocol.Event{V: protocol.Version, Type: protocol.EventCertActivated, Time: c.At, DeviceID: c.DeviceID,
		Message: msg, Data: map[string]string{"serial": c.Serial, "previous": c.Previous, "request_id": c.RequestID}})
	h.renewal.Committed(c.DeviceID)
	h.observeCommit(c)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if cert, err := h.store.Certificate(ctx, c.Serial); err == nil {
		h.issuer.PublishRenewal(ctx, cert, c.At)
	}
	h.admin.Committed(ctx, c.DeviceID, c.Previous) // a compromised family's old key dies now
	h.rotation.Committed(ctx, c.Previous)          // a rotation's devices remaining, without a count
}

// ended follows a request that ended without a commit, or a rollback after one.
func (h *Hub) ended(e lifecycle.Ended) {
	if e.Outcome == lifecycle.OutcomeFailed {
		// A failure the agent reported after the fact: counted and watched like the others;
		// the scheduler hears of it for a device it commanded.
		h.renewal.Failed(e.DeviceID, e.Cause, e.Failure)
		h.observeEnd(e)
		return
	}
	kind, msg := protocol.EventRenewalRolledBack, ""
	switch {
	case e.AfterCommit:
		msg = fmt.Sprintf("device went back to its previous certificate %s; %s recorded as rolled back", e.Current, e.Serial)
	case e.Outcome == lifecycle.OutcomeExpired:
		kind, msg = protocol.EventRenewalExpired, fmt.Sprintf("request %s ended: %s", e.RequestID, e.Cause)
	default:
		msg = fmt.Sprintf("agent rolled back request %s and stays on %s", e.RequestID, e.Current)
	}
	h.notify(protocol.Event{V: protocol.Version, Type: kind, Time: e.At, DeviceID: e.DeviceID, Message: msg,
		Data: map[string]string{"serial": e.Current, "failed": e.Serial, "request_id": e.RequestID, "cause": string(e.Failure)}})
	h.renewal.Failed(e.DeviceID, string(e.Outcome), e.Failure)
	h.observeEnd(e)
	if e.Serial != "" {
		h.crl.Changed() // abandoned, or revoked as superseded after a rollback: on the CRL
	}
	if e.AfterCommit {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if cert, err := h.store.Certificate(ctx, e.Current); err == nil {
			h.issuer.PublishRenewal(ctx, cert, e.At)
		}
	}
}

// finding publishes what the state machine found wrong with a device; a certificate on two
// connections at once is recorded in the audit log too.
func (h *Hub) finding(f lifecycle.Finding) {
	var kind protocol.EventType
	var msg string
	switch f.Kind {
	case lifecycle.FindingDuplicateSession:
		kind = protocol.EventFindingDuplicateSession
		msg = fmt.Sprintf("certificate %s is presented on %d connections at once: a cloned device or a leaked key", f.Serial, f.Count)
	case lifecycle.FindingUnexpectedSerial:
		kind = protocol.EventFindingUnexpectedSerial
		msg = fmt.Sprintf("device reports serial %s, the active certificate is %s", f.Serial, f.Detail)
	case lifecycle.FindingUnexpectedIssuer:
		h.observeIssuer(f)
		kind = protocol.EventFindingUnexpectedIssuer
		msg = fmt.Sprintf("device reports issuer %q, not the hub's intermediate", f.Detail)
	default:
		return
	}
	h.notify(protocol.Event{V: protocol.Version, Type: kind, Time: f.At, DeviceID: f.DeviceID, Message: msg,
		Data: map[string]string{"serial": f.Serial}})
	if f.Kind != lifecycle.FindingDuplicateSession {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := h.store.AppendEvent(ctx, inventory.Event{Time: f.At, Kind: kind, DeviceID: f.DeviceID,
		Message: fmt.Sprintf("certificate %s on %d connections at once", f.Serial, f.Count), Data: map[string]string{"serial": f.Serial}}); err != nil {
		h.log.Warn("record finding", "err", err)
	}
}

// health hands a health report to the device state machine, which records it and raises a
// finding when it contradicts the inventory.
func (h *Hub) health(from broker.Identity, payload []byte) {
	var r protocol.Health
	if err := protocol.DecodeWith(payload, &r, json.Unmarshal); err != nil {
		h.log.Info("health report refused", "device", from.DeviceID, "err", err)
		return
	}
	skew := r.DeviceTime.Sub(h.now()).Round(time.Second)
	if r.DeviceTime.IsZero() {
		skew = 0
	}
	h.machine.Health(from.DeviceID, lifecycle.Conn(from.Conn), r.Issuer, inventory.Health{ReportedSerial: r.Serial,
		ReportedNotAfter: r.NotAfter, ChainOK: r.ChainOK, ClockSkew: skew, AgentVersion: r.AgentVersion, LastError: r.LastError,
		Manufacturer: r.Manufacturer, Model: r.Model, Arch: r.Arch},
		lifecycle.ReportedFailure{RequestID: r.LastRequestID, Cause: r.LastCause, Detail: r.LastError})
}

// notify publishes an event on bridge/event.
func (h *Hub) notify(e protocol.Event) {
	h.observeEvent(e)
	b, err := protocol.EncodeWith(&e, json.Marshal)
	if err != nil {
		h.log.Error("encode event", "err", err)
		return
	}
	h.publish(h.topics.Bridge(protocol.KindBridgeEvent), b, false)
}

func (h *Hub) publish(topic string, payload []byte, retain bool) {
	if err := h.broker.Publish(topic, payload, retain); err != nil {
		h.log.Warn("publish", "topic", topic, "err", err)
	}
}

// publishStatic publishes the retained hub topics that change only with the hub: state, info
// (again after a change of the CA, caChanged) and the CA chain. (The CRL publisher publishes the CRL.)
func (h *Hub) publishStatic(ctx context.Context) {
	h.publish(h.topics.Bridge(protocol.KindBridgeState), []byte(protocol.Online), true)
	h.publishInfo()
	h.publish(h.topics.CA(), h.ca.ChainPEM(), true)
}

// regenerateCRL publishes a new CRL at once, after an administrator's revocation.
func (h *Hub) regenerateCRL(ctx context.Context) {
	if _, err := h.crl.Regenerate(ctx); err != nil {
		h.log.Error("regenerate the CRL", "err", err)
		h.crl.Changed() // the publisher retries
	}
}

// pruneLoop prunes the inventory at start and daily. (The fleet's topics are the fleet
// view's, the CRL the CRL publisher's.)
func (h *Hub) pruneLoop(ctx context.Context) error {
	h.prune(ctx)
	daily := time.NewTicker(24 * time.Hour)
	defer daily.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-daily.C:
			h.prune(ctx)
		}
	}
}

// prune deletes what the retention no longer keeps.
func (h *Hub) prune(ctx context.Context) {
	n, err := h.store.Prune(ctx, h.now().Add(-h.cfg.Retention))
	if err != nil {
		h.log.Warn("prune the inventory", "err", err)
		return
	}
	if n.Attempts > 0 || n.Certificates > 0 {
		h.log.Info("inventory pruned", "attempts", n.Attempts, "certificates", n.Certificates, "retention", h.cfg.Retention)
	}
}
