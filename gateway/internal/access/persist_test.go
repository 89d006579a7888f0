package access

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/authz"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/secret"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
)

// TestLockoutSurvivesRestart: the failures of one Checker, saved by its Run as it stops,
// come back in a new Checker over the same inventory (a restart): the source that guessed
// tokens and the one that guessed vera's password still wait, the right token and password
// still work from a clean source, and a success after the restart is saved as a reset.
func TestLockoutSurvivesRestart(t *testing.T) {
	ctx := t.Context()
	store := hubkit.Store(t)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	tok := secret.NewToken()
	if err := store.CreateToken(ctx, inventory.Token{Hash: secret.HashToken(tok), DeviceID: "cam", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := store.AddUser(ctx, inventory.User{Name: "vera", Role: "viewer", PasswordHash: testkit.PasswordHash("correct horse"), CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	people := authz.NewAuthenticator(nil, authz.Inventory(store))
	tokens, passwords, clean := sourced(ctx, "192.0.2.66/32"), sourced(ctx, "192.0.2.77/32"), sourced(ctx, "203.0.113.1/32")

	first := New(store, people, clock)
	if err := first.Load(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- first.Run(runCtx) }()
	for range FreeFailures + 2 {
		first.Token(tokens, "cam", secret.NewToken())
		first.Password(passwords, "vera", "guess")
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run() = %v", err)
	}

	now = now.Add(FirstWait / 2) // the restart took half the wait the sixth failure imposed
	second := New(store, people, clock)
	if err := second.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if s, ids, names := second.Failures(now); s != 2 || ids != 1 || names != 1 {
		t.Errorf("Failures() after the restart = %d sources, %d ids, %d names; want 2, 1, 1", s, ids, names)
	}
	if err := second.Token(tokens, "cam", tok); !errors.Is(err, ErrLockedOut) {
		t.Errorf("the right token from the guessing source after a restart = %v, want ErrLockedOut", err)
	}
	if _, err := second.Password(passwords, "vera", "correct horse"); !errors.Is(err, ErrLockedOut) {
		t.Errorf("vera's password from the guessing source after a restart = %v, want ErrLockedOut", err)
	}
	if err := second.Token(clean, "cam", tok); err != nil {
		t.Errorf("the right token from a clean source after a restart = %v, want nil", err)
	}
	if _, err := second.Password(clean, "vera", "correct horse"); err != nil {
		t.Errorf("vera's password from a clean source after a restart = %v, want nil", err)
	}
	if err := second.Save(ctx); err != nil {
		t.Fatal(err)
	}
	stored, err := store.Lockouts(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, l := range stored {
		kinds = append(kinds, l.Kind+" "+l.Key)
	}
	if len(stored) != 2 {
		t.Errorf("stored after the successes = %v, want the two guessing sources only (cam and vera reset)", kinds)
	}
	// An hour after the last failure everything is forgotten, in memory and on disk.
	now = now.Add(ForgetAfter)
	third := New(store, people, clock)
	if err := third.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if s, ids, names := third.Failures(now); s+ids+names != 0 {
		t.Errorf("Failures() after ForgetAfter = %d, %d, %d; want none", s, ids, names)
	}
}
