package lease

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
)

// fakeStore is a lease table in memory, by the (fake) clock of the test's bubble; fail
// makes the next calls fail as an unreachable database would.
type fakeStore struct {
	mu       sync.Mutex
	holder   string
	term     int64
	expires  time.Time
	fail     bool
	released []string
}

func (f *fakeStore) AcquireLease(_ context.Context, name, holder string, ttl time.Duration) (inventory.LeaseGrant, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return inventory.LeaseGrant{}, false, errors.New("database unreachable")
	}
	now := time.Now()
	switch {
	case f.holder == holder && now.Before(f.expires):
	case f.holder == "" || !now.Before(f.expires):
		f.holder, f.term = holder, f.term+1
	default:
		return inventory.LeaseGrant{Holder: f.holder, Term: f.term, Expires: f.expires}, false, nil
	}
	f.expires = now.Add(ttl)
	return inventory.LeaseGrant{Holder: f.holder, Term: f.term, Expires: f.expires}, true, nil
}

func (f *fakeStore) ReleaseLease(_ context.Context, name, holder string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.released = append(f.released, holder)
	if f.holder == holder {
		f.expires = time.Now()
	}
	return nil
}

type change struct {
	leader bool
	term   int64
}

func TestLeaderUntilTTLWithoutRenewal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &fakeStore{}
		var changes []change
		l, err := New(Config{Store: store, Replica: "a", TTL: 9 * time.Second,
			Changed: func(leader bool, term int64) { changes = append(changes, change{leader, term}) }})
		if err != nil {
			t.Fatal(err)
		}
		ctx := t.Context()
		l.Tick(ctx)
		if _, ok := l.Leader(ctx); !ok || l.Term() != 1 {
			t.Fatalf("after the first Tick: Leader() = %v, Term() = %d, want leader in term 1", ok, l.Term())
		}
		// The database stops answering: leader until the last renewal's start + TTL, not after.
		store.mu.Lock()
		store.fail = true
		store.mu.Unlock()
		time.Sleep(8 * time.Second)
		l.Tick(ctx)
		if _, ok := l.Leader(ctx); !ok {
			t.Errorf("8 s after the last renewal (ttl 9 s): Leader() = false, want true")
		}
		time.Sleep(time.Second)
		if _, ok := l.Leader(ctx); ok {
			t.Errorf("9 s after the last renewal: Leader() = true, want false")
		}
		l.Tick(ctx)
		want := []change{{true, 1}, {false, 1}}
		if len(changes) != len(want) || changes[0] != want[0] || changes[1] != want[1] {
			t.Errorf("Changed calls = %v, want %v", changes, want)
		}
	})
}

func TestRunRenewsAndReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &fakeStore{}
		a, _ := New(Config{Store: store, Replica: "a", TTL: 3 * time.Second, Renew: time.Second})
		b, _ := New(Config{Store: store, Replica: "b", TTL: 3 * time.Second, Renew: time.Second})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { a.Run(ctx); close(done) }()
		synctest.Wait()
		// a renews every second: b never gets the lease, a stays in term 1.
		for range 10 {
			time.Sleep(time.Second)
			synctest.Wait()
			b.Tick(t.Context())
			if _, ok := b.Leader(t.Context()); ok {
				t.Fatal("b is leader while a renews")
			}
			if a.Term() != 1 {
				t.Fatalf("a.Term() = %d while renewing, want 1", a.Term())
			}
		}
		cancel()
		<-done
		if len(store.released) != 1 || store.released[0] != a.Holder() {
			t.Errorf("released = %v, want a's holder once", store.released)
		}
		b.Tick(t.Context())
		if b.Term() != 2 {
			t.Errorf("b.Term() right after a released = %d, want 2", b.Term())
		}
	})
}

func TestNewRefusesBadPeriods(t *testing.T) {
	store := &fakeStore{}
	for _, cfg := range []Config{
		{},
		{Store: store, TTL: 500 * time.Millisecond},
		{Store: store, TTL: 5 * time.Second, Renew: 5 * time.Second},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) = nil error, want one", cfg)
		}
	}
	a, _ := New(Config{Store: store, Replica: "a"})
	a2, _ := New(Config{Store: store, Replica: "a"})
	if a.Holder() == a2.Holder() {
		t.Errorf("two Leases of replica a share the holder %q, want one per process life", a.Holder())
	}
}

// TestFailoverOnPostgres: two replicas' Leases on one PostgreSQL inventory. The leader
// shuts down and releases; the other takes over in a higher term, and the old leader's
// fenced writes are refused by the database.
func TestFailoverOnPostgres(t *testing.T) {
	dsn := testkit.SharedPostgres(t).NewDatabase(t)
	var stores []*inventory.Store
	for range 2 {
		s, err := inventory.OpenPostgres(t.Context(), inventory.PostgresOptions{DSN: dsn})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
	}
	a, _ := New(Config{Store: stores[0], Replica: "a"})
	b, _ := New(Config{Store: stores[1], Replica: "b"})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	testkit.Eventually(t, 10*time.Second, func() bool { return a.Term() != 0 }, "a never became leader")
	fenced, _ := a.Leader(t.Context())
	b.Tick(t.Context())
	if b.Term() != 0 {
		t.Fatalf("b.Term() = %d while a leads, want 0", b.Term())
	}
	ev := inventory.Event{Time: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), Kind: "test.leader"}
	if _, err := stores[0].AppendEvent(fenced, ev); err != nil {
		t.Fatalf("a's write as leader = %v", err)
	}
	cancel()
	<-done
	b.Tick(t.Context())
	if b.Term() <= 1 {
		t.Fatalf("b.Term() after a released = %d, want a term above a's", b.Term())
	}
	if _, err := stores[0].AppendEvent(fenced, ev); !errors.Is(err, inventory.ErrFenced) {
		t.Errorf("a's write after the takeover = %v, want ErrFenced", err)
	}
	lead, ok := b.Leader(t.Context())
	if !ok {
		t.Fatal("b.Leader() = false after taking over")
	}
	if _, err := stores[1].AppendEvent(lead, ev); err != nil {
		t.Errorf("b's write as leader = %v", err)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	testkit.StopSharedPostgres()
	os.Exit(code)
}
