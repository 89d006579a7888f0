package authz

import (
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/rate"
)

// Throttle slows down password guessing: after each failed login of a key (a client
// address, a user name) the key must wait before its next attempt, twice as long after each
// failure in a row, from BaseDelay up to MaxDelay. A success clears the key; a key idle for
// Forget is forgotten, so the table only holds recent failures. The failures are a
// rate.Backoff (Backoff), which the hub keeps across restarts. Safe for concurrent use.
type Throttle struct {
	now func() time.Time
	b   *rate.Backoff
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
	return &Throttle{now: now, b: rate.NewBackoff(rate.BackoffConfig{Free: FreeFailures, Base: BaseDelay, Max: MaxDelay, Forget: Forget})}
}

// Wait returns how long the longest waiting of keys must still wait before an attempt; zero
// when all may try now.
func (t *Throttle) Wait(keys ...string) time.Duration {
	now := t.now()
	var d time.Duration
	for _, k := range keys {
		d = max(d, t.b.Wait(k, now))
	}
	return d
}

// Fail records a failed attempt of every key.
func (t *Throttle) Fail(keys ...string) {
	now := t.now()
	for _, k := range keys {
		t.b.Fail(k, now)
	}
}

// Succeed clears keys after a successful attempt.
func (t *Throttle) Succeed(keys ...string) {
	for _, k := range keys {
		t.b.Reset(k)
	}
}

// Backoff returns the failures behind t, for keeping them across a restart
// (access.Checker.Keep).
func (t *Throttle) Backoff() *rate.Backoff { return t.b }
