// Package rate provides rate limits with the time passed in, so callers and tests decide
// what "now" is: a token bucket ([Limiter]), one bucket per key ([Keyed]: quotas and
// cool-downs per device), and exponential backoff after failures per key ([Backoff]:
// lockouts per source and per name).
//
// The per-key types forget a key once its state is back to that of a key never seen, so
// their memory follows the keys active recently, not every key ever used; each also holds at
// most a fixed number of keys, so a flood of distinct keys cannot grow it without bound.
//
// Every type here is safe for concurrent use.
package rate

import (
	"sync"
	"time"
)

// Limiter allows Rate events per second on average, with bursts of up to Burst.
type Limiter struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

// New returns a full limiter. A rate <= 0 means no limit.
func New(perSecond float64, burst int) *Limiter {
	if burst < 1 {
		burst = 1
	}
	return &Limiter{rate: perSecond, burst: float64(burst), tokens: float64(burst)}
}

// Allow takes one token at now and reports whether there was one. When there was none it
// also returns how long until one is available.
func (l *Limiter) Allow(now time.Time) (bool, time.Duration) {
	if l == nil || l.rate <= 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.After(l.last) {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	if now.After(l.last) {
		l.last = now
	}
	if l.tokens >= 1 {
		l.tokens--
		return true, 0
	}
	wait := time.Duration((1 - l.tokens) / l.rate * float64(time.Second))
	return false, wait
}
