package access

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/broker"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/secret"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
	"github.com/hearth-pki/hearth/protocol"
)

// sourced returns ctx as the broker passes it to Auth for a CONNECT from src.
func sourced(ctx context.Context, src string) context.Context { return broker.WithSource(ctx, src) }

// TestTokenLockout checks the enrollment lockout (issue 15, item 5): failures lock out the
// source that made them, with exponential backoff; the right token still works from a source
// that did not fail, however often others failed for the device; the failures are forgotten.
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
	attacker, device := sourced(ctx, "192.0.2.66/32"), sourced(ctx, "192.0.2.10/32")
	code := func(err error) protocol.Code {
		var r *Refusal
		if !errors.As(err, &r) {
			return ""
		}
		return r.Code
	}

	// Five bad tokens from one source cost it nothing yet.
	for range FreeFailures {
		if err := c.Token(attacker, "cam", secret.NewToken()); code(err) != protocol.CodeTokenUnknown || !errors.Is(err, ErrBadToken) {
			t.Fatalf("a guess = %v, want a token_unknown refusal", err)
		}
	}
	// Each further failure makes the attacker wait, 1 s and doubling: even the right token
	// is refused from it meanwhile, without being looked at.
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		if err := c.Token(attacker, "cam", secret.NewToken()); code(err) != protocol.CodeTokenUnknown {
			t.Fatalf("guess %d after the free ones = %v, want token_unknown", i+1, err)
		}
		err := c.Token(attacker, "cam", tok)
		var r *Refusal
		if !errors.As(err, &r) || r.Code != protocol.CodeLockedOut || r.RetryAfter != want || !errors.Is(err, ErrLockedOut) {
			t.Fatalf("the right token from the waiting attacker = %v, want locked_out for %v", err, want)
		}
		if i < 2 {
			clock = clock.Add(want)
		}
	}
	// The device's own enrollment, from a source that did not fail, is not held, though the
	// attacker waits and the id failed FreeFailures+3 times.
	if err := c.Token(device, "cam", tok); err != nil {
		t.Fatalf("the right token from a clean source after %d failures for the id = %v, want nil", FreeFailures+3, err)
	}
	if c.TokenHash("cam") != secret.HashToken(tok) {
		t.Error("TokenHash does not remember the session's token")
	}
	if s, ids, _ := c.Failures(clock); s != 1 || ids != 0 {
		t.Errorf("Failures() = %d sources, %d ids; want 1 source (the attacker), 0 ids (reset by the success)", s, ids)
	}
	// The failures are forgotten: the map shrinks.
	clock = clock.Add(ForgetAfter)
	if s, ids, names := c.Failures(clock); s+ids+names != 0 {
		t.Errorf("Failures() an hour after the last = %d, %d, %d; want none", s, ids, names)
	}
}

// TestLockoutByID checks the per-id count: a source that failed for the id waits for the
// id's backoff even when it failed little itself; a clean source does not.
func TestLockoutByID(t *testing.T) {
	ctx := t.Context()
	store := hubkit.Store(t)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	c := New(store, nil, func() time.Time { return now })
	for i := range FreeFailures + 1 {
		c.Token(sourced(ctx, fmt.Sprintf("192.0.2.%d/32", i)), "cam", secret.NewToken())
	}
	// 192.0.2.0 failed once itself, and the id failed FreeFailures+1 times: it waits.
	if err := c.Token(sourced(ctx, "192.0.2.0/32"), "cam", secret.NewToken()); !errors.Is(err, ErrLockedOut) {
		t.Errorf("a source that failed for a locked id = %v, want ErrLockedOut", err)
	}
	if err := c.Token(sourced(ctx, "203.0.113.1/32"), "cam", secret.NewToken()); errors.Is(err, ErrLockedOut) {
		t.Errorf("a clean source = %v, want its token checked", err)
	}
}

// TestTokenRefusalCodes checks the reason of each refusal.
func TestTokenRefusalCodes(t *testing.T) {
	ctx := sourced(t.Context(), "192.0.2.1/32")
	store := hubkit.Store(t)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	mk := func(device string, expires time.Time) string {
		tok := secret.NewToken()
		if err := store.CreateToken(ctx, inventory.Token{Hash: secret.HashToken(tok), DeviceID: device, CreatedAt: now.Add(-2 * time.Hour), ExpiresAt: expires}); err != nil {
			t.Fatal(err)
		}
		return tok
	}
	expired := mk("cam", now.Add(-time.Hour))
	other := mk("lock", now.Add(time.Hour))
	c := New(store, nil, func() time.Time { return now })
	for _, tt := range []struct {
		name, device, token string
		want                protocol.Code
	}{
		{"unknown", "cam", secret.NewToken(), protocol.CodeTokenUnknown},
		{"another device's", "cam", other, protocol.CodeTokenUnknown},
		{"expired", "cam", expired, protocol.CodeTokenExpired},
	} {
		var r *Refusal
		if err := c.Token(ctx, tt.device, tt.token); !errors.As(err, &r) || r.Code != tt.want {
			t.Errorf("%s: Token() = %v, want a %s refusal", tt.name, err, tt.want)
		}
	}
	// A password that is no token (a failed admin login) is refused without a reason.
	var r *Refusal
	if err := c.Token(ctx, "cam", "admin-secret"); err == nil || errors.As(err, &r) {
		t.Errorf("Token(not a token) = %v, want a plain refusal", err)
	}
}

// TestAdmin checks admin logins: the same code path, one password check, whether the name
// is an admin's or not; no check at all for a token; and the lockout per source and name.
func TestAdmin(t *testing.T) {
	hash, err := secret.HashPasswordIterations("correct horse", 1000) // cheap, for the race detector
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	c := New(nil, []Admin{{Name: "admin", PasswordHash: hash}}, func() time.Time { return now })
	var checked []string
	c.check = func(h, pw string) bool {
		checked = append(checked, h)
		return secret.CheckPassword(h, pw)
	}
	ctx := sourced(t.Context(), "192.0.2.1/32")
	for _, tt := range []struct {
		name, user, pw string
		want           bool
		checkedHash    string
	}{
		{"right", "admin", "correct horse", true, hash},
		{"wrong password", "admin", "wrong", false, hash},
		{"no such admin", "root", "correct horse", false, c.standIn},
		{"no such admin, a device id", "cam", "whatever", false, c.standIn},
		{"a token", "cam", secret.NewToken(), false, ""},
	} {
		checked = nil
		if got := c.Admin(ctx, tt.user, tt.pw); got != tt.want {
			t.Errorf("%s: Admin(%q) = %v, want %v", tt.name, tt.user, got, tt.want)
		}
		want := []string{tt.checkedHash}
		if tt.checkedHash == "" {
			want = nil
		}
		if !slices.Equal(checked, want) {
			t.Errorf("%s: password checks %d (%v), want %d against %v", tt.name, len(checked), checked, len(want), want)
		}
	}
	if !c.IsAdmin("admin") || c.IsAdmin("cam") {
		t.Error("IsAdmin() wrong")
	}
	if got, want := secret.Iterations(c.standIn), secret.Iterations(hash); got != want {
		t.Errorf("the stand-in hash has %d iterations, the admin's %d: an unknown name would be faster", got, want)
	}
	// The failures above were 3 from 192.0.2.1; more lock it out, not another source.
	for range FreeFailures {
		c.Admin(ctx, "admin", "guess")
	}
	checked = nil
	if c.Admin(ctx, "admin", "correct horse") || len(checked) != 0 {
		t.Errorf("the right password from a locked-out source: allowed or checked (%d checks), want refused unchecked", len(checked))
	}
	if !c.Admin(sourced(t.Context(), "198.51.100.1/32"), "admin", "correct horse") {
		t.Error("the right password from a clean source is refused: the lockout locked the admin out")
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
