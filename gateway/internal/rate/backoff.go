package rate

import (
	"sync"
	"time"
)

// Backoff remembers failures per key and makes the key wait after each: no wait for the
// first Free failures, then Base, doubling with every further failure up to Max. A key is
// forgotten Forget after its last failure (so its count starts again from zero), and Reset
// forgets it at once (a success).
//
// It is the lockout behind enrollment tokens and admin passwords: Wait says whether a key
// may try now, Fail records a failure. When MaxKeys keys are held, the forgotten ones are
// swept; if the map is still full, a new key's failure is not recorded: memory stays bounded,
// and a caller that keys failures two ways (per source and per name) still holds the other.
// Changes and Restore let a caller keep the failures across a restart.
type Backoff struct {
	cfg BackoffConfig

	mu       sync.Mutex
	keys     map[string]*failures
	nextScan int       // len(keys) at which forgotten keys are swept next
	swept    time.Time // when sweep last ran
	// changed holds the keys failed or reset since the last Changes, for a caller that
	// stores the failures across restarts: only keys that were held, so it grows no faster
	// than keys does between two calls.
	changed map[string]struct{}
}

// BackoffConfig configures a Backoff; zero values take the defaults named.
type BackoffConfig struct {
	Free    int           // failures without a wait, default 0
	Base    time.Duration // first wait, default 1 s
	Max     time.Duration // longest wait, default 15 minutes
	Forget  time.Duration // a key is forgotten this long after its last failure, default 2×Max
	MaxKeys int           // keys held at most, default DefaultMaxKeys
}

type failures struct {
	count int
	last  time.Time // the last failure
	until time.Time // no attempt before this
}

// NewBackoff returns an empty Backoff.
func NewBackoff(cfg BackoffConfig) *Backoff {
	if cfg.Base <= 0 {
		cfg.Base = time.Second
	}
	if cfg.Max <= 0 {
		cfg.Max = 15 * time.Minute
	}
	cfg.Max = max(cfg.Max, cfg.Base)
	if cfg.Forget <= 0 {
		cfg.Forget = 2 * cfg.Max
	}
	cfg.Forget = max(cfg.Forget, cfg.Max)
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	return &Backoff{cfg: cfg, keys: map[string]*failures{}, nextScan: 64, changed: map[string]struct{}{}}
}

// Wait returns how long key must still wait at now before its next attempt: zero when it may
// try now.
func (b *Backoff) Wait(key string, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.lookup(key, now)
	if f == nil || !now.Before(f.until) {
		return 0
	}
	return f.until.Sub(now)
}

// Failed reports whether key failed within Forget before now (whether or not it must wait).
func (b *Backoff) Failed(key string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lookup(key, now) != nil
}

// Fail records a failure of key at now and returns the wait it imposes from now.
func (b *Backoff) Fail(key string, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.lookup(key, now)
	if f == nil {
		if n := len(b.keys); n >= b.nextScan || (n >= b.cfg.MaxKeys && now.Sub(b.swept) >= time.Second) {
			b.sweep(now)
		}
		if len(b.keys) >= b.cfg.MaxKeys {
			return 0
		}
		f = &failures{}
		b.keys[key] = f
	}
	f.count++
	f.last = now
	wait := b.waitAfter(f.count)
	f.until = now.Add(wait)
	b.changed[key] = struct{}{}
	return wait
}

// Reset forgets key: its next failure counts as the first.
func (b *Backoff) Reset(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.keys[key]; ok {
		delete(b.keys, key)
		b.changed[key] = struct{}{}
	}
}

// Entry is one key's failures as a Backoff holds them, for storing them across a restart.
// Count zero means the key was reset: forget what was stored.
type Entry struct {
	Key   string
	Count int
	Last  time.Time // the last failure
	Until time.Time // no attempt before this
	// Expires is when the entry is forgotten unless the key fails again: Forget after Last,
	// and not before Until.
	Expires time.Time
}

// Changes returns the entries of the keys failed or reset since the last call (in no
// particular order) and starts a new set. A key that failed and was forgotten since is
// returned as reset.
func (b *Backoff) Changes() []Entry {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.changed) == 0 {
		return nil
	}
	out := make([]Entry, 0, len(b.changed))
	for key := range b.changed {
		e := Entry{Key: key}
		if f := b.keys[key]; f != nil {
			e = b.entry(key, f)
		}
		out = append(out, e)
	}
	clear(b.changed)
	return out
}

// Restore adds stored entries, as Changes returned them before a restart: a key already held
// keeps its own record, an entry forgotten at now is skipped, and no more than MaxKeys keys
// are held. Restored keys are not changes.
func (b *Backoff) Restore(entries []Entry, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range entries {
		if e.Count <= 0 || len(b.keys) >= b.cfg.MaxKeys {
			continue
		}
		if _, ok := b.keys[e.Key]; ok {
			continue
		}
		f := &failures{count: e.Count, last: e.Last, until: e.Until}
		if !b.forgotten(f, now) {
			b.keys[e.Key] = f
		}
	}
	b.nextScan = max(b.nextScan, 2*len(b.keys))
}

func (b *Backoff) entry(key string, f *failures) Entry {
	expires := f.last.Add(b.cfg.Forget)
	if f.until.After(expires) {
		expires = f.until
	}
	return Entry{Key: key, Count: f.count, Last: f.last, Until: f.until, Expires: expires}
}

// Len returns the number of keys remembered at now.
func (b *Backoff) Len(now time.Time) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sweep(now)
	return len(b.keys)
}

// waitAfter returns the wait after n failures.
func (b *Backoff) waitAfter(n int) time.Duration {
	n -= b.cfg.Free
	if n <= 0 {
		return 0
	}
	w := b.cfg.Base
	for i := 1; i < n && w < b.cfg.Max; i++ {
		w *= 2
	}
	return min(w, b.cfg.Max)
}

// lookup returns key's record, forgetting it first when it is older than Forget.
func (b *Backoff) lookup(key string, now time.Time) *failures {
	f := b.keys[key]
	if f != nil && b.forgotten(f, now) {
		delete(b.keys, key)
		return nil
	}
	return f
}

func (b *Backoff) forgotten(f *failures, now time.Time) bool {
	return now.Sub(f.last) >= b.cfg.Forget && !now.Before(f.until)
}

// sweep drops every forgotten key; it runs when the map doubled since the last sweep, and at
// most once a second while the map is full.
func (b *Backoff) sweep(now time.Time) {
	for key, f := range b.keys {
		if b.forgotten(f, now) {
			delete(b.keys, key)
		}
	}
	b.nextScan = max(64, 2*len(b.keys))
	b.swept = now
}
