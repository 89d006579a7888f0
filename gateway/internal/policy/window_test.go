package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

const day = 24 * time.Hour

var issued = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func cert30(serial string) CertInfo {
	return CertInfo{Serial: serial, NotBefore: issued, NotAfter: issued.Add(30 * day)}
}

func TestWindowDefaultJitterRange(t *testing.T) {
	p := Default()
	s := Subject{DeviceID: "plug-1"}
	// 2/3 of 30 days = day 20; ±10 % of that = day 18 to day 22.
	lo, hi := issued.Add(18*day), issued.Add(22*day)
	emergency := issued.Add(30*day - 36*time.Hour) // 1/20 of 30 days left
	const n = 5000
	const buckets = 10
	var counts [buckets]int
	minStart, maxStart := issued.Add(30*day), issued
	for i := range n {
		w := p.Window(s, cert30(fmt.Sprintf("%040x", i*7919)), issued)
		if w.Start.Before(lo) || w.Start.After(hi) {
			t.Fatalf("Window(serial %d).Start = %s, want within [%s, %s]", i, w.Start, lo, hi)
		}
		if !w.EmergencyAt.Equal(emergency) {
			t.Fatalf("Window(serial %d).EmergencyAt = %s, want %s", i, w.EmergencyAt, emergency)
		}
		if !(w.Start.Before(w.End) && w.End.Before(w.EmergencyAt) && w.EmergencyAt.Before(w.Expiry)) {
			t.Fatalf("Window(serial %d) = %+v, want Start < End < EmergencyAt < Expiry", i, w)
		}
		if mid := w.Start.Add(w.EmergencyAt.Sub(w.Start) / 2); w.End.Sub(mid).Abs() > time.Second {
			t.Fatalf("Window(serial %d).End = %s, want the middle of Start..EmergencyAt %s", i, w.End, mid)
		}
		minStart, maxStart = minOf(minStart, w.Start), maxOf(maxStart, w.Start)
		counts[int(w.Start.Sub(lo)*buckets/(hi.Sub(lo)+time.Second))]++
	}
	// The spread spans the jitter range: within 1 % of each edge, and every
	// tenth of the range gets a fair share (expected n/10 = 500 each).
	if minStart.Sub(lo) > 2*time.Hour || hi.Sub(maxStart) > 2*time.Hour {
		t.Errorf("starts span [%s, %s], want close to [%s, %s]", minStart, maxStart, lo, hi)
	}
	for b, c := range counts {
		if c < n/buckets*7/10 || c > n/buckets*13/10 {
			t.Errorf("bucket %d of the jitter range holds %d of %d starts, want about %d (counts %v)", b, c, n, n/buckets, counts)
		}
	}
}

func TestWindowDeterministic(t *testing.T) {
	p := Default()
	s := Subject{DeviceID: "plug-1"}
	a := p.Window(s, cert30("0a1b2c"), issued)
	b := p.Window(s, cert30("0a1b2c"), issued.Add(10*day))
	if !a.Start.Equal(b.Start) || !a.End.Equal(b.End) || !a.EmergencyAt.Equal(b.EmergencyAt) {
		t.Errorf("Window(same serial) = %s..%s then %s..%s, want equal", a.Start, a.End, b.Start, b.End)
	}
	if c := p.Window(s, cert30("0a1b2d"), issued); c.Start.Equal(a.Start) {
		t.Errorf("Window(another serial).Start = %s, same as %s: jitter ignores the serial", c.Start, a.Start)
	}
	if a.Start.Nanosecond() != 0 || a.Start.Location() != time.UTC {
		t.Errorf("Window.Start = %v, want UTC truncated to the second", a.Start)
	}
}

func TestWindowRenewBefore(t *testing.T) {
	p := examplePolicy(t)
	cam := Subject{DeviceID: "cam-1", Family: "acme-cam-v2"} // 14d, renew_before 72h, jitter 0.2
	na := issued.Add(14 * day)
	for i := range 500 {
		w := p.Window(cam, CertInfo{Serial: fmt.Sprint(i), NotBefore: issued, NotAfter: na}, issued)
		lead := na.Sub(w.Start)
		if lead < time.Duration(0.8*float64(72*time.Hour))-time.Second || lead > time.Duration(1.2*float64(72*time.Hour)) {
			t.Fatalf("Window(serial %d) opens %s before expiry, want 72h ±20%%", i, lead)
		}
	}
	// A certificate shorter than renew_before (issued under an older policy)
	// falls back to 2/3 of its lifetime.
	short := CertInfo{Serial: "s", NotBefore: issued, NotAfter: issued.Add(48 * time.Hour)}
	w := p.Window(cam, short, issued)
	if off := w.Start.Sub(issued); off < 28*time.Hour || off > 36*time.Hour {
		t.Errorf("Window(48h cert, renew_before 72h).Start = +%s, want 2/3 of 48h ±20%%", off)
	}
	if !strings.Contains(w.Reason, "does not fit") {
		t.Errorf("Window reason %q does not explain the fallback", w.Reason)
	}
}

func TestWindowEmergencyFloor(t *testing.T) {
	// jitter 0.5 and renew_at 0.6 can reach 0.9 of the lifetime; a floor of
	// 0.2 starts at 0.8: a certificate issued under an older policy is held at
	// the floor instead of opening after it.
	c := builtinDefault()
	c.RenewAt, c.Jitter, c.EmergencyFloor = 0.6, 0.5, 0.2
	held := 0
	for i := range 200 {
		w := c.Window(cert30(fmt.Sprint(i)), issued)
		if w.Start.After(w.EmergencyAt) {
			t.Fatalf("Window.Start %s after EmergencyAt %s", w.Start, w.EmergencyAt)
		}
		if w.Start.Equal(w.EmergencyAt) {
			held++
			if !strings.Contains(w.Reason, "held at the emergency floor") {
				t.Errorf("Window reason %q does not say the start was held", w.Reason)
			}
		}
	}
	if held == 0 {
		t.Errorf("no window was held at the emergency floor, want some")
	}
	want := issued.Add(24 * day)
	if w := c.Window(cert30("x"), issued); !w.EmergencyAt.Equal(want) {
		t.Errorf("EmergencyAt = %s, want %s (1/5 of 30d left)", w.EmergencyAt, want)
	}
}

func TestWindowDegenerate(t *testing.T) {
	w := Default().Window(Subject{}, CertInfo{Serial: "z", NotBefore: issued, NotAfter: issued}, issued.Add(-time.Hour))
	if !w.Start.Equal(issued) || !w.End.Equal(issued) || !w.EmergencyAt.Equal(issued) {
		t.Errorf("Window(empty validity) = %+v, want every time at not-after", w)
	}
	if due, _ := Due(w, issued); !due {
		t.Errorf("Due(empty validity) = false, want true")
	}
}

func TestDue(t *testing.T) {
	w := Default().Window(Subject{}, cert30("abc"), issued)
	tests := []struct {
		now       time.Time
		wantDue   bool
		wantPhase Phase
		reason    string
	}{
		{issued, false, PhaseWaiting, "not due: the window opens at"},
		{w.Start.Add(-time.Second), false, PhaseWaiting, "in 0s"},
		{w.Start, true, PhaseOpen, "due: in the renewal window since"},
		{w.End, true, PhaseOverdue, "overdue: the window closed at"},
		{w.EmergencyAt, true, PhaseEmergency, "emergency: past the floor"},
		{w.Expiry, true, PhaseExpired, "expired at"},
	}
	for _, tt := range tests {
		due, why := Due(w, tt.now)
		if due != tt.wantDue || !strings.Contains(why, tt.reason) {
			t.Errorf("Due(w, %s) = %v, %q; want %v, containing %q", tt.now, due, why, tt.wantDue, tt.reason)
		}
		if ph := w.Phase(tt.now); ph != tt.wantPhase {
			t.Errorf("Phase(%s) = %s, want %s", tt.now, ph, tt.wantPhase)
		}
	}
	if !strings.Contains(w.Reason, "renew from") || !strings.Contains(w.Reason, "not due") {
		t.Errorf("Window.Reason = %q, want how and when", w.Reason)
	}
}

func TestUrgencyOrder(t *testing.T) {
	now := issued.Add(25 * day)
	mk := func(serial string, prio int, start, end, emerg, exp time.Duration) Urgency {
		return Window{Serial: serial, Priority: prio, Start: issued.Add(start), End: issued.Add(end), EmergencyAt: issued.Add(emerg), Expiry: issued.Add(exp)}.Urgency(now)
	}
	us := []Urgency{
		mk("expired", PriorityCritical, 1*day, 2*day, 3*day, 4*day),
		mk("waiting-high", PriorityHigh, 26*day, 27*day, 28*day, 30*day),
		mk("open-normal-late", PriorityNormal, 20*day, 27*day, 28*day, 30*day),
		mk("open-normal-early", PriorityNormal, 20*day, 26*day, 28*day, 30*day),
		mk("overdue-low", PriorityLow, 20*day, 24*day, 28*day, 30*day),
		mk("open-high", PriorityHigh, 20*day, 27*day, 28*day, 30*day),
		mk("emergency-low-soon", PriorityLow, 10*day, 15*day, 24*day, 26*day),
		mk("emergency-high-later", PriorityHigh, 10*day, 15*day, 24*day, 27*day),
		mk("open-normal-early-b", PriorityNormal, 20*day, 26*day, 28*day, 30*day),
	}
	slices.SortFunc(us, Urgency.Compare)
	var got []string
	for _, u := range us {
		got = append(got, u.Serial)
	}
	want := []string{"emergency-low-soon", "emergency-high-later", "open-high", "open-normal-early", "open-normal-early-b", "open-normal-late", "overdue-low", "waiting-high", "expired"}
	if !slices.Equal(got, want) {
		t.Errorf("sorted by urgency = %v, want %v", got, want)
	}
}

func TestBackoff(t *testing.T) {
	const base, ceiling = time.Second, time.Minute
	prevLow := time.Duration(0)
	for attempt := range 12 {
		low, high := Backoff(attempt, base, ceiling, 0), Backoff(attempt, base, ceiling, 1)
		step := min(base<<attempt, ceiling)
		if low != step/2 || high != step {
			t.Errorf("Backoff(%d, rnd 0..1) = %v..%v, want %v..%v", attempt, low, high, step/2, step)
		}
		if low < prevLow {
			t.Errorf("Backoff(%d) lower bound %v shrank from %v", attempt, low, prevLow)
		}
		prevLow = low
		if mid := Backoff(attempt, base, ceiling, 0.5); mid < low || mid > high {
			t.Errorf("Backoff(%d, 0.5) = %v, outside %v..%v", attempt, mid, low, high)
		}
	}
	tests := []struct {
		name          string
		attempt       int
		base, ceiling time.Duration
		rnd           float64
		want          time.Duration
	}{
		{"capped", 1 << 30, time.Second, time.Hour, 1, time.Hour},
		{"huge ceiling does not overflow", 200, time.Second, 1<<63 - 1, 1, 1<<63 - 1},
		{"negative attempt", -3, time.Second, time.Hour, 1, time.Second},
		{"base above ceiling", 0, time.Hour, time.Minute, 1, time.Minute},
		{"zero base", 3, 0, time.Hour, 1, 0},
		{"NaN rnd", 0, time.Second, time.Hour, nan(), 500 * time.Millisecond},
		{"rnd above 1", 0, time.Second, time.Hour, 7, time.Second},
	}
	for _, tt := range tests {
		if got := Backoff(tt.attempt, tt.base, tt.ceiling, tt.rnd); got != tt.want {
			t.Errorf("%s: Backoff(%d, %v, %v, %v) = %v, want %v", tt.name, tt.attempt, tt.base, tt.ceiling, tt.rnd, got, tt.want)
		}
	}
}

func nan() float64 { var z float64; return z / z }

func minOf(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxOf(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func BenchmarkWindow(b *testing.B) {
	p := Default()
	s := Subject{DeviceID: "plug-1"}
	c := cert30("0a1b2c3d4e5f")
	for b.Loop() {
		p.Window(s, c, issued)
	}
}
