package rate

import (
	"fmt"
	"testing"
	"time"
)

func TestBackoffDoubles(t *testing.T) {
	b := NewBackoff(BackoffConfig{Free: 2, Base: time.Second, Max: 8 * time.Second, Forget: time.Minute})
	want := []time.Duration{0, 0, 1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
	now := t0
	for i, w := range want {
		if got := b.Wait("k", now); got != 0 {
			t.Fatalf("Wait before failure %d = %v, want 0 (the previous wait passed)", i+1, got)
		}
		if got := b.Fail("k", now); got != w {
			t.Errorf("Fail #%d = %v, want %v", i+1, got, w)
		}
		if got := b.Wait("k", now); got != w {
			t.Errorf("Wait after failure %d = %v, want %v", i+1, got, w)
		}
		if got := b.Wait("other", now); got != 0 {
			t.Errorf("Wait(other) = %v, want 0", got)
		}
		now = now.Add(w)
	}
	b.Reset("k")
	if got := b.Fail("k", now); got != 0 {
		t.Errorf("Fail after Reset = %v, want 0 (count starts again)", got)
	}
}

func TestBackoffForgets(t *testing.T) {
	b := NewBackoff(BackoffConfig{Base: time.Second, Max: 4 * time.Second, Forget: time.Minute})
	for i := range 500 {
		b.Fail(fmt.Sprint(i), t0)
	}
	if !b.Failed("7", t0.Add(59*time.Second)) {
		t.Error("Failed(7) within Forget = false, want true")
	}
	if n := b.Len(t0.Add(30 * time.Second)); n != 500 {
		t.Errorf("Len within Forget = %d, want 500", n)
	}
	if n := b.Len(t0.Add(time.Minute)); n != 0 {
		t.Errorf("Len after Forget = %d, want 0: the failure map does not shrink", n)
	}
	b.Fail("x", t0)
	b.Fail("x", t0.Add(2*time.Minute))
	if got := b.Wait("x", t0.Add(2*time.Minute)); got != time.Second {
		t.Errorf("Wait after a failure long after the last = %v, want the first wait 1s", got)
	}
}

func TestBackoffBounded(t *testing.T) {
	b := NewBackoff(BackoffConfig{MaxKeys: 100})
	for i := range 1000 {
		b.Fail(fmt.Sprint(i), t0)
	}
	if n := b.Len(t0); n != 100 {
		t.Errorf("Len after 1000 keys with MaxKeys 100 = %d, want 100", n)
	}
	if got := b.Wait("5", t0); got != time.Second {
		t.Errorf("Wait(5) = %v, want 1s: a held key lost its state", got)
	}
}
