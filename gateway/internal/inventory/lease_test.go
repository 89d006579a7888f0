package inventory

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
)

// TestLeaseTermsAndFencing walks a lease through two replicas: grant, renewal in the same
// term, refusal to another holder, expiry (the holder paused past its ttl), takeover in a
// higher term, and the old holder's fenced write refused without writing anything.
func TestLeaseTermsAndFencing(t *testing.T) {
	dsn := testkit.SharedPostgres(t).NewDatabase(t)
	open := func() *Store {
		s, err := OpenPostgres(t.Context(), PostgresOptions{DSN: dsn})
		if err != nil {
			t.Fatalf("OpenPostgres() = %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()
	ctx := t.Context()
	const ttl = 10 * time.Second
	acquire := func(s *Store, holder string) (LeaseGrant, bool) {
		t.Helper()
		g, ok, err := s.AcquireLease(ctx, "scheduler", holder, ttl)
		if err != nil {
			t.Fatalf("AcquireLease(%s) = %v", holder, err)
		}
		return g, ok
	}
	g1, ok := acquire(a, "a")
	if !ok || g1.Term != 1 || g1.Holder != "a" {
		t.Fatalf("AcquireLease(a) = %+v, %v, want term 1 for a", g1, ok)
	}
	if g, ok := acquire(a, "a"); !ok || g.Term != 1 || !g.Expires.After(g1.Expires.Add(-time.Millisecond)) {
		t.Errorf("renewal by a = %+v, %v, want term 1 again, expiry not earlier", g, ok)
	}
	if g, ok := acquire(b, "b"); ok || g.Holder != "a" || g.Term != 1 {
		t.Errorf("AcquireLease(b) while a holds it = %+v, %v, want refused, held by a in term 1", g, ok)
	}
	fenceA := WithFence(ctx, Fence{Lease: "scheduler", Holder: "a", Term: 1})
	if _, err := a.AppendEvent(fenceA, Event{Time: t0, Kind: "test.fenced", Message: "a leads"}); err != nil {
		t.Fatalf("AppendEvent(a's current fence) = %v", err)
	}

	// a is paused past its ttl: the lease expires in the database's clock.
	if err := b.w.Exec(`UPDATE hearth_leases SET expires_at = clock_timestamp() - interval '1 second'`).Error; err != nil {
		t.Fatal(err)
	}
	g2, ok := acquire(b, "b")
	if !ok || g2.Term != 2 || g2.Holder != "b" {
		t.Fatalf("AcquireLease(b) after a's expiry = %+v, %v, want term 2 for b", g2, ok)
	}
	before, err := a.Events(ctx, EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	// a wakes up and writes with its old term: refused, nothing written.
	if _, err := a.AppendEvent(fenceA, Event{Time: t0, Kind: "test.fenced", Message: "a still thinks it leads"}); !errors.Is(err, ErrFenced) {
		t.Errorf("AppendEvent(a's old fence) = %v, want ErrFenced", err)
	}
	if err := a.RecordCommand(fenceA, commandOf("dev-1", "cmd-1", t0)); !errors.Is(err, ErrFenced) {
		t.Errorf("RecordCommand(a's old fence) = %v, want ErrFenced", err)
	}
	after, err := a.Events(ctx, EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("events after the fenced writes = %d, want %d (nothing written)", len(after), len(before))
	}
	if g, ok := acquire(a, "a"); ok || g.Holder != "b" {
		t.Errorf("renewal by a after b took over = %+v, %v, want refused, held by b", g, ok)
	}
	fenceB := WithFence(ctx, Fence{Lease: "scheduler", Holder: "b", Term: 2})
	if _, err := b.AppendEvent(fenceB, Event{Time: t0, Kind: "test.fenced", Message: "b leads"}); err != nil {
		t.Errorf("AppendEvent(b's fence) = %v", err)
	}

	// b shuts down and releases: a takes over at once, in term 3.
	if err := b.ReleaseLease(ctx, "scheduler", "b"); err != nil {
		t.Fatalf("ReleaseLease(b) = %v", err)
	}
	if g, ok := acquire(a, "a"); !ok || g.Term != 3 {
		t.Errorf("AcquireLease(a) after b released = %+v, %v, want term 3", g, ok)
	}
	if _, err := b.AppendEvent(fenceB, Event{Time: t0, Kind: "test.fenced"}); !errors.Is(err, ErrFenced) {
		t.Errorf("AppendEvent(b's fence after release) = %v, want ErrFenced", err)
	}
	if err := a.VerifyAudit(ctx); err != nil {
		t.Errorf("VerifyAudit() = %v", err)
	}
	if g, err := b.Lease(ctx, "scheduler"); err != nil || g.Holder != "a" || g.Term != 3 {
		t.Errorf("Lease(scheduler) = %+v, %v, want a in term 3", g, err)
	}
	if _, err := b.Lease(ctx, "other"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lease(other) = %v, want ErrNotFound", err)
	}
}

// TestLeaseNeedsPostgres: a single hub on SQLite has no lease to take.
func TestLeaseNeedsPostgres(t *testing.T) {
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, err := s.AcquireLease(t.Context(), "scheduler", "a", time.Minute); !errors.Is(err, ErrNoLeases) {
		t.Errorf("AcquireLease() on SQLite = %v, want ErrNoLeases", err)
	}
}
