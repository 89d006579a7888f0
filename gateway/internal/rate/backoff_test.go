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

// TestBackoffChangesRestore: what Changes hands out, Restore puts back in another Backoff
// (a restart) with the same waits; a reset key is handed out as Count zero; an entry
// forgotten by the time of the restore is skipped; Restore holds no more than MaxKeys.
func TestBackoffChangesRestore(t *testing.T) {
	cfg := BackoffConfig{Free: 1, Base: time.Second, Max: time.Minute, Forget: time.Hour, MaxKeys: 3}
	b := NewBackoff(cfg)
	now := t0
	for range 4 {
		b.Fail("attacker", now)
	}
	b.Fail("once", now)
	b.Fail("winner", now)
	b.Reset("winner")
	b.Reset("never-failed")
	got := map[string]Entry{}
	for _, e := range b.Changes() {
		got[e.Key] = e
	}
	want := map[string]Entry{
		"attacker": {Key: "attacker", Count: 4, Last: now, Until: now.Add(4 * time.Second), Expires: now.Add(time.Hour)},
		"once":     {Key: "once", Count: 1, Last: now, Until: now, Expires: now.Add(time.Hour)},
		"winner":   {Key: "winner"},
	}
	if len(got) != len(want) {
		t.Fatalf("Changes() = %v, want %v", got, want)
	}
	for k, w := range want {
		if g := got[k]; g.Key != w.Key || g.Count != w.Count || !g.Last.Equal(w.Last) || !g.Until.Equal(w.Until) || !g.Expires.Equal(w.Expires) {
			t.Errorf("Changes()[%q] = %+v, want %+v", k, g, w)
		}
	}
	if c := b.Changes(); len(c) != 0 {
		t.Errorf("Changes() again = %v, want none", c)
	}

	later := now.Add(time.Second)
	r := NewBackoff(cfg)
	r.Restore([]Entry{got["attacker"], got["once"], got["winner"],
		{Key: "stale", Count: 9, Last: now.Add(-2 * time.Hour), Until: now.Add(-time.Hour)},
		{Key: "a", Count: 1, Last: now}, {Key: "b", Count: 1, Last: now}}, later)
	if w, want := r.Wait("attacker", later), 3*time.Second; w != want {
		t.Errorf("restored Wait(attacker) = %v, want %v", w, want)
	}
	if w := r.Fail("attacker", later.Add(3*time.Second)); w != 8*time.Second {
		t.Errorf("restored attacker's next Fail = %v, want 8s: the count went on from 4", w)
	}
	if !r.Failed("once", later) || r.Failed("winner", later) || r.Failed("stale", later) {
		t.Errorf("restored Failed(once, winner, stale) = %v, %v, %v; want true, false, false",
			r.Failed("once", later), r.Failed("winner", later), r.Failed("stale", later))
	}
	if n := r.Len(later); n != cfg.MaxKeys {
		t.Errorf("restored %d keys, want MaxKeys %d", n, cfg.MaxKeys)
	}
	if c := r.Changes(); len(c) != 1 || c[0].Key != "attacker" {
		t.Errorf("Changes() after Restore and one failure = %v, want only attacker's", c)
	}
}
