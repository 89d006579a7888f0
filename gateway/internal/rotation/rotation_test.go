package rotation

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/crl"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
	"github.com/hearth-pki/hearth/protocol"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// campaigns stands in for the renewal scheduler: it takes every device with an active
// certificate and remembers the campaigns started. (The scheduler's own campaigns are
// tested in internal/renewal and end to end in cmd/hearth-gateway.)
type campaigns struct {
	store   *inventory.Store
	mu      sync.Mutex
	started []protocol.Campaign
}

func (c *campaigns) PlanCampaign(ctx context.Context, _ protocol.Campaign) ([]inventory.CampaignDevice, error) {
	devs, err := c.store.Devices(ctx)
	if err != nil {
		return nil, err
	}
	var out []inventory.CampaignDevice
	for _, d := range devs {
		if a, err := c.store.ActiveCertificate(ctx, d.ID); err == nil {
			out = append(out, inventory.CampaignDevice{DeviceID: d.ID, Serial: a.Serial})
		}
	}
	return out, nil
}

func (c *campaigns) StartCampaign(ctx context.Context, camp protocol.Campaign) (protocol.CampaignStatus, error) {
	picked, err := c.PlanCampaign(ctx, camp)
	if err != nil {
		return protocol.CampaignStatus{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.started = append(c.started, camp)
	return protocol.CampaignStatus{Campaign: camp, State: protocol.CampaignRunning, Total: len(picked)}, nil
}

func (c *campaigns) Campaigns(context.Context) ([]protocol.CampaignStatus, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []protocol.CampaignStatus
	for _, camp := range c.started {
		out = append(out, protocol.CampaignStatus{Campaign: camp, State: protocol.CampaignRunning})
	}
	return out, nil
}

type fixture struct {
	ca        *ca.CA
	dir, data string
	store     *inventory.Store
	camps     *campaigns
	crl       *crl.Publisher
	clock     *testkit.Clock
	pass      []byte
	mu        sync.Mutex
	events    []protocol.Event
	switched  int
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{data: t.TempDir(), store: hubkit.Store(t), clock: testkit.NewClock(t0), pass: []byte(hubkit.Passphrase)}
	f.dir = filepath.Join(f.data, "ca")
	var err error
	if f.ca, err = ca.InitWithIterations(f.dir, f.pass, t0.Add(-24*time.Hour), ca.MinIterations); err != nil {
		t.Fatal(err)
	}
	f.camps = &campaigns{store: f.store}
	if f.crl, err = crl.New(crl.Config{Store: f.store, CA: f.ca, Path: filepath.Join(f.data, "crl.pem"),
		PreviousPath: filepath.Join(f.data, "crl-previous.pem"), RootPath: filepath.Join(f.data, "crl-root.pem"), Now: f.clock.Now}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) rotator(t testing.TB) *Rotator {
	t.Helper()
	r, err := New(Config{CA: f.ca, Dir: f.dir, Passphrase: func() ([]byte, error) { return f.pass, nil }, Store: f.store,
		Campaigns: f.camps, CRL: f.crl, Now: f.clock.Now,
		Switched: func(context.Context) { f.mu.Lock(); f.switched++; f.mu.Unlock() },
		Notify:   func(e protocol.Event) { f.mu.Lock(); f.events = append(f.events, e); f.mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// enroll signs a certificate for device id with the intermediate in force and commits it.
func (f *fixture) enroll(t testing.TB, id string, n int) *x509.Certificate {
	t.Helper()
	csr := testkit.NewCSR(t, testkit.NewKey(t), &x509.CertificateRequest{Subject: pkix.Name{CommonName: id}})
	cert, err := f.ca.SignLeaf(csr, id, policy.Profile{NotBefore: t0.Add(-time.Minute), NotAfter: t0.Add(30 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	serial, req := cert.SerialNumber.Text(16), id+"-"+string(rune('a'+n))
	if err := f.store.RecordIssuance(t.Context(), inventory.Issuance{
		Device: inventory.Device{ID: id, Mechanism: inventory.MechanismAgent},
		Cert: inventory.Certificate{Serial: serial, NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, Issuer: cert.Issuer.String(),
			PEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})), CreatedAt: f.clock.Now()},
		Attempt: inventory.Attempt{RequestID: req, StartedAt: f.clock.Now(), FinishedAt: f.clock.Now()},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Commit(t.Context(), id, req, serial, false, f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	return cert
}

// move re-keys device id onto the intermediate in force, as a campaign does, and tells r of
// the commit as the hub's state machine path does.
func (f *fixture) move(t *testing.T, r *Rotator, id string, n int) {
	t.Helper()
	prev, err := f.store.ActiveCertificate(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	f.enroll(t, id, n)
	r.Committed(t.Context(), prev.Serial)
}

// countingStore counts the inventory's fleet-wide counts of a previous intermediate's devices.
type countingStore struct {
	*inventory.Store
	mu     sync.Mutex
	counts int
}

func (s *countingStore) CountActiveIssuedBy(ctx context.Context, issuer string) (int, error) {
	s.mu.Lock()
	s.counts++
	s.mu.Unlock()
	return s.Store.CountActiveIssuedBy(ctx, issuer)
}

func (s *countingStore) asked() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts
}

// TestRemainingWithoutCounting: while devices move, checks and Status take the devices
// remaining from the commits reported, not from a count over the inventory; the inventory
// is counted at the start, every RecountEvery (a device that left another way, here
// revoked, is seen then), and when the commits bring the remaining count to zero, before
// the retirement.
func TestRemainingWithoutCounting(t *testing.T) {
	f := newFixture(t)
	ids := []string{"cam", "plug", "lock", "bell"}
	for i, id := range ids {
		f.enroll(t, id, i)
	}
	cs := &countingStore{Store: f.store}
	r := f.rotator(t)
	r.cfg.Store = cs
	if _, err := r.Rotate(t.Context(), Request{}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name      string
		do        func()
		remaining int
		counts    int // fleet-wide counts so far
	}{
		{"first check", func() {}, 4, 1},
		{"checks again", func() { status(t, r); status(t, r) }, 4, 1},
		{"a device moves", func() { f.move(t, r, "cam", 9) }, 3, 1},
		{"a commit on the new intermediate", func() { f.move(t, r, "cam", 10) }, 3, 1},
		{"a device revoked: not seen before the recount", func() {
			a, err := f.store.ActiveCertificate(t.Context(), "bell")
			if err != nil {
				t.Fatal(err)
			}
			if err := f.store.Revoke(t.Context(), a.Serial, "stolen", f.clock.Now()); err != nil {
				t.Fatal(err)
			}
		}, 3, 1},
		{"the recount", func() { f.clock.Add(RecountEvery) }, 2, 2},
		{"one more moves", func() { f.move(t, r, "plug", 9) }, 1, 2},
	}
	for _, st := range steps {
		st.do()
		got := status(t, r)
		if got.Remaining != st.remaining || cs.asked() != st.counts {
			t.Fatalf("%s: Status() remaining %d after %d counts; want %d after %d", st.name, got.Remaining, cs.asked(), st.remaining, st.counts)
		}
	}
	// The last commit brings it to zero: counted, and retired.
	f.move(t, r, "lock", 9)
	if got := status(t, r); got.State != protocol.RotationRetired || cs.asked() != 3 {
		t.Fatalf("after the last device moved: %+v after %d counts; want retired after 3", got, cs.asked())
	}
	// Zero by the commits but not by the count: a commit reported twice does not retire.
	f2 := newFixture(t)
	f2.enroll(t, "cam", 0)
	f2.enroll(t, "plug", 0)
	r2 := f2.rotator(t)
	if _, err := r2.Rotate(t.Context(), Request{}); err != nil {
		t.Fatal(err)
	}
	status(t, r2)
	prev, _ := f2.store.ActiveCertificate(t.Context(), "cam")
	f2.enroll(t, "cam", 5)
	r2.Committed(t.Context(), prev.Serial)
	r2.Committed(t.Context(), prev.Serial)
	if got := status(t, r2); got.State != protocol.RotationMoving || got.Remaining != 1 || f2.ca.Previous() == nil {
		t.Fatalf("with a device still on the previous intermediate: %+v; want moving, 1 remaining (counted)", got)
	}
}

func (f *fixture) steps() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, e := range f.events {
		out = append(out, e.Data["step"])
	}
	return out
}

func status(t *testing.T, r *Rotator) protocol.CARotation {
	t.Helper()
	st, err := r.Status(t.Context())
	if err != nil || st == nil {
		t.Fatalf("Status() = %v, %v", st, err)
	}
	return *st
}

func TestRotationMovesAndRetires(t *testing.T) {
	for _, incident := range []bool{false, true} {
		name := map[bool]string{false: "rotate-intermediate", true: "intermediate-compromised"}[incident]
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			old := f.ca.Intermediate()
			for i, id := range []string{"cam", "plug", "lock"} {
				f.enroll(t, id, i)
			}
			r := f.rotator(t)

			dry, err := r.Rotate(t.Context(), Request{CARotateRequest: protocol.CARotateRequest{DryRun: true}, Incident: incident})
			if err != nil {
				t.Fatalf("Rotate(dry run) = %v", err)
			}
			if !dry.Rotation.DryRun || dry.Rotation.Devices != 3 || len(dry.Devices) != 3 || !f.ca.Intermediate().Equal(old) ||
				len(f.camps.started) != 0 || f.ca.Previous() != nil {
				t.Fatalf("Rotate(dry run) = %+v; want 3 devices planned and nothing changed", dry.Rotation)
			}
			f.pass = []byte("wrong")
			if _, err := r.Rotate(t.Context(), Request{CARotateRequest: protocol.CARotateRequest{DryRun: true}}); !errors.Is(err, ca.ErrWrongPassphrase) {
				t.Fatalf("Rotate(dry run, wrong passphrase) = %v, want ErrWrongPassphrase", err)
			}
			if _, err := r.Rotate(t.Context(), Request{Incident: incident}); !errors.Is(err, ca.ErrWrongPassphrase) {
				t.Fatalf("Rotate(wrong passphrase) = %v, want ErrWrongPassphrase", err)
			}
			if st, _ := r.Status(t.Context()); st != nil || f.ca.Previous() != nil {
				t.Fatalf("after a refused rotation: status %+v; want none, the old intermediate alone in force", st)
			}
			f.pass = []byte(hubkit.Passphrase)

			res, err := r.Rotate(t.Context(), Request{Incident: incident})
			if err != nil {
				t.Fatalf("Rotate() = %v", err)
			}
			rot := res.Rotation
			if rot.State != protocol.RotationMoving || rot.Devices != 3 || rot.Intermediate == nil || rot.Previous.Serial != old.SerialNumber.Text(16) ||
				!f.ca.Previous().Equal(old) || len(f.camps.started) != 1 || f.camps.started[0].Action != protocol.ActionRekey ||
				!f.camps.started[0].Selector.All || f.camps.started[0].Canary != 1 {
				t.Fatalf("Rotate() = %+v, campaigns %+v; want moving, 3 devices, a re-key campaign over all with one canary", rot, f.camps.started)
			}
			if incident != protocol.IsIncidentCampaign(rot.Campaign) {
				t.Errorf("campaign %q: an incident campaign %v, want %v", rot.Campaign, !incident, incident)
			}
			if st := status(t, r); st.Remaining != 3 || st.State != protocol.RotationMoving {
				t.Fatalf("Status() before any device moved = %+v; want 3 remaining", st)
			}
			// Two devices move; one is left: no retirement.
			f.move(t, r, "cam", 5)
			f.move(t, r, "plug", 5)
			if st := status(t, r); st.Remaining != 1 || f.ca.Previous() == nil {
				t.Fatalf("Status() with one device left = %+v; want 1 remaining, the old intermediate trusted", st)
			}
			// Running it again while under way: a new campaign over the devices left.
			f.clock.Add(time.Minute)
			again, err := r.Rotate(t.Context(), Request{})
			if err != nil || again.Rotation.State != protocol.RotationMoving || len(f.camps.started) != 2 || again.Rotation.Campaign == rot.Campaign {
				t.Fatalf("Rotate() under way = %+v, %v; want a second campaign", again.Rotation, err)
			}
			f.move(t, r, "lock", 5)
			st := status(t, r)
			if st.State != protocol.RotationRetired || st.Remaining != 0 || f.ca.Previous() != nil || st.Revoked != incident {
				t.Fatalf("Status() once every device moved = %+v; want retired (revoked %v)", st, incident)
			}
			want := []string{"rotated", "moving", "moving", "retired"}
			if incident {
				want = []string{"rotated", "moving", "moving", "revoked", "retired"}
			}
			if got := f.steps(); !equal(got, want) {
				t.Errorf("ca.rotation steps = %v, want %v", got, want)
			}
			last := parseCRL(t, f.crl.Previous())
			if last.CheckSignatureFrom(old) != nil || !last.NextUpdate.Equal(old.NotAfter.UTC().Truncate(time.Second)) {
				t.Errorf("last CRL of the retired intermediate: next update %v, want %v (its expiry)", last.NextUpdate, old.NotAfter)
			}
			root := f.crl.Root()
			if !incident {
				if root != nil {
					t.Error("a plain rotation signed a root CRL")
				}
				return
			}
			l := parseCRL(t, root)
			if l.CheckSignatureFrom(f.ca.Root()) != nil || len(l.RevokedCertificateEntries) != 1 ||
				l.RevokedCertificateEntries[0].SerialNumber.Cmp(old.SerialNumber) != 0 || l.RevokedCertificateEntries[0].ReasonCode != 1 {
				t.Errorf("root CRL after intermediate-compromised = %+v; want the old intermediate, keyCompromise, signed by the root", l.RevokedCertificateEntries)
			}
		})
	}
}

// TestRotationResumes: a hub stopped between the record and the CA's commit keeps the old
// intermediate and drops the record; one stopped after the commit, before the campaign,
// starts the campaign when it runs again.
func TestRotationResumes(t *testing.T) {
	t.Run("before the commit", func(t *testing.T) {
		f := newFixture(t)
		f.enroll(t, "cam", 0)
		r := f.rotator(t)
		if err := r.save(t.Context(), record{protocol.CARotation{State: stateRotating, Campaign: "rotate-intermediate-x", Started: t0}}); err != nil {
			t.Fatal(err)
		}
		if err := r.resume(t.Context()); err != nil {
			t.Fatalf("resume() = %v", err)
		}
		if st, err := r.Status(t.Context()); err != nil || st != nil || len(f.camps.started) != 0 || f.ca.Previous() != nil {
			t.Fatalf("after resuming an uncommitted rotation: status %+v, %v, campaigns %d; want none", st, err, len(f.camps.started))
		}
	})
	t.Run("after the commit", func(t *testing.T) {
		f := newFixture(t)
		f.enroll(t, "cam", 0)
		old := f.ca.Intermediate()
		r := f.rotator(t)
		if err := r.save(t.Context(), record{protocol.CARotation{State: stateRotating, Started: t0, Previous: Info(old),
			Campaign: "rotate-intermediate-" + stamp(t0)}}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.ca.RotateIntermediate(f.dir, f.pass, t0); err != nil {
			t.Fatal(err)
		}
		// The restarted hub loads the CA from disk.
		loaded, err := ca.Load(f.dir, f.pass)
		if err != nil {
			t.Fatal(err)
		}
		f.ca = loaded
		r = f.rotator(t)
		if err := r.resume(t.Context()); err != nil {
			t.Fatalf("resume() = %v", err)
		}
		st := status(t, r)
		if st.State != protocol.RotationMoving || st.Intermediate == nil || len(f.camps.started) != 1 || f.camps.started[0].ID != st.Campaign {
			t.Fatalf("after resuming a committed rotation: %+v, campaigns %+v; want moving with its campaign started", st, f.camps.started)
		}
		if f.switched != 1 {
			t.Errorf("resume switched the hub %d times, want 1 (bundle, broker certificate, CRL)", f.switched)
		}
	})
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func parseCRL(t *testing.T, raw []byte) *x509.RevocationList {
	t.Helper()
	b, _ := pem.Decode(raw)
	if b == nil {
		t.Fatal("no PEM CRL")
	}
	l, err := x509.ParseRevocationList(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
