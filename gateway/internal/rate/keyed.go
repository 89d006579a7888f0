package rate

import (
	"sync"
	"time"
)

// DefaultMaxKeys bounds the keys a Keyed or Backoff holds when the caller sets no bound.
const DefaultMaxKeys = 100_000

// Keyed is one token bucket per key: Allow(key) lets Burst events through at once and then
// Rate per second on average, independently for each key. A key whose bucket has refilled
// is forgotten, so the map holds only keys that were limited recently.
//
// When MaxKeys keys are held, the full buckets are dropped first; if none is full, a new key
// is refused (Allow reports false with the period of one token), so a flood of new keys
// never evicts the state of a key that is being limited.
type Keyed struct {
	rate    float64
	burst   float64
	maxKeys int

	mu       sync.Mutex
	buckets  map[string]*bucket
	nextScan int       // len(buckets) at which full buckets are swept next
	swept    time.Time // when sweep last ran
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewKeyed returns a Keyed allowing perSecond events per key on average with bursts of
// burst (at least 1), holding at most maxKeys keys (DefaultMaxKeys when maxKeys <= 0).
// A perSecond <= 0 means no limit.
func NewKeyed(perSecond float64, burst, maxKeys int) *Keyed {
	if burst < 1 {
		burst = 1
	}
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	return &Keyed{rate: perSecond, burst: float64(burst), maxKeys: maxKeys, buckets: map[string]*bucket{}, nextScan: 64}
}

// Allow takes one of key's tokens at now and reports whether there was one; when there was
// none it also returns how long until there is.
func (k *Keyed) Allow(key string, now time.Time) (bool, time.Duration) {
	if k == nil || k.rate <= 0 {
		return true, 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	b := k.buckets[key]
	if b == nil {
		if n := len(k.buckets); n >= k.nextScan || (n >= k.maxKeys && now.Sub(k.swept) >= time.Second) {
			k.sweep(now)
		}
		if len(k.buckets) >= k.maxKeys {
			return false, time.Duration(float64(time.Second) / k.rate)
		}
		b = &bucket{tokens: k.burst, last: now}
		k.buckets[key] = b
	}
	k.refill(b, now)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / k.rate * float64(time.Second))
}

func (k *Keyed) refill(b *bucket, now time.Time) {
	if now.After(b.last) {
		b.tokens = min(k.burst, b.tokens+now.Sub(b.last).Seconds()*k.rate)
		b.last = now
	}
}

// sweep drops the buckets that are full at now: they behave like keys never seen. It runs
// when the map doubled since the last sweep (so its cost is amortised over the
// inserts), and at most once a second while the map is full.
func (k *Keyed) sweep(now time.Time) {
	for key, b := range k.buckets {
		k.refill(b, now)
		if b.tokens >= k.burst {
			delete(k.buckets, key)
		}
	}
	k.nextScan = max(64, 2*len(k.buckets))
	k.swept = now
}

// Len returns the number of keys held, after forgetting those whose bucket is full at now.
func (k *Keyed) Len(now time.Time) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.sweep(now)
	return len(k.buckets)
}
