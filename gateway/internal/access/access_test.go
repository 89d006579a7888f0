package access

import (
	"errors"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/secret"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
)

func TestTokenLockout(t *testing.T) {
	ctx := t.Context()
	store := hubkit.Store(t)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	tok := secret.NewToken()
	if err := store.CreateToken(ctx, inventory.Token{Hash: secret.HashToken(tok), DeviceID: "cam", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	clock := now
	c := New(store, nil, func() time.Time { return clock })
	for i := range MaxFailures {
		if err := c.Token(ctx, "cam", "hst_guess"); !errors.Is(err, ErrBadToken) {
			t.Fatalf("guess %d: %v, want ErrBadToken", i, err)
		}
	}
	// Locked out: even the right token is refused until the lockout ends.
	if err := c.Token(ctx, "cam", tok); !errors.Is(err, ErrLockedOut) {
		t.Fatalf("right token during lockout = %v, want ErrLockedOut", err)
	}
	clock = now.Add(LockoutFor + time.Second)
	if err := c.Token(ctx, "cam", tok); err != nil {
		t.Fatalf("right token after the lockout = %v", err)
	}
	if c.TokenHash("cam") != secret.HashToken(tok) {
		t.Error("TokenHash does not remember the session's token")
	}
}

func TestAdmin(t *testing.T) {
	hash, err := secret.HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	c := New(nil, []Admin{{Name: "admin", PasswordHash: hash}}, nil)
	if !c.Admin("admin", "correct horse") || c.Admin("admin", "wrong") || c.Admin("root", "correct horse") {
		t.Error("Admin() accepts a wrong password or user, or refuses the right one")
	}
	if !c.IsAdmin("admin") || c.IsAdmin("cam") {
		t.Error("IsAdmin() wrong")
	}
}
