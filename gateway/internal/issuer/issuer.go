// Package issuer is the hub's one issuance pipeline and its MQTT front end.
//
// Issue (issue.go) takes a certificate request from any front end — the requester's
// device id, authority (a device certificate, an enrollment token, an administrator) and
// CSR — and runs validate → replay → parse → identity → key → authorise → policy → rate
// limit → sign → record, refusing with a *Refusal that carries the wire code. HandleCSR is
// the MQTT front end of Issue (admin's device/sign is another); HandleCommit checks a
// commit's TLS session, activates and acknowledges. The package knows no MQTT: replies
// leave through a Publisher, and the broker hands requests in with the sender's identity.
//
// Invariants:
//   - A certificate is recorded in the inventory (pending) before its reply is published, so
//     no certificate a device received is missing from the inventory, whatever the crash.
//   - A request id is answered idempotently: a resubmitted request gets the same certificate.
//   - One request is in flight per device; another request id gets "busy".
//   - Only the CSR's public key is used; its extensions and subject are never copied.
//   - The same CSR is refused with the same code whatever the front end, and one rate
//     limit (Config.Rate) covers them all.
//
// An Issuer is safe for concurrent use.
package issuer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/gateway/internal/rate"
	"github.com/hearth-pki/hearth/protocol"
)

// Publisher sends a payload to a topic of the hub's broker (QoS 1).
type Publisher interface {
	Publish(topic string, payload []byte, retain bool) error
}

// Sender is who sent a request, as the broker authenticated the session.
type Sender struct {
	DeviceID string
	// Serial is the certificate presented on this TLS session; "" for an enrolling session.
	Serial string
	// TokenHash is the enrollment token the session logged in with; "" for a device.
	TokenHash string
}

// Enrolling reports whether the sender logged in with a token rather than a certificate.
func (s Sender) Enrolling() bool { return s.Serial == "" }

// Config holds the issuer's collaborators and limits.
type Config struct {
	CA     *ca.CA
	Store  *inventory.Store
	Policy func() *policy.Policy // the policy in force; called per request. Default policy.Default.
	// Pub and Topics are where HandleCSR and HandleCommit reply; Issue needs neither.
	Pub    Publisher
	Topics protocol.Topics
	// Now is the hub clock. Default time.Now.
	Now func() time.Time
	// Rate and Burst cap issuance across all devices and every front end of Issue (per
	// second). Default 500/s, burst 1000.
	Rate  float64
	Burst int
	// Notify, if set, receives every event worth showing (bridge/event, dashboards).
	Notify func(protocol.Event)
	Logger *slog.Logger
}

// Issuer signs certificates for devices and activates them on commit.
type Issuer struct {
	cfg      Config
	limiter  *rate.Limiter
	mu       sync.Mutex
	inflight map[string]string // device id → request id
}

// New returns an Issuer. It starts nothing.
func New(cfg Config) *Issuer {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Policy == nil {
		cfg.Policy = policy.Default
	}
	if cfg.Rate == 0 {
		cfg.Rate, cfg.Burst = 500, 1000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Notify == nil {
		cfg.Notify = func(protocol.Event) {}
	}
	return &Issuer{cfg: cfg, limiter: rate.New(cfg.Rate, cfg.Burst), inflight: map[string]string{}}
}

// HandleCSR answers a CSR from sender on its csr topic: the MQTT front end of Issue. It
// always publishes a reply on the device's cert topic, except for a payload so broken that
// it names no request id.
func (i *Issuer) HandleCSR(ctx context.Context, from Sender, payload []byte) {
	now := i.cfg.Now().UTC()
	var req protocol.CSR
	if err := protocol.Decode(payload, &req); err != nil {
		i.replyError(from.DeviceID, requestIDOf(payload), refuseErr(protocol.CodeFor(err), err), now)
		return
	}
	if !i.begin(from.DeviceID, req.RequestID) {
		i.replyError(from.DeviceID, req.RequestID, &Refusal{Code: protocol.CodeBusy,
			Reason: "another request of this device is in flight", RetryAfter: 5 * time.Second}, now)
		return
	}
	defer i.end(from.DeviceID)

	res, err := i.Issue(ctx, requestOf(from, &req))
	var reply *protocol.Cert
	if err == nil {
		reply, err = i.certReply(ctx, req.RequestID, res.Cert, now)
	}
	if err != nil {
		var r *Refusal
		if !errors.As(err, &r) {
			i.cfg.Logger.Error("issuance failed", "device", from.DeviceID, "request", req.RequestID, "err", err)
			r = &Refusal{Code: protocol.CodeInternal, Reason: "the hub could not issue; nothing was issued", RetryAfter: time.Minute}
		}
		i.recordFailure(ctx, from.DeviceID, &req, r, now)
		i.replyError(from.DeviceID, req.RequestID, r, now)
		return
	}
	i.publish(i.cfg.Topics.Device(from.DeviceID, protocol.KindCert), reply, false)
}

// requestOf is the pipeline request of a CSR sent by from: a session with a certificate
// renews on that authority, an enrolling session on its token.
func requestOf(from Sender, m *protocol.CSR) Request {
	r := Request{DeviceID: from.DeviceID, RequestID: m.RequestID, CSR: m.CSR, Reason: m.Reason, Replaces: m.Replaces,
		Auth: AuthCertificate}
	if from.Enrolling() {
		r.Auth, r.TokenHash = AuthToken, from.TokenHash
	}
	return r
}

// certReply builds the reply carrying c's chain and its renewal window.
func (i *Issuer) certReply(ctx context.Context, requestID string, c inventory.Certificate, now time.Time) (*protocol.Cert, error) {
	info, err := i.RenewalInfo(ctx, c, now)
	if err != nil {
		return nil, err
	}
	return &protocol.Cert{V: protocol.Version, RequestID: requestID, Chain: i.chain(c), Serial: c.Serial, Renewal: info, HubTime: now}, nil
}

// RenewalInfo computes the suggested renewal window of certificate c under the policy in force.
func (i *Issuer) RenewalInfo(ctx context.Context, c inventory.Certificate, now time.Time) (*protocol.RenewalInfo, error) {
	dev, err := i.cfg.Store.Device(ctx, c.DeviceID)
	if err != nil && !errors.Is(err, inventory.ErrNotFound) {
		return nil, fmt.Errorf("look up device: %w", err)
	}
	w := i.cfg.Policy().Window(policy.Subject{DeviceID: c.DeviceID, Family: dev.Family, Tags: dev.Tags},
		policy.CertInfo{Serial: c.Serial, NotBefore: c.NotBefore, NotAfter: c.NotAfter}, now)
	end := w.End
	if end.Before(w.Start) {
		end = w.Start
	}
	return &protocol.RenewalInfo{V: protocol.Version, Serial: c.Serial, WindowStart: w.Start, WindowEnd: end,
		RetryAfter: 6 * 3600, Explanation: w.Reason, HubTime: now}, nil
}

// HandleCommit answers a commit: when the session really presents the committed serial, that
// certificate becomes active and the previous one superseded. The answer goes to the ack topic.
func (i *Issuer) HandleCommit(ctx context.Context, from Sender, payload []byte) {
	now := i.cfg.Now().UTC()
	var c protocol.Commit
	if err := protocol.Decode(payload, &c); err != nil {
		i.ackError(from.DeviceID, requestIDOf(payload), refuseErr(protocol.CodeFor(err), err), now)
		return
	}
	store := i.cfg.Store
	att, err := store.Attempt(ctx, from.DeviceID, c.RequestID)
	if err != nil {
		i.ackError(from.DeviceID, c.RequestID, refuse(protocol.CodeUnknownRequest, "request %s of %s is not known", c.RequestID, from.DeviceID), now)
		return
	}
	if c.Outcome == protocol.OutcomeRolledBack {
		if err := store.FinishAttempt(ctx, from.DeviceID, c.RequestID, inventory.OutcomeRolledBack, "rolled_back", now); err != nil {
			i.cfg.Logger.Error("record rollback", "device", from.DeviceID, "err", err)
		}
		i.cfg.Notify(protocol.Event{V: protocol.Version, Type: "renewal.rolled_back", Time: now, DeviceID: from.DeviceID,
			Message: fmt.Sprintf("agent rolled back to %s: %s", c.Serial, c.Detail),
			Data:    map[string]string{"serial": c.Serial, "failed": c.Failed, "request_id": c.RequestID}})
		i.publishAck(from.DeviceID, &protocol.Ack{V: protocol.Version, RequestID: c.RequestID, Serial: c.Serial, HubTime: now})
		return
	}
	if c.Serial != att.Serial {
		i.ackError(from.DeviceID, c.RequestID, refuse(protocol.CodeUnknownRequest, "request %s issued %s, not %s", c.RequestID, att.Serial, c.Serial), now)
		return
	}
	if from.Serial != c.Serial {
		i.ackError(from.DeviceID, c.RequestID, &Refusal{Code: protocol.CodeNotPresented,
			Reason: fmt.Sprintf("the TLS session presents serial %s, not %s", orNone(from.Serial), c.Serial), RetryAfter: 5 * time.Second}, now)
		return
	}
	prev, changed, err := store.Activate(ctx, from.DeviceID, c.Serial, now)
	if errors.Is(err, inventory.ErrRevoked) {
		i.ackError(from.DeviceID, c.RequestID, refuse(protocol.CodeRevoked, "certificate %s is revoked", c.Serial), now)
		return
	}
	if err != nil {
		i.cfg.Logger.Error("activate", "device", from.DeviceID, "serial", c.Serial, "err", err)
		i.ackError(from.DeviceID, c.RequestID, &Refusal{Code: protocol.CodeInternal, Reason: "the hub could not record the commit", RetryAfter: time.Minute}, now)
		return
	}
	if err := store.FinishAttempt(ctx, from.DeviceID, c.RequestID, inventory.OutcomeCommitted, "", now); err != nil {
		i.cfg.Logger.Error("finish attempt", "device", from.DeviceID, "err", err)
	}
	if changed {
		i.cfg.Notify(protocol.Event{V: protocol.Version, Type: inventory.EventCertActivated, Time: now, DeviceID: from.DeviceID,
			Message: fmt.Sprintf("certificate %s is active%s", c.Serial, supersededText(prev)),
			Data:    map[string]string{"serial": c.Serial, "previous": prev}})
	}
	i.publishAck(from.DeviceID, &protocol.Ack{V: protocol.Version, RequestID: c.RequestID, Serial: c.Serial, HubTime: now})
	if cert, err := store.Certificate(ctx, c.Serial); err == nil {
		i.PublishRenewal(ctx, cert, now)
	}
}

// PublishRenewal publishes the retained renewal window of the device's certificate c.
func (i *Issuer) PublishRenewal(ctx context.Context, c inventory.Certificate, now time.Time) {
	info, err := i.RenewalInfo(ctx, c, now)
	if err != nil {
		i.cfg.Logger.Error("renewal info", "device", c.DeviceID, "err", err)
		return
	}
	i.publish(i.cfg.Topics.Device(c.DeviceID, protocol.KindRenewal), info, true)
}

func (i *Issuer) begin(device, request string) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	if cur, busy := i.inflight[device]; busy && cur != request {
		return false
	}
	i.inflight[device] = request
	return true
}

func (i *Issuer) end(device string) {
	i.mu.Lock()
	delete(i.inflight, device)
	i.mu.Unlock()
}

// recordFailure records a refused CSR as a failed attempt of a known device, for the
// dashboard and the renewal scheduler's backoff.
func (i *Issuer) recordFailure(ctx context.Context, device string, req *protocol.CSR, r *Refusal, now time.Time) {
	if r.Code == protocol.CodeBusy {
		return
	}
	if _, err := i.cfg.Store.Device(ctx, device); err != nil {
		return // an unknown device leaves no trace but the log: nothing to attach it to
	}
	err := i.cfg.Store.RecordFailedAttempt(ctx, inventory.Attempt{RequestID: req.RequestID, DeviceID: device,
		Reason: string(req.Reason), StartedAt: now, FinishedAt: i.cfg.Now().UTC(), Outcome: inventory.OutcomeFailed,
		ErrorCode: string(r.Code), Latency: i.cfg.Now().Sub(now)})
	if err != nil {
		i.cfg.Logger.Warn("record failed attempt", "device", device, "err", err)
	}
}

func (i *Issuer) replyError(device, requestID string, r *Refusal, now time.Time) {
	i.cfg.Logger.Info("csr refused", "device", device, "request", requestID, "code", r.Code, "reason", r.Reason)
	i.publish(i.cfg.Topics.Device(device, protocol.KindCert), &protocol.Cert{V: protocol.Version, RequestID: requestID,
		HubTime: now, Error: wireError(r)}, false)
}

func (i *Issuer) ackError(device, requestID string, r *Refusal, now time.Time) {
	i.cfg.Logger.Info("commit refused", "device", device, "request", requestID, "code", r.Code, "reason", r.Reason)
	i.publishAck(device, &protocol.Ack{V: protocol.Version, RequestID: requestID, HubTime: now, Error: wireError(r)})
}

func (i *Issuer) publishAck(device string, a *protocol.Ack) {
	i.publish(i.cfg.Topics.Device(device, protocol.KindAck), a, false)
}

func (i *Issuer) publish(topic string, m protocol.Message, retain bool) {
	b, err := protocol.Encode(m)
	if err != nil {
		i.cfg.Logger.Error("encode reply", "topic", topic, "err", err)
		return
	}
	if err := i.cfg.Pub.Publish(topic, b, retain); err != nil {
		i.cfg.Logger.Error("publish reply", "topic", topic, "err", err)
	}
}

// wireError is r as the error object of a reply.
func wireError(r *Refusal) *protocol.Error {
	e := &protocol.Error{Code: r.Code, Message: truncate(r.Reason, protocol.MaxTextLen)}
	if r.RetryAfter > 0 {
		e.RetryAfter = int((r.RetryAfter + time.Second - 1) / time.Second)
	} else if info, _ := r.Code.Info(); info.Retry {
		e.RetryAfter = info.RetryAfter
	}
	return e
}

// requestIDOf digs the request id out of a payload that failed to decode, so the error reply
// can be correlated; "unknown" when there is none worth echoing.
func requestIDOf(payload []byte) string {
	var v struct {
		RequestID string `json:"request_id"`
	}
	if len(payload) <= protocol.MaxMessageSize && json.Unmarshal(payload, &v) == nil && protocol.ValidateRequestID(v.RequestID) == nil {
		return v.RequestID
	}
	return "unknown"
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func supersededText(prev string) string {
	if prev == "" {
		return ""
	}
	return "; " + prev + " superseded"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
