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

// TestCertificate checks which certificates may log in: what the inventory holds for the
// device as pending, active or superseded; never a revoked or abandoned one, an unknown one,
// or another device's.
func TestCertificate(t *testing.T) {
	ctx := t.Context()
	store := hubkit.Store(t)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	issue := func(serial, req string) {
		t.Helper()
		err := store.RecordIssuance(ctx, inventory.Issuance{
			Device:  inventory.Device{ID: "cam", Mechanism: inventory.MechanismAgent},
			Cert:    inventory.Certificate{Serial: serial, NotBefore: now, NotAfter: now.Add(time.Hour)},
			Attempt: inventory.Attempt{RequestID: req, StartedAt: now, FinishedAt: now},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	issue("a1", "r1") // superseded by a2
	issue("a2", "r2") // active
	issue("a3", "r3") // pending
	issue("a4", "r4") // abandoned
	issue("a5", "r5") // revoked
	for _, c := range []struct{ serial, req string }{{"a1", "r1"}, {"a2", "r2"}} {
		if _, err := store.Commit(ctx, "cam", c.req, c.serial, false, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.EndRequest(ctx, "cam", "r4", "a4", "a2", inventory.OutcomeRolledBack, "", "test", now); err != nil {
		t.Fatal(err)
	}
	if err := store.Revoke(ctx, "a5", "test", now); err != nil {
		t.Fatal(err)
	}
	c := New(store, nil, func() time.Time { return now })
	tests := []struct {
		device, serial string
		want           error
	}{
		{"cam", "a1", nil},
		{"cam", "a2", nil},
		{"cam", "a3", nil},
		{"cam", "a4", ErrAbandoned},
		{"cam", "a5", ErrRevoked},
		{"cam", "ff", ErrUnknownCertificate},
		{"door", "a2", ErrUnknownCertificate},
	}
	for _, tt := range tests {
		if err := c.Certificate(ctx, tt.device, tt.serial); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
			t.Errorf("Certificate(%q, %q) = %v, want %v", tt.device, tt.serial, err, tt.want)
		}
	}
}
