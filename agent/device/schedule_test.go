package device

import (
	"crypto/x509"
	"math/big"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/protocol"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func leafFor(nb time.Time, life time.Duration) *x509.Certificate {
	return &x509.Certificate{SerialNumber: big.NewInt(0xabc), NotBefore: nb, NotAfter: nb.Add(life)}
}

func TestRenewalPlan(t *testing.T) {
	const day = 24 * time.Hour
	leaf := leafFor(t0, 30*day)
	window := &protocol.RenewalInfo{V: 1, Serial: "abc", WindowStart: t0.Add(20 * day), WindowEnd: t0.Add(22 * day), HubTime: t0}
	for _, tc := range []struct {
		name string
		info *protocol.RenewalInfo
		u    float64
		want time.Time
	}{
		{"default, no jitter draw at the middle", nil, 0.5, t0.Add(20 * day)},
		{"default, lowest jitter: 90 % of 2/3", nil, 0, t0.Add(18 * day)},
		{"default, highest jitter: 110 % of 2/3", nil, 1, t0.Add(22 * day)},
		{"hub window start", window, 0, t0.Add(20 * day)},
		{"hub window middle", window, 0.5, t0.Add(21 * day)},
		{"window of another serial is ignored", &protocol.RenewalInfo{Serial: "def", WindowStart: t0, WindowEnd: t0}, 0.5, t0.Add(20 * day)},
		{"window past the emergency floor is capped", &protocol.RenewalInfo{Serial: "abc", WindowStart: t0.Add(29 * day), WindowEnd: t0.Add(30 * day)}, 0.5, t0.Add(30*day - 36*time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := renewalPlan(leaf, "abc", tc.info, tc.u)
			if d := got.At.Sub(tc.want); d > time.Second || d < -time.Second {
				t.Errorf("renewalPlan(%s, u=%v).At = %s, want %s", tc.name, tc.u, got.At, tc.want)
			}
			if got.Reason == "" {
				t.Errorf("renewalPlan(%s) has no reason", tc.name)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		n      int
		u      float64
		lo, hi time.Duration
	}{
		{1, 0, 15 * time.Second, 15 * time.Second},
		{1, 0.999, 29 * time.Second, 30 * time.Second},
		{2, 0, 30 * time.Second, 30 * time.Second},
		{3, 0.5, 90 * time.Second, 90 * time.Second},
		{8, 0.999, 59 * time.Minute, time.Hour},      // capped at RetryMax
		{100, 0, 30 * time.Minute, 30 * time.Minute}, // no overflow
	} {
		got := backoff(tc.n, 30*time.Second, time.Hour, tc.u)
		if got < tc.lo || got > tc.hi {
			t.Errorf("backoff(%d, 30s, 1h, %v) = %s, want in [%s, %s]", tc.n, tc.u, got, tc.lo, tc.hi)
		}
	}
}
