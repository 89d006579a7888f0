package inventory

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestLockouts: saved entries come back after the file is closed and opened again (a
// restart), a wait rounded up to the second; Count zero deletes; an expired entry is neither
// returned nor kept.
func TestLockouts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hearth.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0).UTC()
	at := func(d time.Duration) time.Time { return now.Add(d) }
	save := []Lockout{
		{Kind: "source", Key: "192.0.2.66/32", Count: 7, Last: now, Until: at(4*time.Second + time.Millisecond), Expires: at(time.Hour)},
		{Kind: "device", Key: "cam", Count: 7, Last: now, Until: at(4*time.Second + time.Millisecond), Expires: at(time.Hour)},
		{Kind: "user", Key: "vera", Count: 2, Last: now, Expires: at(time.Hour)},
		{Kind: "user", Key: "old", Count: 9, Last: at(-2 * time.Hour), Until: at(-time.Hour), Expires: at(-time.Hour)},
	}
	if err := s.SaveLockouts(t.Context(), save, now); err != nil {
		t.Fatal(err)
	}
	// Later: vera logged in (reset), the source failed once more.
	if err := s.SaveLockouts(t.Context(), []Lockout{{Kind: "user", Key: "vera"},
		{Kind: "source", Key: "192.0.2.66/32", Count: 8, Last: at(5 * time.Second), Until: at(13 * time.Second), Expires: at(time.Hour + 5*time.Second)}}, at(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(t.Context(), path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Lockouts(t.Context(), at(6*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	want := []Lockout{
		{Kind: "source", Key: "192.0.2.66/32", Count: 8, Last: at(5 * time.Second), Until: at(13 * time.Second), Expires: at(time.Hour + 5*time.Second)},
		{Kind: "device", Key: "cam", Count: 7, Last: now, Until: at(5 * time.Second), Expires: at(time.Hour)}, // rounded up
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Lockouts() after a reopen (-want +got):\n%s", diff)
	}
	var n int64
	if err := s.read(t.Context()).Model(&lockoutRow{}).Count(&n).Error; err != nil || n != 2 {
		t.Errorf("rows kept = %d, %v; want 2 (the expired and the reset one deleted)", n, err)
	}
	// Once expired, nothing is returned, and the next save drops them.
	if got, err := s.Lockouts(t.Context(), at(2*time.Hour)); err != nil || len(got) != 0 {
		t.Errorf("Lockouts() two hours on = %v, %v; want none", got, err)
	}
	if err := s.SaveLockouts(t.Context(), nil, at(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.read(t.Context()).Model(&lockoutRow{}).Count(&n).Error; err != nil || n != 0 {
		t.Errorf("rows kept after the expiry = %d, %v; want 0", n, err)
	}
}

// TestCeilUnix: a stored wait never ends before the one in memory.
func TestCeilUnix(t *testing.T) {
	for _, tc := range []struct {
		in   time.Time
		want int64
	}{
		{time.Time{}, 0},
		{time.Unix(100, 0), 100},
		{time.Unix(100, 1), 101},
		{time.Unix(100, 999_999_999), 101},
	} {
		if got := ceilUnix(tc.in); got != tc.want {
			t.Errorf("ceilUnix(%v) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

// BenchmarkSaveLockouts is the cost of one save of the login lockout (access.Checker.Run, once
// a second) when 1,000 counts changed since the last: a flood of bad logins from 1,000
// sources costs this much a second, whatever the number of attempts.
func BenchmarkSaveLockouts(b *testing.B) {
	s := openTest(b)
	now := time.Unix(1_800_000_000, 0).UTC()
	changed := make([]Lockout, 1000)
	for i := range changed {
		changed[i] = Lockout{Kind: "source", Key: fmt.Sprintf("192.0.%d.%d/32", i/256, i%256), Count: 6, Last: now, Until: now.Add(time.Second), Expires: now.Add(time.Hour)}
	}
	for i := 0; b.Loop(); i++ {
		for j := range changed {
			changed[j].Count = 6 + i
		}
		if err := s.SaveLockouts(b.Context(), changed, now); err != nil {
			b.Fatal(err)
		}
	}
}
