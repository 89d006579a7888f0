package device

import (
	"crypto/x509"
	"time"

	"github.com/hearth-pki/hearth/protocol"
)

// Renewal timing, as plain functions of the certificate, the hub's window and the time.
//
// Without a window from the hub, an agent renews at 2/3 of its certificate's lifetime with
// ±10 % jitter on that offset (between 60 % and 73.3 % of the lifetime), the hub's default
// policy. Whatever the window, it renews at once when less than 1/20 of the lifetime is left
// (the emergency floor). After a failure it waits an exponential backoff with jitter.

// Fractions of a certificate's lifetime.
const (
	defaultRenewAt = 2.0 / 3.0
	jitterFraction = 0.10
	emergencyLeft  = 1.0 / 20.0
)

// plan is a renewal decision: when, and why, for people (status and logs).
type plan struct {
	At     time.Time
	Reason string
}

// renewalPlan returns when to renew leaf: at fraction u ∈ [0,1) of the hub's window when info
// is about this certificate, else at 2/3 of its lifetime jittered by u. The emergency floor
// (1/20 of the lifetime before expiry) caps it.
func renewalPlan(leaf *x509.Certificate, serial string, info *protocol.RenewalInfo, u float64) plan {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	var p plan
	if info != nil && info.Serial == serial {
		p = plan{At: info.WindowStart.Add(time.Duration(u * float64(info.WindowEnd.Sub(info.WindowStart)))), Reason: "hub renewal window"}
		if info.Explanation != "" {
			p.Reason += " (" + info.Explanation + ")"
		}
	} else {
		f := defaultRenewAt * (1 - jitterFraction + 2*jitterFraction*u)
		p = plan{At: leaf.NotBefore.Add(time.Duration(f * float64(life))), Reason: "2/3 of the lifetime with jitter (no window from the hub)"}
	}
	if floor := emergencyAt(leaf); floor.Before(p.At) {
		p = plan{At: floor, Reason: "emergency floor: less than 1/20 of the lifetime left"}
	}
	return p
}

// emergencyAt is the instant from which less than 1/20 of leaf's lifetime is left.
func emergencyAt(leaf *x509.Certificate) time.Time {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	return leaf.NotAfter.Add(-time.Duration(emergencyLeft * float64(life)))
}

// backoff is the wait after the n-th consecutive failure (n ≥ 1): lo doubling up to hi,
// then jittered by u ∈ [0,1) into [d/2, d) so that many devices failing together spread out.
func backoff(n int, lo, hi time.Duration, u float64) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = clampDuration(d, lo, hi)
	return d/2 + time.Duration(u*float64(d/2))
}

func clampDuration(d, lo, hi time.Duration) time.Duration {
	return max(lo, min(d, hi))
}
