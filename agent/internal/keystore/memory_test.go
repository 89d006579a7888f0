package keystore

import (
	"crypto/x509"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

// TestMemoryMatchesDir runs random sequences of installs, re-installs and rollbacks on a
// Memory and a Dir side by side: both must agree on every result and on the generations they
// hold after each step.
func TestMemoryMatchesDir(t *testing.T) {
	ca := newTestCA(t)
	pairs := []Pair{newPair(t, ca, 1), newPair(t, ca, 2), newPair(t, ca, 3)}
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 1))
		d := mustOpen(t, t.TempDir(), Options{})
		var m Memory
		var last Pair
		for step := range 12 {
			var dErr, mErr error
			what := ""
			switch k := r.IntN(3); {
			case k == 0:
				last = pairs[r.IntN(len(pairs))]
				what = "install " + last.Serial()
				dErr, mErr = d.Install(last.Key, last.Chain), m.Install(last.Key, last.Chain)
			case k == 1 && last.Key != nil:
				what = "reinstall " + last.Serial()
				dErr, mErr = d.Install(last.Key, last.Chain), m.Install(last.Key, last.Chain)
			default:
				what = "rollback"
				dErr, mErr = d.Rollback(), m.Rollback()
			}
			if (dErr == nil) != (mErr == nil) || errors.Is(dErr, ErrNoIdentity) != errors.Is(mErr, ErrNoIdentity) {
				t.Fatalf("seed %d step %d %s: Dir = %v, Memory = %v", seed, step, what, dErr, mErr)
			}
			for _, g := range []struct {
				name     string
				dir, mem func() (Pair, error)
			}{{"Current()", d.Current, m.Current}, {"Previous()", d.Previous, m.Previous}} {
				dp, dErr := g.dir()
				mp, mErr := g.mem()
				if dp.Serial() != mp.Serial() || (dErr == nil) != (mErr == nil) {
					t.Fatalf("seed %d step %d %s: %s = %q, %v on Dir, %q, %v on Memory", seed, step, what, g.name, dp.Serial(), dErr, mp.Serial(), mErr)
				}
			}
		}
	}
}

func TestMemoryRefusesBadInput(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	good, stranger := newPair(t, ca, 1), newPair(t, ca, 2)
	var m Memory
	if _, err := m.Current(); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("Current() on an empty Memory = %v, want ErrNoIdentity", err)
	}
	if _, err := m.CA(); !errors.Is(err, ErrNoCA) {
		t.Errorf("CA() on an empty Memory = %v, want ErrNoCA", err)
	}
	if err := m.Install(stranger.Key, good.Chain); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("Install(stranger's key) = %v, want ErrKeyMismatch", err)
	}
	foreign := newPair(t, other, 3)
	if err := m.Install(foreign.Key, []*x509.Certificate{foreign.Chain[0], ca.Intermediate}); !errors.Is(err, ErrChain) {
		t.Errorf("Install(foreign leaf) = %v, want ErrChain", err)
	}
	if _, err := m.Current(); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("Current() after refused installs = %v, want ErrNoIdentity", err)
	}
	if err := m.WriteCA([]*x509.Certificate{good.Chain[0]}); err == nil {
		t.Errorf("WriteCA(leaf) = nil, want an error")
	}
	if err := m.WriteCA([]*x509.Certificate{ca.Intermediate, ca.Root}); err != nil {
		t.Fatalf("WriteCA(chain) = %v", err)
	}
	if got, err := m.CA(); err != nil || len(got) != 2 || !got[1].Equal(ca.Root) {
		t.Errorf("CA() = %d certificates, %v; want the chain written", len(got), err)
	}
	if err := m.SaveState(State{Pending: &Pending{}}); err == nil {
		t.Errorf("SaveState(pending without id) = nil, want an error")
	}
}

func TestMemoryStateIsACopy(t *testing.T) {
	var m Memory
	s := State{LastKnownGood: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), Pending: &Pending{RequestID: "r1", Replaces: "ab"}}
	if err := m.SaveState(s); err != nil {
		t.Fatal(err)
	}
	s.Pending.RequestID = "changed"
	got, err := m.LoadState()
	if err != nil || got.Pending == nil || got.Pending.RequestID != "r1" || !got.LastKnownGood.Equal(s.LastKnownGood) {
		t.Fatalf("LoadState() = %+v, %v; want the state as saved", got, err)
	}
	got.Pending.Replaces = "changed"
	if again, _ := m.LoadState(); again.Pending.Replaces != "ab" {
		t.Errorf("changing a loaded State changed the saved one: Replaces = %q", again.Pending.Replaces)
	}
}
