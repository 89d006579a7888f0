// Package issuer is the hub's one issuance pipeline and its MQTT front end.
//
// Issue (issue.go) takes a certificate request from any front end — the requester's
// device id, authority (a device certificate, an enrollment token, an administrator) and
// CSR — and runs validate → replay → parse → identity → key → authorise → policy → quota →
// rate limit → sign → record, refusing with a *Refusal that carries the wire code. Decode and
// Answer are the MQTT front end of Issue (admin's device/sign is another). Which request may
// run at all (one in flight per device, until it is committed or times out) is the device
// state machine's decision (gateway/internal/lifecycle), which calls Answer on the device's
// ordered path; commits are the state machine's too. The package knows no MQTT: replies
// leave through a Publisher, and the hub hands requests in with the sender's identity.
//
// Invariants:
//   - A certificate is recorded in the inventory (pending) before its reply is published, so
//     no certificate a device received is missing from the inventory, whatever the crash.
//   - A request id is answered idempotently: a resubmitted request gets the same certificate.
//   - One request is in flight per device; another request id gets "busy".
//   - Only the CSR's public key is used; its extensions and subject are never copied.
//   - The same CSR is refused with the same code whatever the front end, and one rate
//     limit (Config.Rate) covers them all, as does the per-device quota
//     (Config.QuotaPerHour, quota_exceeded).
//
// An Issuer is safe for concurrent use.
package issuer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
	// Expired marks a recovery session: its certificate Serial had expired at CONNECT.
	Expired bool
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
	// QuotaPerHour caps the certificates one device gets, whoever asks and through whichever
	// front end: QuotaPerHour at once, then one every hour/QuotaPerHour (a bucket per device,
	// forgotten once full). Default DefaultQuotaPerHour; negative: no quota.
	QuotaPerHour int
	// Notify, if set, receives every event worth showing (bridge/event, dashboards).
	Notify func(protocol.Event)
	// Refused, if set, hears of every CSR Answer refused, with the time the refusal took:
	// the metrics and the alerts count refusals by cause.
	Refused func(device string, req *protocol.CSR, code protocol.Code, reason string, took time.Duration)
	Logger  *slog.Logger
}

// DefaultQuotaPerHour is the certificates a device may get per hour by default: an
// enrollment, a few renewals and their retries, far below what a device in a loop asks for.
const DefaultQuotaPerHour = 12

// Issuer signs certificates for devices.
type Issuer struct {
	cfg     Config
	limiter *rate.Limiter
	quota   *rate.Keyed // certificates per device; nil: no quota
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
	if cfg.QuotaPerHour == 0 {
		cfg.QuotaPerHour = DefaultQuotaPerHour
	}
	var quota *rate.Keyed
	if cfg.QuotaPerHour > 0 {
		quota = rate.NewKeyed(float64(cfg.QuotaPerHour)/3600, cfg.QuotaPerHour, 0)
	}
	return &Issuer{cfg: cfg, limiter: rate.New(cfg.Rate, cfg.Burst), quota: quota}
}

// Decode decodes a CSR from sender on its csr topic. A payload that does not decode is
// answered on the device's cert topic at once (unless it names no request id worth
// echoing), and Decode returns false.
func (i *Issuer) Decode(from Sender, payload []byte) (*protocol.CSR, bool) {
	var req protocol.CSR
	if err := protocol.DecodeWith(payload, &req, json.Unmarshal); err != nil {
		i.replyError(from.DeviceID, requestIDOf(payload), refuseErr(protocol.CodeFor(err), err), i.cfg.Now().UTC())
		return nil, false
	}
	return &req, true
}

// Answer runs a decoded CSR from sender through Issue and always publishes a reply on the
// device's cert topic. It returns the serial of the certificate the reply carries (recorded
// pending, or recorded before for a resubmission), or ok false when it refused the request.
func (i *Issuer) Answer(ctx context.Context, from Sender, req *protocol.CSR) (serial string, ok bool) {
	now := i.cfg.Now().UTC()
	res, err := i.Issue(ctx, requestOf(from, req))
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
		i.recordFailure(ctx, from.DeviceID, req, r, now)
		i.replyError(from.DeviceID, req.RequestID, r, now)
		if i.cfg.Refused != nil {
			i.cfg.Refused(from.DeviceID, req, r.Code, r.Reason, i.cfg.Now().Sub(now))
		}
		return "", false
	}
	i.publish(i.cfg.Topics.Device(from.DeviceID, protocol.KindCert), reply, false)
	return reply.Serial, true
}

// HandleCSR decodes and answers a CSR: Decode, then Answer. It bypasses the state machine's
// single flight; the pipeline's own tests use it.
func (i *Issuer) HandleCSR(ctx context.Context, from Sender, payload []byte) {
	if req, ok := i.Decode(from, payload); ok {
		i.Answer(ctx, from, req)
	}
}

// requestOf is the pipeline request of a CSR sent by from: a session with a certificate
// renews on that authority, an enrolling session on its token.
func requestOf(from Sender, m *protocol.CSR) Request {
	r := Request{DeviceID: from.DeviceID, RequestID: m.RequestID, CSR: m.CSR, Reason: m.Reason, Replaces: m.Replaces,
		Auth: AuthCertificate}
	if from.Enrolling() {
		r.Auth, r.TokenHash = AuthToken, from.TokenHash
	}
	if from.Expired {
		r.Recovering = from.Serial
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
	dev, err := i.cfg.Store.Subject(ctx, c.DeviceID)
	if err != nil && !errors.Is(err, inventory.ErrNotFound) {
		return nil, fmt.Errorf("look up device: %w", err)
	}
	w := i.cfg.Policy().Window(policy.Subject{DeviceID: c.DeviceID, Family: dev.Family, Tags: dev.Tags},
		policy.CertInfo{Serial: c.Serial, NotBefore: c.NotBefore, NotAfter: c.NotAfter}, now)
	return renewalInfo(c, w, now), nil
}

// renewalInfo is the retained renewal message of certificate c with window w.
func renewalInfo(c inventory.Certificate, w policy.Window, now time.Time) *protocol.RenewalInfo {
	end := w.End
	if end.Before(w.Start) {
		end = w.Start
	}
	return &protocol.RenewalInfo{V: protocol.Version, Serial: c.Serial, WindowStart: w.Start, WindowEnd: end,
		RetryAfter: 6 * 3600, Explanation: w.Reason, HubTime: now}
}

// PublishWindow publishes the retained renewal window w of the device's certificate c, as
// PublishRenewal does, for a caller that computed the window already (the renewal
// scheduler, which would otherwise cost a device query per window it publishes).
func (i *Issuer) PublishWindow(_ context.Context, c inventory.Certificate, w policy.Window, now time.Time) {
	i.publish(i.cfg.Topics.Device(c.DeviceID, protocol.KindRenewal), renewalInfo(c, w, now), true)
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
		ErrorCode: string(r.Code), Latency: i.cfg.Now().Sub(now), Cause: protocol.CauseOf(r.Code), Detail: protocol.ClipText(r.Reason)})
	if err != nil {
		i.cfg.Logger.Warn("record failed attempt", "device", device, "err", err)
	}
}

func (i *Issuer) replyError(device, requestID string, r *Refusal, now time.Time) {
	i.cfg.Logger.Info("csr refused", "device", device, "request", requestID, "code", r.Code, "reason", r.Reason)
	i.publish(i.cfg.Topics.Device(device, protocol.KindCert), &protocol.Cert{V: protocol.Version, RequestID: requestID,
		HubTime: now, Error: wireError(r)}, false)
}

func (i *Issuer) publish(topic string, m protocol.Message, retain bool) {
	b, err := protocol.EncodeWith(m, json.Marshal) // the agent's bytes, faster (issue 11)
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
	e := &protocol.Error{Code: r.Code, Message: protocol.ClipText(r.Reason)}
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
