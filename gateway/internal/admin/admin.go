// Package admin is the one implementation of the hub's administrative operations. Bridge
// requests on MQTT, the CLI's control socket, the dashboard and Home Assistant's buttons all
// call Service.Do with an operation name and its JSON payload, and get the same
// protocol.BridgeResponse back.
//
// Operations: token/create, device/list, device/get, device/renew, device/revoke,
// device/remove, device/import, device/sign, campaign/start, campaign/list, policy/reload,
// events, audit/verify, ca/show. A Service is safe for concurrent use.
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
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/monitor"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/gateway/internal/renewal"
	"github.com/hearth-pki/hearth/gateway/internal/secret"
	"github.com/hearth-pki/hearth/protocol"
)

// Broker is what the service needs of the hub's MQTT broker.
type Broker interface {
	Publish(topic string, payload []byte, retain bool) error
	Disconnect(deviceID string) int
}

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
	// Scheduler, when set, takes device/renew (it commands the device now when online, on
	// reconnect otherwise, and retries until the device commits) and runs campaigns. Without
	// it, device/renew publishes one command and campaigns are unavailable.
	Scheduler Scheduler
	// Policy is the policy in force, for device/sign and for judging devices (their renewal
	// windows). Default policy.Default.
	Policy func() *policy.Policy
	// ReloadPolicy re-reads and applies the policy file, returning what changed.
	ReloadPolicy func(ctx context.Context) ([]string, error)
	Logger       *slog.Logger
}

// Scheduler is what the service needs of the renewal scheduler.
type Scheduler interface {
	Force(ctx context.Context, deviceID, reason string) error
	StartCampaign(ctx context.Context, c renewal.Campaign) (renewal.CampaignStatus, error)
	Campaigns(ctx context.Context) ([]renewal.CampaignStatus, error)
}

// Service runs administrative operations.
type Service struct{ cfg Config }

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
	return &Service{cfg: cfg}
}

// ErrUnknownOp is returned for an operation the service does not have.
var ErrUnknownOp = errors.New("unknown operation")

// Ops lists the operations in the order the docs present them.
func Ops() []string {
	return []string{"token/create", "device/list", "device/get", "device/renew", "device/revoke", "device/remove",
		"device/import", "device/sign", "campaign/start", "campaign/list", "policy/reload", "events", "audit/verify", "ca/show"}
}

// Do runs operation op with its JSON payload as actor (for the audit log) and returns the
// response; it never panics on bad input and always echoes the request's transaction.
func (s *Service) Do(ctx context.Context, actor, op string, payload []byte) protocol.BridgeResponse {
	var base protocol.BridgeRequest
	if len(payload) > protocol.MaxMessageSize {
		return errResponse("", protocol.CodeTooLarge, fmt.Errorf("payload of %d bytes over the limit", len(payload)))
	}
	if len(payload) == 0 {
		payload = []byte("{}")
	}
	_ = json.Unmarshal(payload, &base)
	ctx = inventory.WithActor(ctx, actor)
	data, err := s.do(ctx, op, payload)
	if err != nil {
		code := protocol.CodeBadRequest
		if errors.Is(err, errInternal) {
			code = protocol.CodeInternal
		}
		return errResponse(base.Transaction, code, err)
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return errResponse(base.Transaction, protocol.CodeInternal, err)
	}
	return protocol.BridgeResponse{Transaction: base.Transaction, Status: "ok", Data: raw}
}

var errInternal = errors.New("internal error")

func internal(err error) error { return fmt.Errorf("%w: %w", errInternal, err) }

func errResponse(tx string, code protocol.Code, err error) protocol.BridgeResponse {
	return protocol.BridgeResponse{Transaction: tx, Status: "error", Error: err.Error(), Code: code}
}

func (s *Service) do(ctx context.Context, op string, payload []byte) (any, error) {
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
			if s.cfg.Scheduler == nil {
				return s.Renew(ctx, r.ID, protocol.ActionRenew, reason)
			}
			if _, err := s.device(ctx, r.ID); err != nil {
				return nil, err
			}
			if err := s.cfg.Scheduler.Force(ctx, r.ID, reason); err != nil {
				return nil, err
			}
			return Renewal{ID: r.ID, Queued: true}, nil
		case "device/revoke":
			return s.Revoke(ctx, r.ID, firstNonEmpty(r.Reason, "revoked by an admin"))
		default:
			return s.Remove(ctx, r.ID)
		}
	case "events":
		var r struct {
			ID    string `json:"id"`
			Limit int    `json:"limit"`
		}
		if err := json.Unmarshal(payload, &r); err != nil {
			return nil, fmt.Errorf("events: %w", err)
		}
		return s.cfg.Store.Events(ctx, inventory.EventFilter{DeviceID: r.ID, Limit: max(1, min(r.Limit, 1000))})
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
		var c renewal.Campaign
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
		return map[string]any{"changed": diff}, nil
	case "audit/verify":
		if err := s.cfg.Store.VerifyAudit(ctx); err != nil {
			return nil, err
		}
		return map[string]string{"audit": "intact"}, nil
	case "ca/show":
		return s.CAInfo(), nil
	}
	return nil, fmt.Errorf("%w %q (have %v)", ErrUnknownOp, op, Ops())
}

// TokenCreated is the answer to token/create. Token is shown once and never stored.
type TokenCreated struct {
	ID        string    `json:"id"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	Command   string    `json:"command"`
}

// CreateToken makes a one-time enrollment token for a device id.
func (s *Service) CreateToken(ctx context.Context, r protocol.TokenRequest) (TokenCreated, error) {
	ttl, err := r.Lifetime(s.cfg.TokenTTL)
	if err != nil {
		return TokenCreated{}, err
	}
	now := s.cfg.Now().UTC().Truncate(time.Second)
	tok := secret.NewToken()
	err = s.cfg.Store.CreateToken(ctx, inventory.Token{Hash: secret.HashToken(tok), DeviceID: r.ID, Name: r.Name,
		Family: r.Family, CreatedAt: now, ExpiresAt: now.Add(ttl)})
	if err != nil {
		return TokenCreated{}, internal(err)
	}
	return TokenCreated{ID: r.ID, Token: tok, ExpiresAt: now.Add(ttl),
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

// Detail is the answer to device/get.
type Detail struct {
	protocol.DeviceSummary
	Device       inventory.Device        `json:"device"`
	Certificates []inventory.Certificate `json:"certificates"`
	Attempts     []inventory.Attempt     `json:"attempts"`
	Events       []inventory.Event       `json:"events"`
}

// Get returns one device with its certificates, recent attempts and events.
func (s *Service) Get(ctx context.Context, id string) (Detail, error) {
	d, err := s.device(ctx, id)
	if err != nil {
		return Detail{}, err
	}
	certs, err := s.cfg.Store.Certificates(ctx, id)
	if err != nil {
		return Detail{}, internal(err)
	}
	for i := range certs {
		certs[i].PEM = "" // the list stays readable; the PEM is in the inventory
	}
	atts, err := s.cfg.Store.Attempts(ctx, id, 20)
	if err != nil {
		return Detail{}, internal(err)
	}
	evs, err := s.cfg.Store.Events(ctx, inventory.EventFilter{DeviceID: id, Limit: 20})
	if err != nil {
		return Detail{}, internal(err)
	}
	return Detail{DeviceSummary: monitor.Summary(d, s.active(ctx, id), s.cfg.Policy(), s.cfg.Now()), Device: d,
		Certificates: certs, Attempts: atts, Events: evs}, nil
}

// Renewal is the answer to device/renew: the command sent, or, with the renewal scheduler,
// Queued (the scheduler commands the device at once when it is online, else when it
// reconnects, and retries until it commits).
type Renewal struct {
	ID        string    `json:"id"`
	CommandID string    `json:"command_id,omitempty"`
	Deadline  time.Time `json:"deadline,omitzero"`
	Queued    bool      `json:"queued,omitempty"`
}

// EventRenewRequested is the audit event of a renew command, with whoever asked as actor.
const EventRenewRequested = "renewal.requested"

// CommandTimeout is how long an agent has to act on a command.
const CommandTimeout = 10 * time.Minute

// Renew pushes a renew (or rekey) command to the device. Commands are not retained: a device
// that is offline misses it, and the renewal scheduler commands it again when it is back.
func (s *Service) Renew(ctx context.Context, id string, action protocol.Action, reason string) (Renewal, error) {
	if _, err := s.device(ctx, id); err != nil {
		return Renewal{}, err
	}
	now := s.cfg.Now().UTC().Truncate(time.Second)
	cmd := protocol.Command{V: protocol.Version, CommandID: newID("cmd"), Action: action, Reason: reason,
		Deadline: now.Add(CommandTimeout), HubTime: now}
	b, err := protocol.Encode(&cmd)
	if err != nil {
		return Renewal{}, internal(err)
	}
	if err := s.cfg.Broker.Publish(s.cfg.Topics.Device(id, protocol.KindCmd), b, false); err != nil {
		return Renewal{}, internal(err)
	}
	if _, err := s.cfg.Store.AppendEvent(ctx, inventory.Event{Time: now, Kind: EventRenewRequested, DeviceID: id,
		Message: reason, Data: map[string]string{"command_id": cmd.CommandID, "action": string(action)}}); err != nil {
		return Renewal{}, internal(err)
	}
	s.cfg.Notify(protocol.Event{V: protocol.Version, Type: "renewal.commanded", Time: now, DeviceID: id,
		Message: fmt.Sprintf("%s command %s sent: %s", action, cmd.CommandID, reason),
		Data:    map[string]string{"command_id": cmd.CommandID}})
	return Renewal{ID: id, CommandID: cmd.CommandID, Deadline: cmd.Deadline}, nil
}

// Revoked is the answer to device/revoke and device/remove.
type Revoked struct {
	ID           string `json:"id"`
	Revoked      int    `json:"revoked"`
	Disconnected int    `json:"disconnected"`
	Removed      bool   `json:"removed,omitempty"`
}

// Revoke revokes every certificate of the device, drops its live session and regenerates
// the CRL. The device needs a new enrollment token to come back.
func (s *Service) Revoke(ctx context.Context, id, reason string) (Revoked, error) {
	if _, err := s.device(ctx, id); err != nil {
		return Revoked{}, err
	}
	now := s.cfg.Now()
	n, err := s.cfg.Store.RevokeDevice(ctx, id, reason, now)
	if err != nil {
		return Revoked{}, internal(err)
	}
	if err := s.cfg.Store.SetState(ctx, id, inventory.StateQuarantined, now); err != nil {
		return Revoked{}, internal(err)
	}
	out := Revoked{ID: id, Revoked: n, Disconnected: s.cfg.Broker.Disconnect(id)}
	s.cfg.Revoked(ctx)
	s.cfg.Notify(protocol.Event{V: protocol.Version, Type: inventory.EventCertRevoked, Time: now.UTC(), DeviceID: id,
		Message: fmt.Sprintf("%d certificate(s) revoked: %s", n, reason)})
	s.cfg.DeviceChanged(id)
	return out, nil
}

// Remove revokes the device's certificates, deletes it from the inventory (its certificates
// and events stay for the audit) and clears its retained topics (its bridge/device topic is
// cleared by whoever DeviceChanged tells).
func (s *Service) Remove(ctx context.Context, id string) (Revoked, error) {
	out, err := s.Revoke(ctx, id, "device removed")
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

// CertInfo describes one CA certificate for ca/show.
type CertInfo struct {
	Subject     string    `json:"subject"`
	Serial      string    `json:"serial"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	Fingerprint string    `json:"fingerprint"`
}

// CAInfo describes the hub's root and intermediate.
func (s *Service) CAInfo() map[string]CertInfo {
	out := map[string]CertInfo{}
	for name, c := range map[string]*x509.Certificate{"root": s.cfg.CA.Root(), "intermediate": s.cfg.CA.Intermediate()} {
		out[name] = CertInfo{c.Subject.String(), c.SerialNumber.Text(16), c.NotBefore, c.NotAfter, ca.FingerprintOf(c)}
	}
	return out
}

func (s *Service) device(ctx context.Context, id string) (inventory.Device, error) {
	d, err := s.cfg.Store.Device(ctx, id)
	if errors.Is(err, inventory.ErrNotFound) {
		return d, fmt.Errorf("device %q is not in the inventory", id)
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
