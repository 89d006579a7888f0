package access

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/authz"
	"github.com/hearth-pki/hearth/gateway/internal/broker"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/secret"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
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

// counting counts the password checks an Authenticator is asked for.
type counting struct {
	Authenticator
	names []string
}

func (c *counting) Authenticate(ctx context.Context, name, password string) (authz.Principal, error) {
	c.names = append(c.names, name)
	return c.Authenticator.Authenticate(ctx, name, password)
}

// TestPassword checks password logins of people, a configured admin and a hub user of the
// inventory alike (issue 15): one password check whether the name exists or not, none for a
// token; the lockout per source and per name for both kinds of account, and the right
// password still working from a source that did not fail.
func TestPassword(t *testing.T) {
	ctx := t.Context()
	store := hubkit.Store(t)
	hash := testkit.PasswordHash("correct horse")
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	if err := store.AddUser(ctx, inventory.User{Name: "vera", Role: "viewer", PasswordHash: hash, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	people := &counting{Authenticator: authz.NewAuthenticator([]authz.Account{{Name: "admin", Role: authz.Admin, PasswordHash: hash}}, authz.Inventory(store))}
	c := New(store, people, func() time.Time { return now })
	src := sourced(ctx, "192.0.2.1/32")
	for _, tt := range []struct {
		name, user, pw string
		want           authz.Principal
		wantErr        error
		checks         int
	}{
		{"configured admin", "admin", "correct horse", authz.Principal{Name: "user:admin", Role: authz.Admin}, nil, 1},
		{"hub user", "vera", "correct horse", authz.Principal{Name: "user:vera", Role: authz.Viewer}, nil, 1},
		{"admin, wrong password", "admin", "wrong", authz.Principal{}, authz.ErrBadLogin, 1},
		{"user, wrong password", "vera", "wrong", authz.Principal{}, authz.ErrBadLogin, 1},
		{"nobody's name", "root", "correct horse", authz.Principal{}, authz.ErrBadLogin, 1},
		{"a token", "cam", secret.NewToken(), authz.Principal{}, ErrEnrollment, 0},
	} {
		people.names = nil
		got, err := c.Password(src, tt.user, tt.pw)
		if got != tt.want || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
			t.Errorf("%s: Password(%q) = %v, %v, want %v, %v", tt.name, tt.user, got, err, tt.want, tt.wantErr)
		}
		if len(people.names) != tt.checks {
			t.Errorf("%s: %d password checks, want %d", tt.name, len(people.names), tt.checks)
		}
		if c.Admin(src, tt.user, tt.pw) != (tt.wantErr == nil) {
			t.Errorf("%s: Admin(%q) disagrees with Password", tt.name, tt.user)
		}
	}
	// Failures of one source for a name lock the name out there, not everywhere.
	for _, user := range []string{"admin", "vera"} {
		t.Run(user, func(t *testing.T) {
			attacker := sourced(ctx, "198.51.100.7/32")
			for range FreeFailures + 1 {
				c.Password(attacker, user, "guess")
			}
			people.names = nil
			if _, err := c.Password(attacker, user, "correct horse"); !errors.Is(err, ErrLockedOut) || len(people.names) != 0 {
				t.Errorf("the right password from a locked-out source = %v after %d checks, want ErrLockedOut unchecked", err, len(people.names))
			}
			if _, err := c.Password(sourced(ctx, "203.0.113.9/32"), user, "correct horse"); err != nil {
				t.Errorf("the right password from a clean source = %v: the lockout locked %s out", err, user)
			}
		})
	}
	// Without people nothing logs in, and nothing is checked.
	if ok := New(store, nil, nil).Admin(src, "admin", "correct horse"); ok {
		t.Error("Admin without an Authenticator = true")
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
