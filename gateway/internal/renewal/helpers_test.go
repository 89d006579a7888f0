package renewal

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

const day = 24 * time.Hour

// t0 is the tests' "now" outside synctest bubbles.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// command is one command the fake commander took up.
type command struct {
	ID        string // the device
	CommandID string
	Action    protocol.Action
	Reason    string
	Deadline  time.Time
	At        time.Time
}

// commander is a fake Commander: it records the commands queued, and refuses those fail
// chooses (the scheduler has stored them already).
type commander struct {
	mu    sync.Mutex
	now   func() time.Time
	fail  func(id string) error
	calls []command
}

func (c *commander) Queue(_ context.Context, id string, cmd inventory.Command) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		if err := c.fail(id); err != nil {
			return err
		}
	}
	c.calls = append(c.calls, command{ID: id, CommandID: cmd.ID, Action: protocol.Action(cmd.Action), Reason: cmd.Reason,
		Deadline: cmd.Deadline, At: c.now()})
	return nil
}

// commands returns the commands queued so far.
func (c *commander) commands() []command {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]command(nil), c.calls...)
}

// ids returns the devices commanded so far, in order.
func (c *commander) ids() []string {
	var out []string
	for _, x := range c.commands() {
		out = append(out, x.ID)
	}
	return out
}

// publisher records the windows published.
type publisher struct {
	mu      sync.Mutex
	serials []string
}

func (p *publisher) publish(_ context.Context, c inventory.Certificate, _ policy.Window, _ time.Time) {
	p.mu.Lock()
	p.serials = append(p.serials, c.Serial)
	p.mu.Unlock()
}

func (p *publisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.serials)
}

// notes records notified events.
type notes struct {
	mu     sync.Mutex
	events []protocol.Event
}

func (n *notes) notify(e protocol.Event) {
	n.mu.Lock()
	n.events = append(n.events, e)
	n.mu.Unlock()
}

func (n *notes) kinds() map[protocol.EventType]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[protocol.EventType]int{}
	for _, e := range n.events {
		out[e.Type]++
	}
	return out
}

// fixture is a real inventory with a scheduler on it.
type fixture struct {
	t     *testing.T
	path  string
	store *inventory.Store
	clock *testkit.Clock
	cmd   *commander
	pub   *publisher
	notes *notes
	cfg   Config
	s     *Scheduler
	gen   int // issuance counter, for unique serials and request ids
}

// newFixture opens a store in a temp dir and a scheduler with a settable clock at now (zero:
// time.Now, for tests in a synctest bubble). cfg
// fields left zero take the scheduler's defaults; Store, Commander, Now, PublishWindow and
// Notify are set here.
func newFixture(t *testing.T, now time.Time, cfg Config) *fixture {
	t.Helper()
	f := &fixture{t: t, path: filepath.Join(t.TempDir(), "hearth.db"), pub: &publisher{}, notes: &notes{}}
	nowFunc := time.Now // in a synctest bubble: the bubble's clock
	if !now.IsZero() {
		f.clock = testkit.NewClock(now)
		nowFunc = f.clock.Now
	}
	f.cmd = &commander{now: nowFunc}
	f.open()
	t.Cleanup(func() { f.store.Close() })
	cfg.Commander, cfg.Now, cfg.PublishWindow, cfg.Notify = f.cmd, nowFunc, f.pub.publish, f.notes.notify
	f.cfg = cfg
	f.restart()
	return f
}

// enter moves f into the synctest bubble whose test is t: the scheduler must be created in
// the bubble (its channels must belong to it), the store outside (gorm's statement cache
// starts a goroutine that never ends, which a bubble refuses).
func (f *fixture) enter(t *testing.T) {
	f.t = t
	f.s = New(f.cfg)
}

// open opens (or reopens) the store.
func (f *fixture) open() {
	f.t.Helper()
	s, err := inventory.Open(context.Background(), f.path)
	if err != nil {
		f.t.Fatalf("inventory.Open() = %v", err)
	}
	f.store = s
}

// restart replaces the scheduler with a new one on a reopened store, as a hub restart does.
func (f *fixture) restart() {
	if f.store != nil && f.s != nil {
		f.store.Close()
		f.open()
	}
	f.cfg.Store = f.store
	f.s = New(f.cfg)
}

// reconcile runs one pass at the clock's time.
func (f *fixture) reconcile() Report {
	f.t.Helper()
	rep, err := f.s.Reconcile(context.Background())
	if err != nil {
		f.t.Fatalf("Reconcile() at %s = %v", f.cfg.Now(), err)
	}
	return rep
}

// spec describes a device to enroll.
type spec struct {
	id, family string
	tags       []string
	manual     bool
	offline    bool
}

// enroll records a device with an active certificate valid from nb for life.
func (f *fixture) enroll(d spec, nb time.Time, life time.Duration) inventory.Certificate {
	f.t.Helper()
	mech := inventory.MechanismAgent
	if d.manual {
		mech = inventory.MechanismManual
	}
	dev := inventory.Device{ID: d.id, Family: d.family, Tags: d.tags, Path: inventory.PathDirect, Mechanism: mech}
	c := f.issue(dev, nb, life, "enroll")
	if err := f.store.SetOnline(context.Background(), d.id, !d.offline, nb); err != nil {
		f.t.Fatalf("SetOnline(%s) = %v", d.id, err)
	}
	f.s.Touch(d.id) // as the hub does after the presence it records
	return c
}

// renew records and activates a new certificate of the device valid from nb, as a commit
// does; it does not call the Committed hook, only Touch (as the hub does after every change
// of a device's stored state).
func (f *fixture) renew(id string, nb time.Time, life time.Duration) inventory.Certificate {
	f.t.Helper()
	c := f.issue(inventory.Device{ID: id}, nb, life, "command")
	f.s.Touch(id)
	return c
}

func (f *fixture) issue(dev inventory.Device, nb time.Time, life time.Duration, reason string) inventory.Certificate {
	f.t.Helper()
	f.gen++
	h := sha256.Sum256(fmt.Appendf(nil, "%s/%d", dev.ID, f.gen))
	c := inventory.Certificate{Serial: hex.EncodeToString(h[:10]), NotBefore: nb, NotAfter: nb.Add(life),
		Issuer: "Hearth Intermediate", KeyAlgorithm: "ECDSA-P256", Fingerprint: hex.EncodeToString(h[:]),
		PEM: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"}
	req := fmt.Sprintf("req-%d", f.gen)
	ctx := context.Background()
	err := f.store.RecordIssuance(ctx, inventory.Issuance{Device: dev, Cert: c,
		Attempt: inventory.Attempt{RequestID: req, Reason: reason, StartedAt: nb, FinishedAt: nb}})
	if err != nil {
		f.t.Fatalf("RecordIssuance(%s) = %v", dev.ID, err)
	}
	if _, _, err := f.store.Activate(ctx, dev.ID, c.Serial, nb); err != nil {
		f.t.Fatalf("Activate(%s, %s) = %v", dev.ID, c.Serial, err)
	}
	if err := f.store.FinishAttempt(ctx, dev.ID, req, inventory.OutcomeCommitted, "", nb); err != nil {
		f.t.Fatalf("FinishAttempt(%s) = %v", dev.ID, err)
	}
	c.DeviceID = dev.ID
	return c
}

// status returns the device's stored renewal status.
func (f *fixture) status(id string) inventory.RenewalStatus {
	f.t.Helper()
	d, err := f.store.Device(context.Background(), id)
	if err != nil {
		f.t.Fatalf("Device(%s) = %v", id, err)
	}
	return d.Renewal
}

// events returns the stored events of a kind.
func (f *fixture) events(kind protocol.EventType) []inventory.Event {
	f.t.Helper()
	evs, err := f.store.Events(context.Background(), inventory.EventFilter{Kind: kind})
	if err != nil {
		f.t.Fatalf("Events(%s) = %v", kind, err)
	}
	return evs
}

// window is the default policy's window of c.
func window(d spec, c inventory.Certificate) policy.Window {
	return policy.Default().Window(policy.Subject{DeviceID: d.id, Family: d.family, Tags: d.tags},
		policy.CertInfo{Serial: c.Serial, NotBefore: c.NotBefore, NotAfter: c.NotAfter}, c.NotBefore)
}

var errBrokerDown = errors.New("broker down")
