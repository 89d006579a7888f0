package policy

import (
	"cmp"
	"strings"
	"time"
)

// Urgency is the renewal scheduler's sort key for one certificate at one moment.
// Sort with slices.SortFunc(us, Urgency.Compare): most urgent first.
type Urgency struct {
	// Phase is where the moment falls in the certificate's window.
	Phase Phase
	// Priority is the class's priority (higher first).
	Priority int
	// Deadline is the time the work must be done by: the window's End, or the
	// expiry once in an emergency.
	Deadline time.Time
	// Serial breaks ties, so that the order is total and repeatable.
	Serial string
}

// Urgency returns w's sort key at now.
func (w Window) Urgency(now time.Time) Urgency {
	u := Urgency{Phase: w.Phase(now), Priority: w.Priority, Deadline: w.End, Serial: w.Serial}
	if u.Phase >= PhaseEmergency {
		u.Deadline = w.Expiry
	}
	return u
}

// tier groups phases: emergencies first, whatever their priority, as a device
// about to lose its certificate outranks any routine renewal; then open and
// overdue windows; then waiting ones. Expired certificates come last: a command
// cannot reach a device whose certificate is expired, it needs recovery or a new
// enrollment.
func (u Urgency) tier() int {
	switch u.Phase {
	case PhaseEmergency:
		return 0
	case PhaseOpen, PhaseOverdue:
		return 1
	case PhaseWaiting:
		return 2
	}
	return 3
}

// Compare orders u before v (negative) when u is more urgent: by tier (see
// above), then within emergencies earliest expiry first and then priority, and
// otherwise higher priority first and then earliest deadline; the serial breaks
// ties.
func (u Urgency) Compare(v Urgency) int {
	if c := cmp.Compare(u.tier(), v.tier()); c != 0 {
		return c
	}
	byDeadline := u.Deadline.Compare(v.Deadline)
	byPriority := cmp.Compare(v.Priority, u.Priority) // higher first
	if u.tier() == 0 {
		if byDeadline != 0 {
			return byDeadline
		}
		if byPriority != 0 {
			return byPriority
		}
	} else {
		if byPriority != 0 {
			return byPriority
		}
		if byDeadline != 0 {
			return byDeadline
		}
	}
	return strings.Compare(u.Serial, v.Serial)
}

// Backoff returns how long to wait before retry number attempt (0 for the first
// retry): base doubled attempt times, capped at max, with "equal jitter" — half
// the step fixed plus rnd (in [0, 1]) times the other half. Unlike full jitter,
// which can draw a wait near zero, it never retries at once, so many devices
// failing together (a hub restart) do not come back in one burst; the fixed
// half still doubles, so waits grow. rnd is passed in so callers and tests
// decide the randomness. The result is never above maxWait; zero or negative
// base or maxWait give 0.
func Backoff(attempt int, base, maxWait time.Duration, rnd float64) time.Duration {
	if base <= 0 || maxWait <= 0 {
		return 0
	}
	step := min(base, maxWait)
	for range max(attempt, 0) {
		if step > maxWait/2 {
			step = maxWait
			break
		}
		step *= 2
	}
	if !(rnd >= 0) { // negative or NaN
		rnd = 0
	}
	rnd = min(rnd, 1)
	half := step / 2
	return half + time.Duration(rnd*float64(step-half))
}
