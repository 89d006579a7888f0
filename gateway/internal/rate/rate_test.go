package rate

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := New(10, 3)
	for i := range 3 {
		if ok, _ := l.Allow(t0); !ok {
			t.Fatalf("Allow #%d within burst = false, want true", i)
		}
	}
	ok, wait := l.Allow(t0)
	if ok || wait <= 0 || wait > 100*time.Millisecond {
		t.Fatalf("Allow past burst = %v, %v; want false and a wait of at most 100ms", ok, wait)
	}
	if ok, _ := l.Allow(t0.Add(100 * time.Millisecond)); !ok {
		t.Errorf("Allow after one token's time = false, want true")
	}
	if ok, _ := l.Allow(t0.Add(100 * time.Millisecond)); ok {
		t.Errorf("second Allow at the same instant = true, want false")
	}
	// A long pause refills only up to the burst.
	later := t0.Add(time.Hour)
	n := 0
	for {
		if ok, _ := l.Allow(later); !ok {
			break
		}
		n++
	}
	if n != 3 {
		t.Errorf("after a long pause %d events allowed at once, want the burst 3", n)
	}
	if ok, _ := New(0, 0).Allow(t0); !ok {
		t.Error("unlimited limiter refused")
	}
}
