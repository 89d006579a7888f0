// Package issuer handles one device request at a time: a CSR (validate → policy → sign →
// record → reply) and a commit (check the TLS session → activate → acknowledge). It knows no
// MQTT: replies leave through a Publisher, and the broker hands requests in with the sender's
// identity.
//
// Invariants:
//   - A certificate is recorded in the inventory (pending) before its reply is published, so
//     no certificate a device received is missing from the inventory, whatever the crash.
//   - A request id is answered idempotently: a resubmitted request gets the same certificate.
//   - One request is in flight per device; another request id gets "busy".
//   - Only the CSR's public key is used; its extensions and subject are never copied.
//
// An Issuer is safe for concurrent use.
package issuer

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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
	Policy func() *policy.Policy // the policy in force; called per request
	Pub    Publisher
	Topics protocol.Topics
	// Now is the hub clock. Default time.Now.
	Now func() time.Time
	// Rate and Burst cap issuance across all devices (per second). Default 500/s, burst 1000.
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

// refusal is an error that becomes a reply code.
type refusal struct {
	code       protocol.Code
	msg        string
	retryAfter time.Duration
}

func (r *refusal) Error() string { return string(r.code) + ": " + r.msg }

func refuse(code protocol.Code, format string, args ...any) *refusal {
	return &refusal{code: code, msg: fmt.Sprintf(format, args...)}
}

// HandleCSR answers a CSR from sender on its csr topic. It always publishes a reply on the
// device's cert topic, except for a payload so broken that it names no request id.
func (i *Issuer) HandleCSR(ctx context.Context, from Sender, payload []byte) {
	now := i.cfg.Now().UTC()
	var req protocol.CSR
	if err := protocol.Decode(payload, &req); err != nil {
		i.replyError(from.DeviceID, requestIDOf(payload), &refusal{code: protocol.CodeFor(err), msg: err.Error()}, now)
		return
	}
	if !i.begin(from.DeviceID, req.RequestID) {
		i.replyError(from.DeviceID, req.RequestID, &refusal{code: protocol.CodeBusy,
			msg: "another request of this device is in flight", retryAfter: 5 * time.Second}, now)
		return
	}
	defer i.end(from.DeviceID)

	reply, err := i.issue(ctx, from, &req, now)
	if err != nil {
		var r *refusal
		if !errors.As(err, &r) {
			i.cfg.Logger.Error("issuance failed", "device", from.DeviceID, "request", req.RequestID, "err", err)
			r = &refusal{code: protocol.CodeInternal, msg: "the hub could not issue; nothing was issued", retryAfter: time.Minute}
		}
		i.recordFailure(ctx, from.DeviceID, &req, r, now)
		i.replyError(from.DeviceID, req.RequestID, r, now)
		return
	}
	i.publish(i.cfg.Topics.Device(from.DeviceID, protocol.KindCert), reply, false)
}

// issue does the work of HandleCSR and returns the reply to publish.
func (i *Issuer) issue(ctx context.Context, from Sender, req *protocol.CSR, now time.Time) (*protocol.Cert, error) {
	store := i.cfg.Store
	if prev, err := store.Attempt(ctx, from.DeviceID, req.RequestID); err == nil && prev.Serial != "" {
		// A resubmission after a lost reply: answer with the same certificate.
		c, err := store.Certificate(ctx, prev.Serial)
		if err != nil {
			return nil, fmt.Errorf("reload certificate %s: %w", prev.Serial, err)
		}
		return i.certReply(ctx, req.RequestID, c, now)
	} else if err != nil && !errors.Is(err, inventory.ErrNotFound) {
		return nil, fmt.Errorf("look up attempt: %w", err)
	}

	csr, err := ca.ParseCSR(req.CSR)
	if err != nil {
		return nil, refuse(protocol.CodeBadCSR, "%v", err)
	}
	if err := ca.CheckCSRIdentity(csr, from.DeviceID); err != nil {
		return nil, refuse(protocol.CodeIdentityMismatch, "%v", err)
	}
	if err := ca.CheckKey(csr.PublicKey); err != nil {
		return nil, refuse(protocol.CodeWeakKey, "%v", err)
	}

	dev, err := store.Device(ctx, from.DeviceID)
	known := err == nil
	if err != nil && !errors.Is(err, inventory.ErrNotFound) {
		return nil, fmt.Errorf("look up device: %w", err)
	}
	info := policy.CSRInfo{Reason: string(req.Reason), ReplacesSerial: req.Replaces, DNSNames: csr.DNSNames}
	key := protocol.KeyAlgorithmOf(csr.PublicKey)
	info.KeyAlgorithm, info.KeyBits = key.Family(), key.Bits()

	var tokenHash string
	switch {
	case from.Enrolling():
		if req.Reason != protocol.ReasonEnroll {
			return nil, refuse(protocol.CodeUnauthorized, "a token session may only enroll")
		}
		tokenHash = from.TokenHash
		if !known {
			dev = inventory.Device{ID: from.DeviceID, Mechanism: inventory.MechanismAgent, Path: inventory.PathDirect}
		}
		if tok, ok := i.token(ctx, from.DeviceID, tokenHash); ok {
			dev.Name, dev.Family = firstNonEmpty(dev.Name, tok.Name), firstNonEmpty(dev.Family, tok.Family)
		}
	default:
		if !known {
			return nil, refuse(protocol.CodeUnauthorized, "device %q is not in the inventory", from.DeviceID)
		}
		if req.Reason == protocol.ReasonEnroll {
			return nil, refuse(protocol.CodePolicyDenied, "an enrolled device renews; it does not enroll again")
		}
		old, err := store.Certificate(ctx, req.Replaces)
		if err != nil || old.DeviceID != from.DeviceID {
			return nil, refuse(protocol.CodePolicyDenied, "serial %s is not a certificate of %s", req.Replaces, from.DeviceID)
		}
		if old.Status == inventory.StatusRevoked {
			return nil, refuse(protocol.CodeRevoked, "certificate %s is revoked", req.Replaces)
		}
		info.CurrentNotAfter = old.NotAfter
		info.SameKeyAsCurrent = samePublicKey(old.PEM, csr)
	}

	subject := policy.Subject{DeviceID: dev.ID, Family: dev.Family, Tags: dev.Tags}
	d := i.cfg.Policy().Admit(subject, info, now)
	if !d.Allowed {
		code := protocol.CodePolicyDenied
		if strings.HasSuffix(d.Rule, ".keys") {
			code = protocol.CodeWeakKey
		}
		return nil, refuse(code, "%s (rule %s)", d.Reason, d.Rule)
	}
	if ok, wait := i.limiter.Allow(now); !ok {
		return nil, &refusal{code: protocol.CodeRateLimited, msg: "the hub's issuance rate is exhausted", retryAfter: max(wait, time.Second)}
	}
	leaf, err := i.cfg.CA.SignLeaf(csr, from.DeviceID, ca.Profile{
		Lifetime: d.Profile.Lifetime, DNSNames: d.Profile.DNSNames, ServerAuth: d.Profile.ServerAuth, Backdate: d.Profile.Backdate,
	}, now)
	if err != nil {
		return nil, refuse(protocol.CodeBadCSR, "%v", err)
	}
	dev.Class = d.Class
	cert := inventory.Certificate{
		Serial:       serialHex(leaf),
		DeviceID:     from.DeviceID,
		NotBefore:    leaf.NotBefore,
		NotAfter:     leaf.NotAfter,
		Issuer:       leaf.Issuer.String(),
		KeyAlgorithm: protocol.KeyAlgorithmOf(leaf.PublicKey),
		Fingerprint:  protocol.FingerprintOf(leaf).Hex(),
		Status:       inventory.StatusPending,
		PEM:          string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})),
		RequestID:    req.RequestID,
		Replaces:     req.Replaces,
	}
	err = store.RecordIssuance(ctx, inventory.Issuance{
		Device: dev, Cert: cert, TokenHash: tokenHash,
		Attempt: inventory.Attempt{RequestID: req.RequestID, DeviceID: from.DeviceID, Reason: string(req.Reason),
			Serial: cert.Serial, StartedAt: now, FinishedAt: i.cfg.Now().UTC(), Outcome: inventory.OutcomeIssued,
			Latency: i.cfg.Now().Sub(now)},
	})
	switch {
	case errors.Is(err, inventory.ErrTokenUsed), errors.Is(err, inventory.ErrTokenExpired), errors.Is(err, inventory.ErrTokenInvalid):
		return nil, refuse(protocol.CodeUnauthorized, "%v", err)
	case err != nil:
		return nil, fmt.Errorf("record issuance: %w", err)
	}
	i.cfg.Notify(protocol.Event{V: protocol.Version, Type: protocol.EventCertIssued, Time: now, DeviceID: from.DeviceID,
		Message: fmt.Sprintf("certificate %s issued (%s, %s)", cert.Serial, req.Reason, d.Class),
		Data:    map[string]string{"serial": cert.Serial, "request_id": req.RequestID, "reason": string(req.Reason)}})
	return i.certReply(ctx, req.RequestID, cert, now)
}

// certReply builds the reply carrying c's chain and its renewal window.
func (i *Issuer) certReply(ctx context.Context, requestID string, c inventory.Certificate, now time.Time) (*protocol.Cert, error) {
	chain := c.PEM + string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: i.cfg.CA.Intermediate().Raw}))
	info, err := i.RenewalInfo(ctx, c, now)
	if err != nil {
		return nil, err
	}
	return &protocol.Cert{V: protocol.Version, RequestID: requestID, Chain: chain, Serial: c.Serial, Renewal: info, HubTime: now}, nil
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
		i.ackError(from.DeviceID, requestIDOf(payload), &refusal{code: protocol.CodeFor(err), msg: err.Error()}, now)
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
		i.cfg.Notify(protocol.Event{V: protocol.Version, Type: protocol.EventRenewalRolledBack, Time: now, DeviceID: from.DeviceID,
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
		i.ackError(from.DeviceID, c.RequestID, &refusal{code: protocol.CodeNotPresented,
			msg: fmt.Sprintf("the TLS session presents serial %s, not %s", orNone(from.Serial), c.Serial), retryAfter: 5 * time.Second}, now)
		return
	}
	prev, changed, err := store.Activate(ctx, from.DeviceID, c.Serial, now)
	if errors.Is(err, inventory.ErrRevoked) {
		i.ackError(from.DeviceID, c.RequestID, refuse(protocol.CodeRevoked, "certificate %s is revoked", c.Serial), now)
		return
	}
	if err != nil {
		i.cfg.Logger.Error("activate", "device", from.DeviceID, "serial", c.Serial, "err", err)
		i.ackError(from.DeviceID, c.RequestID, &refusal{code: protocol.CodeInternal, msg: "the hub could not record the commit", retryAfter: time.Minute}, now)
		return
	}
	if err := store.FinishAttempt(ctx, from.DeviceID, c.RequestID, inventory.OutcomeCommitted, "", now); err != nil {
		i.cfg.Logger.Error("finish attempt", "device", from.DeviceID, "err", err)
	}
	if changed {
		i.cfg.Notify(protocol.Event{V: protocol.Version, Type: protocol.EventCertActivated, Time: now, DeviceID: from.DeviceID,
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

// token finds the enrollment token a device logs in with, for the name and family an admin
// gave it.
func (i *Issuer) token(ctx context.Context, device, hash string) (inventory.Token, bool) {
	t, err := i.cfg.Store.Token(ctx, hash)
	return t, err == nil && t.DeviceID == device
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

func (i *Issuer) recordFailure(ctx context.Context, device string, req *protocol.CSR, r *refusal, now time.Time) {
	if r.code == protocol.CodeBusy {
		return
	}
	if _, err := i.cfg.Store.Device(ctx, device); err != nil {
		return // an unknown device leaves no trace but the log: nothing to attach it to
	}
	err := i.cfg.Store.RecordFailedAttempt(ctx, inventory.Attempt{RequestID: req.RequestID, DeviceID: device,
		Reason: string(req.Reason), StartedAt: now, FinishedAt: i.cfg.Now().UTC(), Outcome: inventory.OutcomeFailed,
		ErrorCode: string(r.code), Latency: i.cfg.Now().Sub(now)})
	if err != nil {
		i.cfg.Logger.Warn("record failed attempt", "device", device, "err", err)
	}
}

func (i *Issuer) replyError(device, requestID string, r *refusal, now time.Time) {
	i.cfg.Logger.Info("csr refused", "device", device, "request", requestID, "code", r.code, "reason", r.msg)
	i.publish(i.cfg.Topics.Device(device, protocol.KindCert), &protocol.Cert{V: protocol.Version, RequestID: requestID,
		HubTime: now, Error: wireError(r)}, false)
}

func (i *Issuer) ackError(device, requestID string, r *refusal, now time.Time) {
	i.cfg.Logger.Info("commit refused", "device", device, "request", requestID, "code", r.code, "reason", r.msg)
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

func wireError(r *refusal) *protocol.Error {
	e := &protocol.Error{Code: r.code, Message: protocol.ClipText(r.msg)}
	if r.retryAfter > 0 {
		e.RetryAfter = int((r.retryAfter + time.Second - 1) / time.Second)
	} else if info, _ := r.code.Info(); info.Retry {
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

func samePublicKey(certPEM string, csr *x509.CertificateRequest) bool {
	b, _ := pem.Decode([]byte(certPEM))
	if b == nil {
		return false
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return false
	}
	pub, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(csr.PublicKey)
}

func serialHex(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
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
