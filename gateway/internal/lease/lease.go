// Package lease keeps one hub replica the leader of a named job (the renewal scheduler and
// its campaigns) among replicas sharing one PostgreSQL inventory.
//
// The lease lives in the database (inventory.Store.AcquireLease): a holder, a term and an
// expiry by the database's clock. Run renews it every Renew while held and tries to take it
// as often otherwise; a holder that stops renewing (killed, paused, cut off) loses it after
// TTL, and another replica takes it in a higher term. Leader hands the job a context that
// carries the term (inventory.WithFence): every write the job makes with it is refused by
// the database once the term moved on, so an old leader that wakes up after a pause cannot
// act, whatever it still believes.
//
// Locally a Lease counts itself leader until its last successful renewal's start plus TTL
// (by the monotonic clock), never longer than the database does; the fence is the
// guarantee, the local deadline only spares the job doomed work.
//
// A Lease is safe for concurrent use. New starts nothing; Run blocks until its context ends
// and then releases the lease, so a clean shutdown hands over at once.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
)

// Store is what a Lease needs of the inventory.
type Store interface {
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (inventory.LeaseGrant, bool, error)
	ReleaseLease(ctx context.Context, name, holder string) error
}

// Config configures a Lease. Zero values mean the defaults.
type Config struct {
	// Store holds the lease; required.
	Store Store
	// Name is the lease's name. Default "scheduler".
	Name string
	// Replica names this replica (the hub's replica id); the holder is Replica plus a random
	// suffix per process, so a restarted replica never inherits its previous life's term.
	// Default "hub".
	Replica string
	// TTL is how long a grant lasts without renewal: the failover time after a replica
	// stops. Default 10 s.
	TTL time.Duration
	// Renew is the period of renewals (and of attempts to take the lease). Default TTL/3.
	Renew time.Duration
	// Changed is called when this replica becomes leader (true, with the term) or stops
	// being one (false). Default: nothing.
	Changed func(leader bool, term int64)
	// Logger receives leadership changes and failed renewals. Default: discard.
	Logger *slog.Logger
}

// Lease is one replica's side of a lease. Create it with New; run it with Run.
type Lease struct {
	cfg    Config
	holder string

	mu    sync.Mutex
	term  int64     // the term held; 0 if none
	until time.Time // local deadline of the term (monotonic)
}

// New returns a Lease with cfg's defaults filled in. It starts nothing.
func New(cfg Config) (*Lease, error) {
	if cfg.Store == nil {
		return nil, errors.New("lease: no Store")
	}
	if cfg.Name == "" {
		cfg.Name = "scheduler"
	}
	if cfg.Replica == "" {
		cfg.Replica = "hub"
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 10 * time.Second
	}
	if cfg.TTL < time.Second {
		return nil, fmt.Errorf("lease: ttl %s is below a second", cfg.TTL)
	}
	if cfg.Renew <= 0 {
		cfg.Renew = cfg.TTL / 3
	}
	if cfg.Renew >= cfg.TTL {
		return nil, fmt.Errorf("lease: renew period %s is not below the ttl %s", cfg.Renew, cfg.TTL)
	}
	if cfg.Changed == nil {
		cfg.Changed = func(bool, int64) {}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var b [6]byte
	rand.Read(b[:])
	return &Lease{cfg: cfg, holder: cfg.Replica + "/" + hex.EncodeToString(b[:])}, nil
}

// Holder is this replica's holder name in the lease table.
func (l *Lease) Holder() string { return l.holder }

// Leader reports whether this replica holds the lease now and, if so, returns ctx carrying
// the term's fence: the writes made with it are refused once the term ends.
func (l *Lease) Leader(ctx context.Context) (context.Context, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.term == 0 || !time.Now().Before(l.until) {
		return ctx, false
	}
	return inventory.WithFence(ctx, inventory.Fence{Lease: l.cfg.Name, Holder: l.holder, Term: l.term}), true
}

// Term returns the term held, or 0.
func (l *Lease) Term() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.term == 0 || !time.Now().Before(l.until) {
		return 0
	}
	return l.term
}

// Run takes and renews the lease every Renew until ctx ends, then releases it (with a
// fresh timeout) if held. It returns nil; a failed renewal is logged and retried.
func (l *Lease) Run(ctx context.Context) error {
	t := time.NewTicker(l.cfg.Renew)
	defer t.Stop()
	for {
		l.Tick(ctx)
		select {
		case <-ctx.Done():
			l.release()
			return nil
		case <-t.C:
		}
	}
}

// Tick makes one attempt to take or renew the lease (Run calls it every Renew).
func (l *Lease) Tick(ctx context.Context) {
	start := time.Now()
	g, ok, err := l.cfg.Store.AcquireLease(ctx, l.cfg.Name, l.holder, l.cfg.TTL)
	if ctx.Err() != nil {
		return
	}
	l.mu.Lock()
	was, wasTerm := l.term != 0, l.term
	switch {
	case err != nil:
		l.cfg.Logger.Warn("lease renewal failed", "lease", l.cfg.Name, "err", err)
		// Keep the term until its local deadline: the database may answer again in time.
		if !time.Now().Before(l.until) {
			l.term, l.until = 0, time.Time{}
		}
	case ok:
		l.term, l.until = g.Term, start.Add(l.cfg.TTL)
	default:
		l.term, l.until = 0, time.Time{}
	}
	now, nowTerm := l.term != 0 && time.Now().Before(l.until), l.term
	l.mu.Unlock()
	switch {
	case now && (!was || nowTerm != wasTerm):
		l.cfg.Logger.Info("leader", "lease", l.cfg.Name, "holder", l.holder, "term", nowTerm)
		l.cfg.Changed(true, nowTerm)
	case !now && was:
		l.cfg.Logger.Info("no longer leader", "lease", l.cfg.Name, "holder", l.holder, "term", wasTerm,
			"now_held_by", g.Holder)
		l.cfg.Changed(false, wasTerm)
	}
}

func (l *Lease) release() {
	l.mu.Lock()
	held := l.term != 0
	l.term, l.until = 0, time.Time{}
	l.mu.Unlock()
	if !held {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.cfg.Store.ReleaseLease(ctx, l.cfg.Name, l.holder); err != nil {
		l.cfg.Logger.Warn("lease release failed", "lease", l.cfg.Name, "err", err)
	}
}
