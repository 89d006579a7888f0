package issuer

// Issue is the hub's one issuance pipeline. Every front end — CSR over MQTT (HandleCSR),
// an administrator's upload (admin's device/sign), and any later one (ACME, EST) —
// authenticates its requester, says which Authority it holds, and calls Issue; it then only
// turns the Result or the *Refusal into its own answer. The steps, in order:
//
//	validate → replay → parse → identity → key → authorise → policy → quota → rate → sign → record
//
// so that the same CSR is refused with the same wire code whoever sends it, and one rate
// limit and one per-device quota cover every front end. A replay is answered before the
// quota: resubmitting a request costs none of it.

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

// Authority is what entitles a requester to a certificate for a device. A front end
// authenticates the requester and names its authority; Issue applies that authority's rules.
type Authority int

// The authorities.
const (
	// AuthCertificate is a device session presenting one of the device's certificates (the
	// broker checked it). It renews: Request.Replaces must name a certificate of the
	// device that is not revoked.
	AuthCertificate Authority = iota + 1
	// AuthToken is an enrolling session that logged in with a one-time enrollment token
	// (Request.TokenHash). It only enrolls; the issuance consumes the token.
	AuthToken
	// AuthAdmin is an administrator who uploaded the CSR of a device without an agent
	// (device sign). The upload stands in for an enrollment token when the device has no
	// unexpired certificate, and is a command renewal of its active one otherwise, so a
	// class that requires a new key refuses the current one. Issue decides Reason and
	// Replaces; the device may not be run by an agent, quarantined or removed.
	AuthAdmin
)

// String names the authority for logs.
func (a Authority) String() string {
	switch a {
	case AuthCertificate:
		return "certificate"
	case AuthToken:
		return "token"
	case AuthAdmin:
		return "admin"
	}
	return fmt.Sprintf("Authority(%d)", int(a))
}

// Request is one certificate request, from any front end.
type Request struct {
	// DeviceID is the device the certificate is for (protocol.ValidateDeviceID).
	DeviceID string
	// RequestID identifies the request (protocol.ValidateRequestID). A request id that
	// already has a certificate is answered with that certificate (a resubmission after a
	// lost reply); a front end without its own ids makes a fresh one per request.
	RequestID string
	// CSR is the PEM certificate request.
	CSR string
	// Auth is the requester's authority; TokenHash is the token of AuthToken.
	Auth      Authority
	TokenHash string
	// Reason and Replaces are what an AuthCertificate or AuthToken requester asks for: why,
	// and the serial of the certificate renewed. AuthAdmin leaves them empty.
	Reason   protocol.Reason
	Replaces string
	// Describe is what a person says of the device (AuthAdmin).
	Describe Description
	// Recovering, for AuthCertificate, is the expired certificate the requester's session
	// presents (a recovery session, issue 12): the request must then be a recovery
	// renewing that very certificate, and the policy's grace decides.
	Recovering string
}

// Description is what a person says of a device without an agent. Empty fields keep what
// the inventory has.
type Description struct {
	Name, Family, Vendor, Model string
}

// Result is an issued certificate.
type Result struct {
	// Cert is the inventory's record of the certificate (pending, unless Replayed and
	// since committed).
	Cert inventory.Certificate
	// Chain is the leaf then the hub's intermediate, in PEM.
	Chain string
	// Class is the device's class under the policy in force ("" when Replayed).
	Class string
	// Reason is what the certificate was issued for.
	Reason protocol.Reason
	// Replayed is set when the request id already had this certificate: nothing was
	// signed or recorded.
	Replayed bool
}

// Refusal is the error Issue returns for a request it refuses. Code is the wire code every
// front end answers with; callers branch on it (errors.As), never on the text.
type Refusal struct {
	// Code is the protocol error code.
	Code protocol.Code
	// Reason says what is wrong, for a person.
	Reason string
	// RetryAfter, when positive, is how long the requester should wait before trying
	// again; otherwise the code's default applies.
	RetryAfter time.Duration
	// Err is the cause when there is one: a ca error (ca.ErrWeakKey, ca.ErrIdentity …), a
	// *policy.Refusal, an inventory token error.
	Err error
}

// Error returns the reason.
func (r *Refusal) Error() string { return r.Reason }

// Unwrap returns the cause.
func (r *Refusal) Unwrap() error { return r.Err }

// refuse makes a Refusal whose reason is the formatted text.
func refuse(code protocol.Code, format string, args ...any) *Refusal {
	return &Refusal{Code: code, Reason: fmt.Sprintf(format, args...)}
}

// refuseErr makes a Refusal caused by err, with err's text as the reason.
func refuseErr(code protocol.Code, err error) *Refusal {
	return &Refusal{Code: code, Reason: err.Error(), Err: err}
}

// Issue runs the issuance pipeline for req: it returns the recorded certificate, a
// *Refusal with the wire code of the first step that refused, or another error when the
// hub failed (nothing was issued; answer protocol.CodeInternal). A certificate is recorded
// pending before Issue returns it; activating it is the front end's business (a commit over
// MQTT, at once for a device a person installs).
func (i *Issuer) Issue(ctx context.Context, req Request) (Result, error) {
	now := i.cfg.Now().UTC()
	if err := req.validate(); err != nil {
		return Result{}, err
	}
	if res, ok, err := i.replay(ctx, req); ok || err != nil {
		return res, err
	}
	csr, err := ca.ParseCSR(req.CSR)
	if err != nil {
		return Result{}, refuseErr(protocol.CodeBadCSR, err)
	}
	if err := ca.CheckCSRIdentity(csr, req.DeviceID); err != nil {
		return Result{}, refuseErr(protocol.CodeIdentityMismatch, err)
	}
	if err := ca.CheckKey(csr.PublicKey); err != nil {
		return Result{}, refuseErr(protocol.CodeWeakKey, err)
	}
	g, err := i.authorise(ctx, req, csr, now)
	if err != nil {
		return Result{}, err
	}
	key := protocol.KeyAlgorithmOf(csr.PublicKey)
	g.info.KeyAlgorithm, g.info.KeyBits = key.Family(), key.Bits()
	g.info.DNSNames = csr.DNSNames
	pol := i.cfg.Policy()
	d := pol.Admit(g.subject, g.info, now)
	if r := d.Refusal; r != nil {
		return Result{}, &Refusal{Code: r.Code, Reason: r.Error(), Err: r}
	}
	if ok, wait := i.quota.Allow(req.DeviceID, now); !ok {
		return Result{}, &Refusal{Code: protocol.CodeQuotaExceeded, RetryAfter: max(wait, time.Second),
			Reason: fmt.Sprintf("the device had its %d certificates of the last hour; the next in %s", i.cfg.QuotaPerHour, wait.Round(time.Second))}
	}
	if ok, wait := i.limiter.Allow(now); !ok {
		return Result{}, &Refusal{Code: protocol.CodeRateLimited, Reason: "the hub's issuance rate is exhausted", RetryAfter: max(wait, time.Second)}
	}
	leaf, err := i.cfg.CA.SignLeaf(csr, req.DeviceID, d.Profile)
	if err != nil {
		// The CSR's signature, key and device id were checked above: the CA failed.
		return Result{}, fmt.Errorf("sign: %w", err)
	}
	g.dev.Class, g.dev.ClassHash = d.Class, pol.ClassHash() // the class with the family and tags it follows from
	cert := CertificateOf(leaf, req.DeviceID)
	cert.RequestID, cert.Replaces = req.RequestID, g.replaces
	err = i.cfg.Store.RecordIssuance(ctx, inventory.Issuance{
		Device: g.dev, Cert: cert, TokenHash: g.tokenHash,
		Attempt: inventory.Attempt{RequestID: req.RequestID, DeviceID: req.DeviceID, Reason: g.info.Reason,
			Serial: cert.Serial, StartedAt: now, FinishedAt: i.cfg.Now().UTC(), Outcome: inventory.OutcomeIssued,
			Latency: i.cfg.Now().Sub(now)},
	})
	switch {
	case errors.Is(err, inventory.ErrTokenUsed), errors.Is(err, inventory.ErrTokenExpired), errors.Is(err, inventory.ErrTokenInvalid):
		return Result{}, refuseErr(protocol.CodeUnauthorized, err)
	case err != nil:
		return Result{}, fmt.Errorf("record issuance: %w", err)
	}
	by := ""
	if req.Auth == AuthAdmin {
		by = " from a CSR an admin uploaded"
	}
	i.cfg.Notify(protocol.Event{V: protocol.Version, Type: protocol.EventCertIssued, Time: now, DeviceID: req.DeviceID,
		Message: fmt.Sprintf("certificate %s issued%s (%s, %s)", cert.Serial, by, g.info.Reason, d.Class),
		Data:    map[string]string{"serial": cert.Serial, "request_id": req.RequestID, "reason": g.info.Reason}})
	if g.tokenHash != "" {
		i.cfg.Notify(protocol.Event{V: protocol.Version, Type: protocol.EventTokenUsed, Time: now, DeviceID: req.DeviceID,
			Message: fmt.Sprintf("the enrollment token of %s was used by request %s", req.DeviceID, req.RequestID),
			Data:    map[string]string{"request_id": req.RequestID}})
	}
	return Result{Cert: cert, Chain: i.chain(cert), Class: d.Class, Reason: protocol.Reason(g.info.Reason)}, nil
}

// validate refuses a request no front end should have let through.
func (r *Request) validate() error {
	if err := protocol.ValidateDeviceID(r.DeviceID); err != nil {
		return refuseErr(protocol.CodeBadRequest, err)
	}
	if err := protocol.ValidateRequestID(r.RequestID); err != nil {
		return refuseErr(protocol.CodeBadRequest, err)
	}
	switch r.Auth {
	case AuthCertificate, AuthToken, AuthAdmin:
		return nil
	}
	return fmt.Errorf("issue for %q: no authority (%v)", r.DeviceID, r.Auth)
}

// replay answers a request id that already has a certificate with that certificate.
func (i *Issuer) replay(ctx context.Context, req Request) (Result, bool, error) {
	prev, err := i.cfg.Store.Attempt(ctx, req.DeviceID, req.RequestID)
	switch {
	case errors.Is(err, inventory.ErrNotFound):
		return Result{}, false, nil
	case err != nil:
		return Result{}, false, fmt.Errorf("look up attempt: %w", err)
	case prev.Serial == "":
		return Result{}, false, nil // a refused attempt: try again
	}
	c, err := i.cfg.Store.Certificate(ctx, prev.Serial)
	if err != nil {
		return Result{}, false, fmt.Errorf("reload certificate %s: %w", prev.Serial, err)
	}
	return Result{Cert: c, Chain: i.chain(c), Reason: protocol.Reason(prev.Reason), Replayed: true}, true, nil
}

// grant is what the requester's authority allows: the device record to write, what policy
// sees of the device and the request, the serial replaced and the token consumed.
type grant struct {
	dev       inventory.Device
	subject   policy.Subject
	info      policy.CSRInfo
	replaces  string
	tokenHash string
}

// authorise applies the rules of req.Auth.
func (i *Issuer) authorise(ctx context.Context, req Request, csr *x509.CertificateRequest, now time.Time) (grant, error) {
	store := i.cfg.Store
	dev, err := store.Device(ctx, req.DeviceID)
	known := err == nil
	if err != nil && !errors.Is(err, inventory.ErrNotFound) {
		return grant{}, fmt.Errorf("look up device: %w", err)
	}
	g := grant{info: policy.CSRInfo{Reason: string(req.Reason), ReplacesSerial: req.Replaces}, replaces: req.Replaces}
	switch req.Auth {
	case AuthToken:
		if req.Reason != protocol.ReasonEnroll {
			return grant{}, refuse(protocol.CodeUnauthorized, "a token session may only enroll")
		}
		g.tokenHash = req.TokenHash
		if !known {
			dev = inventory.Device{ID: req.DeviceID, Mechanism: inventory.MechanismAgent, Path: inventory.PathDirect}
		}
		if tok, ok := i.token(ctx, req.DeviceID, req.TokenHash); ok {
			dev.Name, dev.Family = firstNonEmpty(dev.Name, tok.Name), firstNonEmpty(dev.Family, tok.Family)
		}
	case AuthCertificate:
		if !known {
			return grant{}, refuse(protocol.CodeUnauthorized, "device %q is not in the inventory", req.DeviceID)
		}
		if req.Reason == protocol.ReasonEnroll {
			return grant{}, refuse(protocol.CodePolicyDenied, "an enrolled device renews; it does not enroll again")
		}
		if req.Recovering != "" && (req.Reason != protocol.ReasonRecovery || !strings.EqualFold(req.Replaces, req.Recovering)) {
			return grant{}, refuse(protocol.CodePolicyDenied, "certificate %s has expired: its session may only send a recovery CSR replacing it", req.Recovering)
		}
		old, err := store.Certificate(ctx, req.Replaces)
		if err != nil || old.DeviceID != req.DeviceID {
			return grant{}, refuse(protocol.CodePolicyDenied, "serial %s is not a certificate of %s", req.Replaces, req.DeviceID)
		}
		switch old.Status {
		case inventory.StatusRevoked:
			return grant{}, refuse(protocol.CodeRevoked, "certificate %s is revoked", req.Replaces)
		case inventory.StatusSuperseded, inventory.StatusAbandoned:
			// Old keys renew nothing (issue 12): only the active or pending certificate does.
			return grant{}, refuse(protocol.CodeRevoked, "certificate %s is %s; renew from the device's active certificate", req.Replaces, old.Status)
		}
		g.info.CurrentNotAfter = old.NotAfter
		g.info.SameKeyAsCurrent = samePublicKey(old.PEM, csr)
	case AuthAdmin:
		rec, subject, err := ManualTarget(req.DeviceID, dev, known, req.Describe)
		if err != nil {
			return grant{}, err
		}
		g.dev, g.subject = rec, subject
		g.info, g.replaces = policy.CSRInfo{Reason: policy.CSREnroll}, ""
		cur, err := store.ActiveCertificate(ctx, req.DeviceID)
		switch {
		case err == nil:
			g.replaces = cur.Serial
			g.info.SameKeyAsCurrent = samePublicKey(cur.PEM, csr)
			if now.Before(cur.NotAfter) {
				g.info.Reason, g.info.ReplacesSerial, g.info.CurrentNotAfter = policy.CSRCommand, cur.Serial, cur.NotAfter
			}
		case !errors.Is(err, inventory.ErrNotFound):
			return grant{}, fmt.Errorf("look up active certificate: %w", err)
		}
		return g, nil
	}
	g.dev = dev
	g.subject = policy.Subject{DeviceID: dev.ID, Family: dev.Family, Tags: dev.Tags}
	return g, nil
}

// ManualTarget decides whether a person may give device id a certificate (device sign,
// through Issue with AuthAdmin, and device import) and returns the inventory record to
// write and what policy sees of the device. cur is the stored device when found. A device
// run by an agent is refused with protocol.CodePolicyDenied (it renews its own
// certificates); one quarantined or removed with protocol.CodeRevoked (its certificates
// were revoked: remove it first). The record is marked MechanismManual, its descriptive
// fields are d's (empty ones keep what the inventory has) and its class is the one policy
// chooses, for the caller to set.
func ManualTarget(id string, cur inventory.Device, found bool, d Description) (inventory.Device, policy.Subject, error) {
	switch {
	case !found:
	case cur.Mechanism == inventory.MechanismAgent:
		return inventory.Device{}, policy.Subject{}, refuse(protocol.CodePolicyDenied, "device %q runs hearth-agent, which renews its own certificate; "+
			"import and sign are for devices without an agent", id)
	case cur.State == inventory.StateQuarantined || cur.State == inventory.StateRemoved:
		return inventory.Device{}, policy.Subject{}, refuse(protocol.CodeRevoked, "device %q is %s (its certificates were revoked); "+
			"remove it (hearth-gateway remove %s) before giving it a certificate again", id, cur.State, id)
	}
	subject := policy.Subject{DeviceID: id, Family: firstNonEmpty(d.Family, cur.Family), Tags: cur.Tags}
	return inventory.Device{ID: id, Name: d.Name, Family: d.Family, Vendor: d.Vendor, Model: d.Model,
		Mechanism: inventory.MechanismManual}, subject, nil
}

// CertificateOf is the inventory record of leaf, a certificate of device id, pending: what
// Issue records for a signed leaf and device import for a certificate issued elsewhere.
func CertificateOf(leaf *x509.Certificate, id string) inventory.Certificate {
	return inventory.Certificate{
		Serial:       serialHex(leaf),
		DeviceID:     id,
		NotBefore:    leaf.NotBefore.UTC(),
		NotAfter:     leaf.NotAfter.UTC(),
		Issuer:       leaf.Issuer.String(),
		KeyAlgorithm: protocol.KeyAlgorithmOf(leaf.PublicKey),
		Fingerprint:  protocol.FingerprintOf(leaf).Hex(),
		Status:       inventory.StatusPending,
		PEM:          string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})),
	}
}

// chain is c's PEM followed by the hub's intermediate that issued it: during an intermediate
// rotation a certificate issued before the switch (a resubmitted request) keeps the previous
// one.
func (i *Issuer) chain(c inventory.Certificate) string {
	inter := i.cfg.CA.Intermediate()
	if prev := i.cfg.CA.Previous(); prev != nil && c.Issuer == prev.Subject.String() {
		inter = prev
	}
	return c.PEM + string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: inter.Raw}))
}

// token finds the enrollment token a device logs in with, for the name and family an admin
// gave it.
func (i *Issuer) token(ctx context.Context, device, hash string) (inventory.Token, bool) {
	t, err := i.cfg.Store.Token(ctx, hash)
	return t, err == nil && t.DeviceID == device
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
