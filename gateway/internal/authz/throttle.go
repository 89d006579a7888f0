package authz

import (
	"sync"
	"time"
)

// Throttle slows down password guessing: after each failed login of a key (a client
// address, a user name) the key must wait before its next attempt, twice as long after each
// failure in a row, from BaseDelay up to MaxDelay. A success clears the key; a key idle for
// Forget is forgotten, so the table only holds recent failures. Safe for concurrent use.
type Throttle struct {
	now func() time.Time

	mu      sync.Mutex
	keys    map[string]*strike
	sweepAt int // forget runs when keys reaches this size: amortised O(1) per failure
}

type strike struct {
	failures int
	until    time.Time // no attempt before
	last     time.Time
}

// Throttle settings.
const (
	BaseDelay = time.Second
	MaxDelay  = 5 * time.Minute
	Forget    = 30 * time.Minute
	// FreeFailures is how many failures in a row a key may have before it waits.
	FreeFailures = 3
)

// NewThrottle returns an empty Throttle; now defaults to time.Now.
func NewThrottle(now func() time.Time) *Throttle {
	if now == nil {
		now = time.Now
	}
	return &Throttle{now: now, keys: map[string]*strike{}, sweepAt: minSweep}
}

// Wait returns how long the longest waiting of keys must still wait before an attempt; zero
// when all may try now.
func (t *Throttle) Wait(keys ...string) time.Duration {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	var d time.Duration
	for _, k := range keys {
		if s := t.keys[k]; s != nil && s.until.After(now) {
			d = max(d, s.until.Sub(now))
		}
	}
	return d
}

// Fail records a failed attempt of every key.
func (t *Throttle) Fail(keys ...string) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.keys) >= t.sweepAt {
		t.forget(now)
		t.sweepAt = max(minSweep, 2*len(t.keys))
	}
	for _, k := range keys {
		s := t.keys[k]
		if s == nil {
			s = &strike{}
			t.keys[k] = s
		}
		s.failures++
		s.last = now
		if n := s.failures - FreeFailures; n > 0 {
			d := BaseDelay << min(n-1, 20)
			s.until = now.Add(min(d, MaxDelay))
		}
	}
}

// Succeed clears keys after a successful attempt.
func (t *Throttle) Succeed(keys ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		delete(t.keys, k)
	}
}

// minSweep is the table size below which idle keys are left alone.
const minSweep = 1024

// forget drops keys idle for Forget; with t.mu held.
func (t *Throttle) forget(now time.Time) {
	for k, s := range t.keys {
		if now.Sub(s.last) >= Forget && !s.until.After(now) {
			delete(t.keys, k)
		}
	}
}
