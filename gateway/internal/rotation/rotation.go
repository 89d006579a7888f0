// Package rotation runs an intermediate rotation of the hub's CA (issue 12) from start to
// retirement: a new intermediate in force (ca.CA.RotateIntermediate, crash-safe), the bundle
// with both intermediates published, a re-key campaign that moves every device onto the new
// one, and, once no device's active certificate is the previous intermediate's, its
// retirement: its last CRL signed (valid until it expires), and for an incident its
// revocation on the root's CRL, then it is no longer trusted.
//
// Invariants:
//   - The rotation's record (inventory setting RecordKey) is written before the CA switches
//     and updated after each step, and every step can be taken again: a hub that stops at any
//     point resumes in Run (a record still "rotating" with no previous intermediate is a
//     rotation that never committed, and is dropped).
//   - Retirement waits for zero active certificates of the previous intermediate, as one
//     aggregate count of the inventory says. That count (it reads every active certificate
//     of the previous intermediate) is asked only when the rotation starts or resumes, when
//     the remaining count kept between counts reaches zero, and every RecountEvery;
//     otherwise the devices remaining are the last count less the commits the device state
//     machine reported since (Committed: one certificate looked up per commit), so a check
//     or a Status does no work that grows with the fleet. The kept count only ever says
//     when to count again: nothing is retired without a count of zero.
//
// A Rotator is safe for concurrent use; its steps are serialised. Run is its only goroutine.
package rotation

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/protocol"
)

// RecordKey is the inventory setting holding the latest rotation's record.
const RecordKey = "ca/rotation"

// CheckEvery is how often Run asks whether the previous intermediate can be retired.
const CheckEvery = 30 * time.Second

// RecountEvery is how often a rotation under way counts its remaining devices in the
// inventory even though no commit brought the kept count to zero: devices on the previous
// intermediate that left another way (removed, revoked) are seen then.
const RecountEvery = 10 * time.Minute

// The default campaign of a rotation: one canary, abort once a fifth failed, like the
// incident campaigns.
const (
	defaultCanary     = 1
	defaultAbortAfter = 0.2
)

// stateRotating is the record's state between its writing and the CA's switch.
const stateRotating protocol.RotationState = "rotating"

// Store is what a Rotator needs of the inventory.
type Store interface {
	Setting(ctx context.Context, key string) (string, error)
	SetSetting(ctx context.Context, key, value string) error
	CountActiveIssuedBy(ctx context.Context, issuer string) (int, error)
	Certificate(ctx context.Context, serial string) (inventory.Certificate, error)
	AppendEvent(ctx context.Context, e inventory.Event) (inventory.Event, error)
}

// Campaigns is what a Rotator needs of the renewal scheduler.
type Campaigns interface {
	PlanCampaign(ctx context.Context, c protocol.Campaign) ([]inventory.CampaignDevice, error)
	StartCampaign(ctx context.Context, c protocol.Campaign) (protocol.CampaignStatus, error)
	Campaigns(ctx context.Context) ([]protocol.CampaignStatus, error)
}

// CRL is what a Rotator needs of the CRL publisher.
type CRL interface {
	FinalPrevious(ctx context.Context) error
	RootCRL(ctx context.Context, sign func(number *big.Int, now time.Time) ([]byte, error)) (*x509.RevocationList, error)
}

// Config configures a Rotator; every field but Logger and Now is required.
type Config struct {
	CA *ca.CA
	// Dir is the CA directory.
	Dir string
	// Passphrase resolves the CA passphrase at the moment it is needed (the root key is
	// opened only to sign the new intermediate and the root's CRL).
	Passphrase func() ([]byte, error)
	Store      Store
	Campaigns  Campaigns
	CRL        CRL
	// Switched is called after the intermediates in force changed (a rotation's commit, a
	// retirement): the hub publishes the bundle, renews its broker certificate and the CRL.
	Switched func(ctx context.Context)
	// Notify publishes an event on bridge/event.
	Notify func(protocol.Event)
	Now    func() time.Time
	Logger *slog.Logger
}

// Rotator runs intermediate rotations.
type Rotator struct {
	cfg  Config
	mu   sync.Mutex
	kick chan struct{}

	// left is the devices still on the previous intermediate: the last count less the
	// commits since, -1 when it must be counted; counted is when it was (r.mu held).
	left    atomic.Int64
	counted time.Time
	// moving holds the previous intermediate's subject while devices move, else "".
	moving atomic.Pointer[string]
}

// New returns a Rotator. It starts nothing.
func New(cfg Config) (*Rotator, error) {
	if cfg.CA == nil || cfg.Dir == "" || cfg.Passphrase == nil || cfg.Store == nil || cfg.Campaigns == nil || cfg.CRL == nil ||
		cfg.Switched == nil || cfg.Notify == nil {
		return nil, errors.New("rotation: CA, Dir, Passphrase, Store, Campaigns, CRL, Switched and Notify are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Rotator{cfg: cfg, kick: make(chan struct{}, 1)}
	r.left.Store(-1)
	return r, nil
}

// Committed follows a commit the device state machine recorded, previous being the serial
// it superseded: while devices move, one that left the previous intermediate counts down
// the devices remaining, and the last one asks Run to check for retirement.
func (r *Rotator) Committed(ctx context.Context, previous string) {
	subject := r.moving.Load()
	if subject == nil || previous == "" {
		return
	}
	c, err := r.cfg.Store.Certificate(ctx, previous)
	if err != nil || c.Issuer != *subject {
		return
	}
	if r.left.Add(-1) <= 0 {
		r.Kick()
	}
}

// remaining returns how many devices' active certificates prev issued: counted in the
// inventory when the kept count is unknown, at zero or older than RecountEvery. r.mu is held.
func (r *Rotator) remaining(ctx context.Context, prev *x509.Certificate) (int, error) {
	subject := prev.Subject.String()
	r.moving.Store(&subject)
	now := r.cfg.Now()
	if n := r.left.Load(); n > 0 && now.Sub(r.counted) < RecountEvery {
		return int(n), nil
	}
	n, err := r.cfg.Store.CountActiveIssuedBy(ctx, subject)
	if err != nil {
		r.left.Store(-1)
		return 0, err
	}
	r.left.Store(int64(n))
	r.counted = now
	return n, nil
}

// record is the stored state of the latest rotation.
type record struct {
	protocol.CARotation
}

// Request asks for a rotation.
type Request struct {
	protocol.CARotateRequest
	// Incident marks incident/intermediate-compromised: the previous intermediate is
	// revoked on the root's CRL when it is retired.
	Incident bool
	// Root rotates the root too (ca/rotate-root): a new root cross-signed by the previous one
	// and a new intermediate under it (ca.CA.RotateRoot); the previous root retires with the
	// previous intermediate.
	Root bool
}

// Result is a rotation started (or planned, for a dry run): its state and the devices its
// campaign takes.
type Result struct {
	Rotation protocol.CARotation
	Devices  []inventory.CampaignDevice
}

// Rotate starts a rotation: a new intermediate in force and the campaign moving the devices
// onto it. While one is under way it starts a new campaign over the devices left (an aborted
// campaign retried). A dry run plans the campaign, checks that the passphrase opens the CA's
// keys, and changes nothing.
func (r *Rotator) Rotate(ctx context.Context, req Request) (Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.cfg.Now().UTC().Truncate(time.Second)
	camp := r.campaign(req, now)
	picked, err := r.cfg.Campaigns.PlanCampaign(ctx, camp)
	if err != nil {
		return Result{}, err
	}
	rec, err := r.load(ctx)
	if err != nil {
		return Result{}, err
	}
	prev := r.cfg.CA.Previous()
	if req.DryRun {
		rot := protocol.CARotation{DryRun: true, Incident: req.Incident, Root: req.Root, Previous: Info(r.cfg.CA.Intermediate()), Devices: len(picked)}
		if prev != nil {
			rot = rec.CARotation
			rot.DryRun, rot.Devices = true, len(picked)
			return Result{Rotation: rot, Devices: picked}, nil
		}
		pass, err := r.cfg.Passphrase()
		if err != nil {
			return Result{}, fmt.Errorf("CA passphrase: %w", err)
		}
		if err := ca.CheckKeys(r.cfg.Dir, pass); err != nil {
			return Result{}, fmt.Errorf("the CA keys do not open with the passphrase: %w", err)
		}
		return Result{Rotation: rot, Devices: picked}, nil
	}
	if prev == nil {
		rec = record{protocol.CARotation{State: stateRotating, Incident: req.Incident, Root: req.Root, Started: now,
			Previous: Info(r.cfg.CA.Intermediate()), Campaign: camp.ID}}
		if err := r.save(ctx, rec); err != nil {
			return Result{}, err
		}
		pass, err := r.cfg.Passphrase()
		if err != nil {
			return Result{}, r.abandon(ctx, fmt.Errorf("CA passphrase: %w", err))
		}
		rotate := r.cfg.CA.RotateIntermediate
		if req.Root {
			rotate = r.cfg.CA.RotateRoot
		}
		if _, err := rotate(r.cfg.Dir, pass, now); err != nil {
			return Result{}, r.abandon(ctx, err)
		}
		r.cfg.Logger.Info("new intermediate in force", "intermediate", r.cfg.CA.Intermediate().Subject.String(), "previous", rec.Previous.Subject,
			"root", r.cfg.CA.Root().Subject.String())
		if err := r.committed(ctx, &rec); err != nil {
			return Result{}, err
		}
	} else {
		// Under way: a new campaign over the devices still on the previous intermediate.
		if req.Root && !rec.Root {
			return Result{}, fmt.Errorf("%w: an intermediate rotation is under way; let it retire first", ca.ErrRotating)
		}
		rec.Campaign = camp.ID
		rec.Incident = rec.Incident || req.Incident
	}
	r.left.Store(-1) // counted at the next check
	st, err := r.cfg.Campaigns.StartCampaign(ctx, camp)
	if err != nil {
		return Result{}, err
	}
	rec.CampaignState, rec.Devices = st.State, st.Total
	if err := r.save(ctx, rec); err != nil {
		return Result{}, err
	}
	r.event(ctx, "moving", rec)
	r.Kick()
	return Result{Rotation: rec.CARotation, Devices: picked}, nil
}

// campaign is the re-key campaign of a rotation started at now.
func (r *Rotator) campaign(req Request, now time.Time) protocol.Campaign {
	c := protocol.Campaign{ID: "rotate-intermediate-" + stamp(now), Selector: protocol.CampaignSelector{All: true},
		Action: protocol.ActionRekey, Rate: req.Rate, Canary: req.Canary, AbortAfter: req.AbortAfter}
	switch {
	case req.Incident:
		c.ID = protocol.IncidentCampaignPrefix + "intermediate-" + stamp(now)
	case req.Root:
		c.ID = "rotate-root-" + stamp(now)
	}
	if c.Canary == 0 {
		c.Canary = defaultCanary
	}
	if c.AbortAfter == 0 {
		c.AbortAfter = defaultAbortAfter
	}
	return c
}

func stamp(now time.Time) string { return strings.ToLower(now.UTC().Format("20060102T150405Z")) }

// committed completes the record once the new intermediate is in force.
func (r *Rotator) committed(ctx context.Context, rec *record) error {
	rec.State = protocol.RotationMoving
	in := Info(r.cfg.CA.Intermediate())
	rec.Intermediate = &in
	if prev := r.cfg.CA.Previous(); prev != nil {
		rec.Previous = Info(prev)
	}
	if err := r.save(ctx, *rec); err != nil {
		return err
	}
	r.cfg.Switched(ctx)
	r.event(ctx, "rotated", *rec)
	return nil
}

// abandon drops the record of a rotation that failed before the CA switched.
func (r *Rotator) abandon(ctx context.Context, cause error) error {
	if err := r.cfg.Store.SetSetting(ctx, RecordKey, "{}"); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}

// Status returns the latest rotation, or nil when there was none, after retiring the
// previous intermediate if no device uses it any more.
func (r *Rotator) Status(ctx context.Context) (*protocol.CARotation, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, err := r.check(ctx)
	if err != nil || rec.State == "" {
		return nil, err
	}
	if rec.Campaign != "" {
		camps, err := r.cfg.Campaigns.Campaigns(ctx)
		if err != nil {
			return nil, err
		}
		for _, c := range camps {
			if c.ID == rec.Campaign {
				rec.CampaignState = c.State
			}
		}
	}
	return &rec.CARotation, nil
}

// Kick asks Run to check for retirement now.
func (r *Rotator) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run resumes a rotation a stop interrupted, then retires the previous intermediate once no
// device uses it, checking every CheckEvery and on Kick, until ctx ends.
func (r *Rotator) Run(ctx context.Context) error {
	if err := r.resume(ctx); err != nil {
		r.cfg.Logger.Error("resume the intermediate rotation", "err", err)
	}
	t := time.NewTicker(CheckEvery)
	defer t.Stop()
	for {
		r.mu.Lock()
		if _, err := r.check(ctx); err != nil && ctx.Err() == nil {
			r.cfg.Logger.Error("intermediate rotation", "err", err)
		}
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-r.kick:
		}
	}
}

// resume completes the steps a stop interrupted.
func (r *Rotator) resume(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, err := r.load(ctx)
	if err != nil || rec.State != stateRotating {
		return err
	}
	if r.cfg.CA.Previous() == nil {
		r.cfg.Logger.Warn("an intermediate rotation stopped before its commit: the previous intermediate stays in force; run it again")
		return r.abandon(ctx, nil)
	}
	if err := r.committed(ctx, &rec); err != nil {
		return err
	}
	camps, err := r.cfg.Campaigns.Campaigns(ctx)
	if err != nil {
		return err
	}
	for _, c := range camps {
		if c.ID == rec.Campaign {
			return nil
		}
	}
	st, err := r.cfg.Campaigns.StartCampaign(ctx, r.campaign(Request{Incident: rec.Incident, Root: rec.Root}, rec.Started))
	if err != nil {
		return err
	}
	rec.CampaignState, rec.Devices = st.State, st.Total
	if err := r.save(ctx, rec); err != nil {
		return err
	}
	r.event(ctx, "moving", rec)
	return nil
}

// check counts the devices still on the previous intermediate and retires it at zero. r.mu
// is held.
func (r *Rotator) check(ctx context.Context) (record, error) {
	rec, err := r.load(ctx)
	if err != nil || rec.State != protocol.RotationMoving {
		return rec, err
	}
	prev := r.cfg.CA.Previous()
	if prev == nil { // retired, the record not yet updated when the hub stopped
		return r.retired(ctx, rec)
	}
	n, err := r.remaining(ctx, prev)
	if err != nil {
		return rec, err
	}
	if n != rec.Remaining {
		rec.Remaining = n
		if err := r.save(ctx, rec); err != nil {
			return rec, err
		}
	}
	if n > 0 {
		return rec, nil
	}
	// Nobody uses the previous intermediate: its last CRL, its revocation for an incident,
	// then it is no longer trusted.
	if err := r.cfg.CRL.FinalPrevious(ctx); err != nil {
		return rec, fmt.Errorf("last CRL of the previous intermediate: %w", err)
	}
	if rec.Incident && !rec.Revoked {
		if err := r.revoke(ctx, prev); err != nil {
			return rec, err
		}
		rec.Revoked = true
		if err := r.save(ctx, rec); err != nil {
			return rec, err
		}
		r.event(ctx, "revoked", rec)
	}
	if _, err := r.cfg.CA.RetirePrevious(r.cfg.Dir); err != nil {
		return rec, err
	}
	return r.retired(ctx, rec)
}

// revoke lists prev on the root's CRL (keyCompromise), valid until prev expires.
func (r *Rotator) revoke(ctx context.Context, prev *x509.Certificate) error {
	pass, err := r.cfg.Passphrase()
	if err != nil {
		return fmt.Errorf("CA passphrase: %w", err)
	}
	_, err = r.cfg.CRL.RootCRL(ctx, func(number *big.Int, now time.Time) ([]byte, error) {
		return r.cfg.CA.RootCRL(r.cfg.Dir, pass, []ca.Revoked{{Serial: prev.SerialNumber, At: now, Reason: 1}}, number, now,
			max(prev.NotAfter.Sub(now), time.Hour))
	})
	if err != nil {
		return fmt.Errorf("revoke the previous intermediate: %w", err)
	}
	return nil
}

// retired records the retirement and tells.
func (r *Rotator) retired(ctx context.Context, rec record) (record, error) {
	r.moving.Store(nil)
	r.left.Store(-1)
	rec.State, rec.Retired, rec.Remaining = protocol.RotationRetired, r.cfg.Now().UTC().Truncate(time.Second), 0
	if err := r.save(ctx, rec); err != nil {
		return rec, err
	}
	r.cfg.Switched(ctx)
	r.event(ctx, "retired", rec)
	r.cfg.Logger.Info("previous intermediate retired", "previous", rec.Previous.Subject)
	return rec, nil
}

func (r *Rotator) load(ctx context.Context) (record, error) {
	var rec record
	v, err := r.cfg.Store.Setting(ctx, RecordKey)
	if errors.Is(err, inventory.ErrNotFound) {
		return rec, nil
	}
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal([]byte(v), &rec); err != nil {
		return rec, fmt.Errorf("rotation record: %w", err)
	}
	return rec, nil
}

func (r *Rotator) save(ctx context.Context, rec record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return r.cfg.Store.SetSetting(ctx, RecordKey, string(b))
}

// event records and publishes a ca.rotation step.
func (r *Rotator) event(ctx context.Context, step string, rec record) {
	now := r.cfg.Now().UTC().Truncate(time.Second)
	data := map[string]string{"step": step, "previous": rec.Previous.Subject, "campaign": rec.Campaign,
		"remaining": strconv.Itoa(rec.Remaining), "incident": strconv.FormatBool(rec.Incident)}
	if rec.Intermediate != nil {
		data["intermediate"] = rec.Intermediate.Subject
	}
	if rec.Root {
		data["root"] = r.cfg.CA.Root().Subject.String()
		if step == "rotated" {
			step, data["step"] = "rooted", "rooted"
		}
	}
	msg := map[string]string{
		"rotated": "new intermediate " + data["intermediate"] + " in force; " + rec.Previous.Subject + " still trusted while devices move",
		"rooted":  "new root " + data["root"] + ", cross-signed by the previous root, and its intermediate " + data["intermediate"] + " in force; the previous root and intermediate still trusted while devices move",
		"moving":  "campaign " + rec.Campaign + " moves the devices onto the new intermediate",
		"retired": "no device uses " + rec.Previous.Subject + " any more: it is retired and no longer trusted" + map[bool]string{true: ", nor the previous root"}[rec.Root],
		"revoked": rec.Previous.Subject + " is revoked on the root's CRL (keyCompromise)",
	}[step]
	if _, err := r.cfg.Store.AppendEvent(ctx, inventory.Event{Time: now, Kind: protocol.EventCARotation, Message: msg, Data: data}); err != nil {
		r.cfg.Logger.Warn("rotation event not recorded", "step", step, "err", err)
	}
	r.cfg.Notify(protocol.Event{V: protocol.Version, Type: protocol.EventCARotation, Time: now, Message: msg, Data: data})
}

// Info describes a CA certificate for the bridge.
func Info(c *x509.Certificate) protocol.CACertificate {
	return protocol.CACertificate{Subject: c.Subject.String(), Serial: c.SerialNumber.Text(16), NotBefore: c.NotBefore,
		NotAfter: c.NotAfter, Fingerprint: protocol.FingerprintOf(c).String()}
}
