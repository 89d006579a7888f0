// Package admin is the one implementation of the hub's administrative operations. Bridge
// requests on MQTT, the CLI's control socket, the dashboard and Home Assistant's buttons all
// call Service.Do with an operation name and its JSON payload, and get the same
// protocol.BridgeResponse back.
//
// Operations: token/create, device/list, device/get, device/renew, device/revoke,
// device/remove, device/import, device/sign, campaign/start, campaign/list, policy/reload,
// events, audit/verify, ca/show, ca/rotate-intermediate, ca/rotate-root (through
// internal/rotation); the
// incident runbooks incident/device-lost, incident/family-compromised and
// incident/intermediate-compromised (incident.go); user/add, user/remove, user/list, user/set-role
// (access.go); policy/diff, policy/propose, policy/apply, change/propose, change/approve,
// change/reject, change/list (change.go). DoAs checks the requester's role
// (gateway/internal/authz) first: every front end calls it. A Service is safe for
// concurrent use.
package admin

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/authz"
	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/issuer"
	"github.com/hearth-pki/hearth/gateway/internal/lifecycle"
	"github.com/hearth-pki/hearth/gateway/internal/monitor"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/gateway/internal/rate"
	"github.com/hearth-pki/hearth/gateway/internal/renewal"
	"github.com/hearth-pki/hearth/gateway/internal/rotation"
	"github.com/hearth-pki/hearth/gateway/internal/secret"
	"github.com/hearth-pki/hearth/protocol"
)

// Broker is what the service needs of the hub's MQTT broker.
type Broker interface {
	Publish(topic string, payload []byte, retain bool) error
	Disconnect(deviceID string) int
	// DisconnectAfter closes the device's sessions once grace has passed, returning how
	// many it will close.
	DisconnectAfter(deviceID string, grace time.Duration) int
}

// RevokeGrace is how long a revoked device's live sessions stay open after the revocation
// is stored: long enough for the new CRL to be published and reach the device (so its agent
// can say it is revoked), well within the second in which a revoked session must end. The
// broker refuses the revoked certificates from the moment the revocation is stored.
const RevokeGrace = 300 * time.Millisecond

// Config holds the service's collaborators.
type Config struct {
	Store  *inventory.Store
	CA     *ca.CA
	Broker Broker
	Topics protocol.Topics
	// Advertise is the host:port agents connect to, for the enrollment command.
	Advertise string
	// TokenTTL is the default life of an enrollment token. Default 24 h.
	TokenTTL time.Duration
	Now      func() time.Time
	// DeviceChanged is called with the device an operation changed (refresh its bridge
	// topic and Home Assistant entities); Changed after a change that names no device.
	// Revoked is called after certificates were revoked (regenerate the CRL).
	DeviceChanged func(deviceID string)
	Changed       func()
	Revoked       func(ctx context.Context)
	// Notify receives events to publish on bridge/event.
	Notify func(protocol.Event)
	// Commands queues renew commands for devices (the device state machine); required for
	// Renew.
	Commands Commands
	// Revoker revokes devices and certificates in order with their requests (the device
	// state machine); required for Revoke and Remove.
	Revoker Revoker
	// Scheduler, when set, takes device/renew (it commands the device now when online, on
	// reconnect otherwise, and retries until the device commits) and runs campaigns. Without
	// it, device/renew publishes one command and campaigns are unavailable.
	Scheduler Scheduler
	// Issuer runs device/sign through the hub's one issuance pipeline (its checks, its
	// policy, its rate limit). Without it device/sign is unavailable.
	Issuer *issuer.Issuer
	// Policy is the policy in force, for the class of an imported device and for judging
	// devices (their renewal windows). Default policy.Default.
	Policy func() *policy.Policy
	// ReloadPolicy re-reads and applies the policy file, returning what changed.
	ReloadPolicy func(ctx context.Context) ([]string, error)
	// RenewCooldown is the least time between two device/renew requests of one device,
	// whoever sends them (bridge, Home Assistant, dashboard): one within it is answered
	// quota_exceeded, so renew spam cannot keep a device renewing. Default
	// DefaultRenewCooldown; negative: none.
	RenewCooldown time.Duration
	// RenewCooldownExempt lists the actors the cool-down does not hold when they are admins:
	// the hub passes the CLI's ("cli"), whose admins are root and the hub's own user, who can
	// do anything to the hub anyway (an OS user with a lesser role from cli_roles is held).
	RenewCooldownExempt []string
	// ApplyPolicy puts a policy (its YAML) in force and keeps it (the policy file), returning
	// what changed: policy/apply and approved policy changes.
	ApplyPolicy func(ctx context.Context, yaml []byte) ([]string, error)
	// ApprovalRequired turns on change approval: operations that need it
	// (authz.NeedsApproval) run only as a change approved by a second admin.
	ApprovalRequired bool
	// ConfiguredAdmins are the names of the admins of the configuration (listed by user/list;
	// no user may take their names).
	ConfiguredAdmins []string
	// Rotation runs intermediate rotations (ca/rotate-intermediate,
	// incident/intermediate-compromised) and says where the latest stands (ca/show). Without
	// it those operations are unavailable.
	Rotation Rotation
	Logger   *slog.Logger
}

// Rotation is what the service needs of the intermediate rotation.
type Rotation interface {
	Rotate(ctx context.Context, req rotation.Request) (rotation.Result, error)
	Status(ctx context.Context) (*protocol.CARotation, error)
}

// DefaultRenewCooldown is the default RenewCooldown.
const DefaultRenewCooldown = time.Minute

// Commands is what the service needs of the device state machine: it stores a renew
// command and sends it once (and each time) the device subscribes to its command topic,
// until the device acts on it or its deadline passes.
type Commands interface {
	Command(ctx context.Context, deviceID string, c lifecycle.Command) error
}

// Revoker is what the service needs of the device state machine to revoke: the device's
// identity (serial "") or one certificate, durably, in order with the device's requests.
type Revoker interface {
	Revoke(ctx context.Context, deviceID, serial string, rv inventory.Revocation) (lifecycle.Revoked, error)
}

// Scheduler is what the service needs of the renewal scheduler.
type Scheduler interface {
	Force(ctx context.Context, deviceID, reason string) (renewal.Forced, error)
	StartCampaign(ctx context.Context, c protocol.Campaign) (protocol.CampaignStatus, error)
	PlanCampaign(ctx context.Context, c protocol.Campaign) ([]inventory.CampaignDevice, error)
	Campaigns(ctx context.Context) ([]protocol.CampaignStatus, error)
}

// Service runs administrative operations.
type Service struct {
	cfg       Config
	renewed   *rate.Keyed // device/renew requests per device; nil: no cool-down
	incidents incidents
	changeMu  sync.Mutex // one change approved or rejected at a time
}

// New returns a Service.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = 24 * time.Hour
	}
	if cfg.Policy == nil {
		cfg.Policy = policy.Default
	}
	if cfg.DeviceChanged == nil {
		cfg.DeviceChanged = func(string) {}
	}
	if cfg.Changed == nil {
		cfg.Changed = func() {}
	}
	if cfg.Revoked == nil {
		cfg.Revoked = func(context.Context) {}
	}
	if cfg.Notify == nil {
		cfg.Notify = func(protocol.Event) {}
	}
	if cfg.RenewCooldown == 0 {
		cfg.RenewCooldown = DefaultRenewCooldown
	}
	s := &Service{cfg: cfg}
	if cfg.RenewCooldown > 0 {
		s.renewed = rate.NewKeyed(1/cfg.RenewCooldown.Seconds(), 1, 0)
	}
	return s
}

// coolDown takes deviceID's renew request, or refuses it while the last one is less than
// RenewCooldown old.
func (s *Service) coolDown(deviceID string) error {
	if ok, wait := s.renewed.Allow(deviceID, s.cfg.Now()); !ok {
		return &quotaError{fmt.Sprintf("a renewal of %s was requested less than %s ago; ask again in %s",
			deviceID, s.cfg.RenewCooldown, max(wait, time.Second).Round(time.Second))}
	}
	return nil
}

// exempt reports whether RenewCooldownExempt names actor: an entry "cli" is the actor "cli"
// and every "cli:<user>" (the control socket names its OS user).
func (s *Service) exempt(actor string) bool {
	return slices.ContainsFunc(s.cfg.RenewCooldownExempt, func(e string) bool {
		return actor == e || strings.HasPrefix(actor, e+":")
	})
}

// exemptKey marks the context of a request whose actor RenewCooldownExempt names.
type exemptKey struct{}

func exempt(ctx context.Context) bool { v, _ := ctx.Value(exemptKey{}).(bool); return v }

// quotaError is a request a per-device quota holds; Do answers it with
// protocol.CodeQuotaExceeded.
type quotaError struct{ msg string }

func (e *quotaError) Error() string { return e.msg }

// ErrUnknownOp is returned for an operation the service does not have.
var ErrUnknownOp = errors.New("unknown operation")

// Ops lists the operations in the order the docs present them.
func Ops() []string {
	return []string{"token/create", "device/list", "device/get", "device/renew", "device/revoke", "device/remove",
		"device/import", "device/sign", "campaign/start", "campaign/list", "policy/reload", "events", "audit/verify", "ca/show",
		"ca/rotate-intermediate", "ca/rotate-root", "incident/device-lost", "incident/family-compromised", "incident/intermediate-compromised",
		"user/add", "user/remove", "user/list", "user/set-role", "policy/diff", "policy/propose", "policy/apply",
		"change/propose", "change/approve", "change/reject", "change/list"}
}

// Do runs operation op with its JSON payload as actor (for the audit log) and returns the
// response; it never panics on bad input and always echoes the request's transaction. It
// checks no role: it is for the hub's own callers; front ends call DoAs.
func (s *Service) Do(ctx context.Context, actor, op string, payload []byte) protocol.BridgeResponse {
	if principalFrom(ctx).Name == "" {
		ctx = withPrincipal(ctx, authz.Principal{Name: actor, Role: authz.Admin})
	}
	var base protocol.BridgeRequest
	if len(payload) > protocol.MaxMessageSize {
		return errResponse("", protocol.CodeTooLarge, fmt.Errorf("payload of %d bytes over the limit", len(payload)))
	}
	if len(payload) == 0 {
		payload = []byte("{}")
	}
	_ = json.Unmarshal(payload, &base)
	ctx = inventory.WithActor(ctx, actor)
	if s.exempt(actor) && principalFrom(ctx).Role == authz.Admin {
		ctx = context.WithValue(ctx, exemptKey{}, true)
	}
	data, err := s.do(ctx, op, payload)
	if err != nil {
		return errResponse(base.Transaction, codeOf(err), err)
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return errResponse(base.Transaction, protocol.CodeInternal, err)
	}
	return protocol.BridgeResponse{Transaction: base.Transaction, Status: "ok", Data: raw}
}

// codeOf is the wire code of an operation's error: a refusal's own code (the issuer's, so
// device/sign answers as a CSR over MQTT would), internal for a failure of the hub, and
// bad_request for anything else wrong with the request.
func codeOf(err error) protocol.Code {
	var refused *issuer.Refusal
	switch {
	case errors.As(err, &refused):
		return refused.Code
	case errors.Is(err, authz.ErrDenied), errors.Is(err, errSameAdmin):
		return protocol.CodeForbidden
	case errors.Is(err, errInternal):
		return protocol.CodeInternal
	}
	var nf *notFoundError
	if errors.As(err, &nf) {
		return protocol.CodeNotFound
	}
	var qe *quotaError
	if errors.As(err, &qe) {
		return protocol.CodeQuotaExceeded
	}
	return protocol.CodeBadRequest
}

var errInternal = errors.New("internal error")

func internal(err error) error { return fmt.Errorf("%w: %w", errInternal, err) }

// notFoundError is a request naming a device (token, campaign) the hub does not know; Do
// answers it with protocol.CodeNotFound.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }

func errResponse(tx string, code protocol.Code, err error) protocol.BridgeResponse {
	return protocol.BridgeResponse{Transaction: tx, Status: "error", Error: err.Error(), Code: code}
}

func (s *Service) do(ctx context.Context, op string, payload []byte) (any, error) {
	if data, ok, err := s.doUsers(ctx, op, payload); ok {
		return data, err
	}
	if data, ok, err := s.doChange(ctx, op, payload); ok {
		return data, err
	}
	switch op {
	case "token/create":
		var r protocol.TokenRequest
		if err := protocol.Decode(payload, &r); err != nil {
			return nil, err
		}
		return s.CreateToken(ctx, r)
	case "device/list":
		var r protocol.DeviceListRequest
		if err := protocol.Decode(payload, &r); err != nil {
			return nil, err
		}
		return s.ListPage(ctx, r)
	case "device/get", "device/renew", "device/revoke", "device/remove":
		var r protocol.DeviceRequest
		if err := protocol.Decode(payload, &r); err != nil {
			return nil, err
		}
		switch op {
		case "device/get":
			return s.Get(ctx, r.ID)
		case "device/renew":
			reason := firstNonEmpty(r.Reason, "renewal requested by an admin")
			if _, err := s.device(ctx, r.ID); err != nil {
				return nil, err
			}
			if !exempt(ctx) {
				if err := s.coolDown(r.ID); err != nil {
					return nil, err
				}
			}
			if s.cfg.Scheduler == nil {
				return s.Renew(ctx, r.ID, protocol.ActionRenew, reason, time.Time{})
			}
			f, err := s.cfg.Scheduler.Force(ctx, r.ID, reason)
			if err != nil {
				return nil, err
			}
			out := protocol.DeviceRenewed{ID: r.ID, Queued: true, AfterCurrent: f.AfterCurrent,
				Message: "queued: the device is commanded now if it is online, else when it reconnects"}
			if f.AfterCurrent {
				out.Message = "a renewal of this device is already in flight; another follows once it ends"
			}
			return out, nil
		case "device/revoke":
			reason, err := protocol.ParseRevocationReason(r.Reason)
			if err != nil {
				return nil, err
			}
			return s.Revoke(ctx, r.ID, r.Serial, inventory.Revocation{Reason: reason, Note: r.Note})
		default:
			return s.Remove(ctx, r.ID)
		}
	case "events":
		var r protocol.EventsRequest
		if err := json.Unmarshal(payload, &r); err != nil {
			return nil, fmt.Errorf("events: %w", err)
		}
		evs, err := s.cfg.Store.Events(ctx, inventory.EventFilter{DeviceID: r.ID, Limit: max(1, min(r.Limit, 1000))})
		if err != nil {
			return nil, err
		}
		return auditEvents(evs), nil
	case "device/import", "device/sign":
		do := s.Import
		if op == "device/sign" {
			do = s.SignCSR
		}
		data, err := do(ctx, payload)
		if err == nil {
			// The device the request named (decoded again: the answer's type is manual.go's).
			var r struct {
				ID string `json:"id"`
			}
			_ = json.Unmarshal(payload, &r)
			s.cfg.DeviceChanged(r.ID)
		}
		return data, err
	case "campaign/start", "campaign/list":
		if s.cfg.Scheduler == nil {
			return nil, errors.New("campaigns need the renewal scheduler")
		}
		if op == "campaign/list" {
			return s.cfg.Scheduler.Campaigns(ctx)
		}
		var c protocol.Campaign
		if err := json.Unmarshal(payload, &c); err != nil {
			return nil, fmt.Errorf("campaign/start: %w", err)
		}
		return s.cfg.Scheduler.StartCampaign(ctx, c)
	case "policy/reload":
		if s.cfg.ReloadPolicy == nil {
			return nil, errors.New("policy reload is not available")
		}
		diff, err := s.cfg.ReloadPolicy(ctx)
		if err != nil {
			return nil, err
		}
		return protocol.PolicyReloaded{Changed: diff}, nil
	case "audit/verify":
		if err := s.cfg.Store.VerifyAudit(ctx); err != nil {
			return nil, err
		}
		return protocol.AuditVerified{Audit: protocol.AuditIntact}, nil
	case "ca/show":
		return s.CAStatus(ctx)
	case "ca/rotate-intermediate", "ca/rotate-root":
		var r protocol.CARotateRequest
		if err := json.Unmarshal(payload, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		return s.Rotate(ctx, r, op == "ca/rotate-root")
	}
	if inc, ok := incidentOps[op]; ok {
		return s.incident(ctx, inc, payload)
	}
	return nil, fmt.Errorf("%w %q (have %v)", ErrUnknownOp, op, Ops())
}

// CreateToken makes a one-time enrollment token for a device id.
func (s *Service) CreateToken(ctx context.Context, r protocol.TokenRequest) (protocol.TokenCreated, error) {
	ttl, err := r.Lifetime(s.cfg.TokenTTL)
	if err != nil {
		return protocol.TokenCreated{}, err
	}
	now := s.cfg.Now().UTC().Truncate(time.Second)
	tok := secret.NewToken()
	err = s.cfg.Store.CreateToken(ctx, inventory.Token{Hash: secret.HashToken(tok), DeviceID: r.ID, Name: r.Name,
		Family: r.Family, CreatedAt: now, ExpiresAt: now.Add(ttl)})
	if err != nil {
		return protocol.TokenCreated{}, internal(err)
	}
	data := map[string]string{"expires_at": now.Add(ttl).Format(time.RFC3339)}
	for k, v := range map[string]string{"name": r.Name, "family": r.Family} {
		if v != "" {
			data[k] = protocol.Clip(v, protocol.MaxTextLen)
		}
	}
	s.cfg.Notify(protocol.Event{V: protocol.Version, Type: protocol.EventTokenCreated, Time: now, DeviceID: r.ID,
		Message: fmt.Sprintf("an enrollment token for %s was created, valid until %s", r.ID, now.Add(ttl).Format(time.RFC3339)), Data: data})
	return protocol.TokenCreated{ID: r.ID, Token: tok, ExpiresAt: now.Add(ttl),
		Command: fmt.Sprintf("hearth-agent enroll --hub mqtts://%s --id %s --token %s --ca-fingerprint %s",
			s.cfg.Advertise, r.ID, tok, s.cfg.CA.Fingerprint())}, nil
}

// List returns every device's summary, in id order, for the dashboard and the metrics
// (device/list pages instead). It reads the inventory in batches of inventory.MaxBatch
// devices, two queries each.
func (s *Service) List(ctx context.Context) ([]protocol.DeviceSummary, error) {
	now, pol := s.cfg.Now(), s.cfg.Policy()
	var out []protocol.DeviceSummary
	after := ""
	for {
		page, err := s.cfg.Store.DevicePage(ctx, inventory.DeviceFilter{}, after, inventory.MaxBatch)
		if err != nil {
			return nil, internal(err)
		}
		for _, r := range page {
			out = append(out, monitor.Summary(r.Device, r.Active, pol, now))
		}
		if len(page) < inventory.MaxBatch {
			return out, nil
		}
		after = page[len(page)-1].Device.ID
	}
}

// ListPage answers device/list: the devices after r.Cursor that match r's filters, in id
// order, at most r.PageSize() and at most protocol.MaxDeviceListBytes of them encoded, so the
// answer always fits in one message. NextCursor is set when more devices may follow.
func (s *Service) ListPage(ctx context.Context, r protocol.DeviceListRequest) (protocol.DeviceList, error) {
	limit := r.PageSize()
	after, err := r.After()
	if err != nil {
		return protocol.DeviceList{}, err
	}
	f := inventory.DeviceFilter{State: r.State, Family: r.Family, Class: r.Class, Online: r.Online}
	// One more than asked tells whether another page follows, while the batch allows it.
	fetch := min(limit+1, inventory.MaxBatch)
	page, err := s.cfg.Store.DevicePage(ctx, f, after, fetch)
	if err != nil {
		return protocol.DeviceList{}, internal(err)
	}
	now, pol := s.cfg.Now(), s.cfg.Policy()
	out := protocol.DeviceList{Devices: []protocol.DeviceSummary{}}
	size := 0
	for i, rec := range page {
		if i == limit {
			break
		}
		sum := monitor.Summary(rec.Device, rec.Active, pol, now)
		b, err := json.Marshal(sum)
		if err != nil {
			return protocol.DeviceList{}, internal(err)
		}
		if size += len(b) + 1; size > protocol.MaxDeviceListBytes && len(out.Devices) > 0 {
			break
		}
		out.Devices = append(out.Devices, sum)
	}
	if len(page) == fetch || len(out.Devices) < min(len(page), limit) {
		out.NextCursor = protocol.DeviceCursor(out.Devices[len(out.Devices)-1].ID)
	}
	return out, nil
}

// Get returns one device with its certificates (without their PEM), recent attempts and
// events.
func (s *Service) Get(ctx context.Context, id string) (protocol.DeviceDetail, error) {
	d, err := s.device(ctx, id)
	if err != nil {
		return protocol.DeviceDetail{}, err
	}
	certs, err := s.cfg.Store.Certificates(ctx, id)
	if err != nil {
		return protocol.DeviceDetail{}, internal(err)
	}
	atts, err := s.cfg.Store.Attempts(ctx, id, 20)
	if err != nil {
		return protocol.DeviceDetail{}, internal(err)
	}
	evs, err := s.cfg.Store.Events(ctx, inventory.EventFilter{DeviceID: id, Limit: 20})
	if err != nil {
		return protocol.DeviceDetail{}, internal(err)
	}
	return protocol.DeviceDetail{DeviceSummary: monitor.Summary(d, s.active(ctx, id), s.cfg.Policy(), s.cfg.Now()), Device: deviceRecord(d),
		Certificates: certificateRecords(certs), Attempts: attemptRecords(atts), Events: auditEvents(evs)}, nil
}

// CommandTimeout is how long an agent has to act on a command, unless Renew is given a
// deadline.
const CommandTimeout = 10 * time.Minute

// Renew queues a renew (or rekey) command for the device, acted on before deadline (zero:
// CommandTimeout from now). The device state machine sends it once the device has a session
// subscribed to its command topic, and again on each new subscription (after a hub restart
// too) until the device sends a CSR.
func (s *Service) Renew(ctx context.Context, id string, action protocol.Action, reason string, deadline time.Time) (protocol.DeviceRenewed, error) {
	if _, err := s.device(ctx, id); err != nil {
		return protocol.DeviceRenewed{}, err
	}
	if s.cfg.Commands == nil {
		return protocol.DeviceRenewed{}, internal(errors.New("renew commands need the device state machine"))
	}
	now := s.cfg.Now().UTC().Truncate(time.Second)
	if deadline.IsZero() {
		deadline = now.Add(CommandTimeout)
	}
	cmd := protocol.Command{V: protocol.Version, CommandID: newID("cmd"), Action: action, Reason: reason,
		Deadline: deadline.UTC().Truncate(time.Second), HubTime: now}
	err := s.cfg.Commands.Command(ctx, id, lifecycle.Command{ID: cmd.CommandID, Action: string(action), Reason: protocol.ClipText(reason),
		Deadline: cmd.Deadline})
	if err != nil {
		return protocol.DeviceRenewed{}, internal(err)
	}
	if _, err := s.cfg.Store.AppendEvent(ctx, inventory.Event{Time: now, Kind: protocol.EventRenewalRequested, DeviceID: id,
		Message: reason, Data: map[string]string{"command_id": cmd.CommandID, "action": string(action)}}); err != nil {
		return protocol.DeviceRenewed{}, internal(err)
	}
	s.cfg.Notify(protocol.Event{V: protocol.Version, Type: protocol.EventRenewalCommanded, Time: now, DeviceID: id,
		Message: fmt.Sprintf("%s command %s sent: %s", action, cmd.CommandID, reason),
		Data:    map[string]string{"command_id": cmd.CommandID}})
	return protocol.DeviceRenewed{ID: id, CommandID: cmd.CommandID, Deadline: cmd.Deadline}, nil
}

// Revoke revokes the device's identity (serial "": every certificate it holds, its request
// in flight; the device is quarantined until enrolled again with a new token) or one of its
// certificates, through the device state machine, then drops the device's live sessions
// and regenerates the CRL. The broker refuses the revoked certificates from the moment the
// revocation is stored, so a device that reconnects comes back only on a certificate still
// valid.
func (s *Service) Revoke(ctx context.Context, id, serial string, rv inventory.Revocation) (protocol.DeviceRevoked, error) {
	if _, err := s.device(ctx, id); err != nil {
		return protocol.DeviceRevoked{}, err
	}
	if s.cfg.Revoker == nil {
		return protocol.DeviceRevoked{}, errors.New("revoke needs the device state machine")
	}
	if rv.Reason == "" {
		rv.Reason = protocol.RevokeUnspecified
	}
	if serial != "" {
		c, err := s.cfg.Store.Certificate(ctx, serial)
		if err != nil || c.DeviceID != id {
			return protocol.DeviceRevoked{}, &notFoundError{msg: fmt.Sprintf("device %q has no certificate %s", id, serial)}
		}
		serial = c.Serial
	}
	r, err := s.cfg.Revoker.Revoke(ctx, id, serial, rv)
	if err != nil {
		return protocol.DeviceRevoked{}, internal(err)
	}
	// The sessions close RevokeGrace after the revocation was stored, whatever the CRL's
	// size; the new CRL is published meanwhile (some 20 ms for a home's), so it reaches them
	// first.
	out := protocol.DeviceRevoked{ID: id, Revoked: len(r.Serials), Disconnected: s.cfg.Broker.DisconnectAfter(id, RevokeGrace),
		Reason: rv.Reason, Serial: serial, Quarantined: r.Identity}
	s.cfg.Revoked(ctx)
	what := fmt.Sprintf("%d certificate(s) revoked (%s)", len(r.Serials), rv.Reason)
	if r.Identity {
		what += "; the device is quarantined until it enrolls again"
	}
	if rv.Note != "" {
		what += ": " + rv.Note
	}
	s.cfg.Notify(protocol.Event{V: protocol.Version, Type: protocol.EventCertRevoked, Time: r.At.UTC(), DeviceID: id,
		Message: what, Data: map[string]string{"reason": string(rv.Reason), "serial": serial}})
	s.cfg.DeviceChanged(id)
	return out, nil
}

// Remove revokes the device's certificates, deletes it from the inventory (its certificates
// and events stay for the audit) and clears its retained topics (its bridge/device topic is
// cleared by whoever DeviceChanged tells).
func (s *Service) Remove(ctx context.Context, id string) (protocol.DeviceRevoked, error) {
	out, err := s.Revoke(ctx, id, "", inventory.Revocation{Reason: protocol.RevokeCessationOfOperation, Note: "device removed"})
	if err != nil {
		return out, err
	}
	if err := s.cfg.Store.RemoveDevice(ctx, id, s.cfg.Now()); err != nil {
		return out, internal(err)
	}
	for _, k := range []protocol.Kind{protocol.KindRenewal, protocol.KindState} {
		if err := s.cfg.Broker.Publish(s.cfg.Topics.Device(id, k), nil, true); err != nil {
			s.cfg.Logger.Warn("clear retained topic", "device", id, "kind", k, "err", err)
		}
	}
	out.Removed = true
	s.cfg.DeviceChanged(id)
	return out, nil
}

// CAInfo describes the hub's root and intermediate.
func (s *Service) CAInfo() protocol.CAInfo {
	info := func(c *x509.Certificate) protocol.CACertificate {
		return protocol.CACertificate{Subject: c.Subject.String(), Serial: c.SerialNumber.Text(16), NotBefore: c.NotBefore,
			NotAfter: c.NotAfter, Fingerprint: protocol.FingerprintOf(c).String()}
	}
	out := protocol.CAInfo{Intermediate: info(s.cfg.CA.Intermediate()), Root: info(s.cfg.CA.Root())}
	opt := func(c *x509.Certificate) *protocol.CACertificate {
		if c == nil {
			return nil
		}
		i := info(c)
		return &i
	}
	out.Previous, out.PreviousRoot, out.Cross = opt(s.cfg.CA.Previous()), opt(s.cfg.CA.PreviousRoot()), opt(s.cfg.CA.Cross())
	return out
}

// CAStatus is CAInfo with the latest intermediate rotation and its progress.
func (s *Service) CAStatus(ctx context.Context) (protocol.CAInfo, error) {
	if s.cfg.Rotation == nil {
		return s.CAInfo(), nil
	}
	// Status first: it may retire the previous intermediate.
	rot, err := s.cfg.Rotation.Status(ctx)
	if err != nil {
		return protocol.CAInfo{}, internal(err)
	}
	out := s.CAInfo()
	out.Rotation = rot
	return out, nil
}

// Rotate runs ca/rotate-intermediate (root false) or ca/rotate-root: a new intermediate (and
// root) in force and a re-key campaign moving every device onto it (see internal/rotation).
func (s *Service) Rotate(ctx context.Context, r protocol.CARotateRequest, root bool) (protocol.CARotation, error) {
	if s.cfg.Rotation == nil || s.cfg.Scheduler == nil {
		return protocol.CARotation{}, errors.New("CA rotations need the renewal scheduler and the rotation")
	}
	res, err := s.cfg.Rotation.Rotate(ctx, rotation.Request{CARotateRequest: r, Root: root})
	if err != nil {
		return protocol.CARotation{}, err
	}
	if !r.DryRun {
		s.cfg.Changed()
	}
	return res.Rotation, nil
}

func (s *Service) device(ctx context.Context, id string) (inventory.Device, error) {
	d, err := s.cfg.Store.Device(ctx, id)
	if errors.Is(err, inventory.ErrNotFound) {
		return d, &notFoundError{fmt.Sprintf("device %q is not in the inventory", id)}
	}
	if err != nil {
		return d, internal(err)
	}
	return d, nil
}

func (s *Service) active(ctx context.Context, id string) *inventory.Certificate {
	c, err := s.cfg.Store.ActiveCertificate(ctx, id)
	if err != nil {
		return nil
	}
	return &c
}

func newID(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
