// Package clock tells the agent what time it is when the device's own clock may be wrong.
//
// Boards without a real-time clock boot in 1970, and some drift by hours before NTP (if any)
// fixes them. The agent must never call a certificate expired or not yet valid because of such
// a clock, so it combines three sources:
//
//   - the device's wall clock (a now func, injected in tests);
//   - lower bounds on the true time: the agent's build time, the last known good time kept on
//     disk, the hub times of retained messages (which may be old) and the not-before of
//     certificates the hub issued. The true time is never earlier than any of them;
//   - live hub times, carried by the hub's non-retained messages (cert, ack, cmd). The hub's
//     clock is trusted; the offset between it and the device clock is the skew.
//
// A Reading says which of them Now comes from. The device clock is trusted when it is not
// before the lower bound (minus MaxSkew) and, once a live hub time was seen, within MaxSkew of
// it. When it is not trusted but a live hub time was seen, Now is the hub time advanced by the
// time elapsed since (the monotonic clock when available). When neither holds, Now is the lower
// bound and Known is false: a lower bound can prove that a certificate expired or that a
// renewal instant has passed, but never that a certificate is not yet valid.
//
// A Clock is safe for concurrent use.
package clock

import (
	"sync"
	"time"
)

// MaxSkew is how far the device clock may be from the hub's (or behind the lower bound) and
// still be trusted.
const MaxSkew = time.Hour

// Reading is one look at the clock.
type Reading struct {
	// Device is the device's wall clock.
	Device time.Time
	// Now is the best estimate of the true time: Device when trusted, else the live hub time
	// advanced since it was seen, else the lower bound.
	Now time.Time
	// Trusted reports whether the device clock is believed right.
	Trusted bool
	// Known reports whether Now is the true time (device clock trusted, or derived from a live
	// hub time). When false, Now is only a lower bound of the true time.
	Known bool
	// HubSeen reports whether a live hub time was observed; Skew is meaningful only then.
	HubSeen bool
	// Hub is the hub's estimated time when HubSeen: the last live hub time advanced by the
	// time elapsed since.
	Hub time.Time
	// Skew is the device clock minus Hub.
	Skew time.Duration
}

// Best returns the time to check certificates against: the hub's estimated time when seen
// (it is the issuer's clock, so a certificate fresh from the hub is valid at it even when the
// device is minutes behind), else Now.
func (r Reading) Best() time.Time {
	if r.HubSeen {
		return r.Hub
	}
	return r.Now
}

// Clock combines the device clock with the hub's time. Create it with New.
type Clock struct {
	now func() time.Time

	mu      sync.Mutex
	floor   time.Time // lower bound of the true time
	hubTime time.Time // last live hub time
	hubAt   time.Time // device clock when hubTime was received
	hubSeen bool
}

// New returns a Clock reading now (time.Now if nil), with floor as the initial lower bound of
// the true time (typically the later of the build time and the last known good time).
func New(now func() time.Time, floor time.Time) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{now: now, floor: floor}
}

// Observe records hub, a live hub time (from a non-retained message just received).
func (c *Clock) Observe(hub time.Time) {
	if hub.IsZero() {
		return
	}
	at := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hubTime, c.hubAt, c.hubSeen = hub, at, true
	if hub.After(c.floor) {
		c.floor = hub
	}
}

// AtLeast records t as a lower bound of the true time (a retained message's hub time, a
// certificate's not-before).
func (c *Clock) AtLeast(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.floor) {
		c.floor = t
	}
}

// Floor returns the lower bound of the true time: the value to persist as last known good.
func (c *Clock) Floor() time.Time {
	r := c.Read()
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.Known && r.Now.After(c.floor) {
		return r.Now
	}
	return c.floor
}

// Read returns the current Reading.
func (c *Clock) Read() Reading {
	dev := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	r := Reading{Device: dev}
	if c.hubSeen {
		// Sub uses the monotonic clock when both times carry it, so a wall-clock jump (NTP
		// setting a 1970 clock) between the observation and now does not move the estimate.
		est := c.hubTime.Add(dev.Sub(c.hubAt))
		if est.Before(c.floor) {
			est = c.floor
		}
		r.HubSeen, r.Hub = true, est
		r.Skew = dev.Sub(est)
		r.Known = true
		r.Trusted = r.Skew.Abs() <= MaxSkew
		r.Now = est
		if r.Trusted {
			r.Now = dev
		}
		return r
	}
	if !dev.Before(c.floor.Add(-MaxSkew)) {
		r.Trusted, r.Known, r.Now = true, true, dev
		if dev.Before(c.floor) {
			r.Now = c.floor
		}
		return r
	}
	r.Now = c.floor
	return r
}
