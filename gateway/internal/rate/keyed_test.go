package rate

import (
	"fmt"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestKeyedQuotaPerKey(t *testing.T) {
	k := NewKeyed(3.0/3600, 3, 0) // 3 per hour
	for i := range 3 {
		if ok, _ := k.Allow("a", t0); !ok {
			t.Fatalf("Allow(a) #%d within the quota = false, want true", i+1)
		}
	}
	ok, wait := k.Allow("a", t0)
	if ok || wait != 20*time.Minute {
		t.Fatalf("Allow(a) past the quota = %v, %v; want false, 20m0s", ok, wait)
	}
	if ok, _ := k.Allow("b", t0); !ok {
		t.Error("Allow(b) = false: one key's quota held another")
	}
	if ok, _ := k.Allow("a", t0.Add(20*time.Minute)); !ok {
		t.Error("Allow(a) one token's time later = false, want true")
	}
}

func TestKeyedForgetsFullBuckets(t *testing.T) {
	k := NewKeyed(1, 1, 0) // a 1 s cool-down
	for i := range 1000 {
		k.Allow(fmt.Sprint(i), t0)
	}
	if n := k.Len(t0); n != 1000 {
		t.Fatalf("Len right after 1000 keys = %d, want 1000", n)
	}
	if n := k.Len(t0.Add(time.Second)); n != 0 {
		t.Errorf("Len once every bucket refilled = %d, want 0", n)
	}
}

func TestKeyedBounded(t *testing.T) {
	k := NewKeyed(1, 1, 10)
	for i := range 10 {
		if ok, _ := k.Allow(fmt.Sprint(i), t0); !ok {
			t.Fatalf("Allow(%d) = false within MaxKeys", i)
		}
	}
	if ok, _ := k.Allow("new", t0); ok {
		t.Error("Allow(new) with MaxKeys limited keys held = true, want false (no eviction of limited keys)")
	}
	if ok, _ := k.Allow("0", t0); ok {
		t.Error("Allow(0) again = true: its state was evicted")
	}
	if ok, _ := k.Allow("new", t0.Add(time.Second)); !ok {
		t.Error("Allow(new) once the others refilled = false, want true")
	}
	if ok, _ := NewKeyed(0, 0, 0).Allow("x", t0); !ok {
		t.Error("unlimited Keyed refused")
	}
}
