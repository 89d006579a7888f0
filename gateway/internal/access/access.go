// Package access decides who may connect to the hub's broker: devices by certificate,
// enrolling devices by one-time token, admins by password. It implements the broker's Auth
// interface over the inventory and remembers, for the issuer, which token an enrolling
// session logged in with (the token is consumed only when a certificate is issued, so a
// refused CSR does not burn it).
//
// Repeated token failures for one device id lock that id out for LockoutFor: an attacker
// cannot guess tokens faster than MaxFailures per LockoutFor.
//
// A Checker is safe for concurrent use.
package access

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/secret"
)

// Lockout settings.
const (
	MaxFailures = 5
	LockoutFor  = 15 * time.Minute
)

// Errors returned to the broker; it refuses the CONNECT on any error.
var (
	ErrUnknownCertificate = errors.New("certificate not issued by this hub to this device")
	ErrRevoked            = errors.New("certificate revoked")
	ErrAbandoned          = errors.New("certificate abandoned: its request ended without a commit")
	ErrSuperseded         = errors.New("certificate superseded by a newer one")
	ErrQuarantined        = errors.New("device quarantined: enroll it again with a new token")
	ErrLockedOut          = errors.New("too many failed token attempts; locked out")
	ErrBadToken           = errors.New("enrollment token refused")
)

// Admin is an administrator login: a name and a hash from secret.HashPassword.
type Admin struct {
	Name         string
	PasswordHash string
}

// Checker answers the broker's authentication questions.
type Checker struct {
	store  *inventory.Store
	admins map[string]string
	now    func() time.Time
	// overlap is how long a superseded certificate still logs in (SetSupersededOverlap).
	overlap time.Duration

	mu       sync.Mutex
	failures map[string]*failure // by device id
	tokens   map[string]string   // device id → hash of the token its session logged in with
}

type failure struct {
	count int
	until time.Time
}

// New returns a Checker. now defaults to time.Now.
func New(store *inventory.Store, admins []Admin, now func() time.Time) *Checker {
	if now == nil {
		now = time.Now
	}
	m := make(map[string]string, len(admins))
	for _, a := range admins {
		m[a.Name] = a.PasswordHash
	}
	return &Checker{store: store, admins: m, now: now, overlap: DefaultSupersededOverlap,
		failures: map[string]*failure{}, tokens: map[string]string{}}
}

// Token allows an enrollment login with an unused, unexpired token for deviceID, and
// remembers it for TokenHash.
func (c *Checker) Token(ctx context.Context, deviceID, token string) error {
	now := c.now()
	c.mu.Lock()
	if f := c.failures[deviceID]; f != nil && now.Before(f.until) {
		c.mu.Unlock()
		return fmt.Errorf("%w until %s", ErrLockedOut, f.until.UTC().Format(time.RFC3339))
	}
	c.mu.Unlock()

	hash := secret.HashToken(token)
	err := c.store.CheckToken(ctx, deviceID, hash, now)
	if errors.Is(err, inventory.ErrTokenUsed) && c.replyLost(ctx, deviceID, hash, now) {
		err = nil
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		f := c.failures[deviceID]
		if f == nil || (!f.until.IsZero() && !now.Before(f.until)) {
			f = &failure{}
			c.failures[deviceID] = f
		}
		f.count++
		if f.count >= MaxFailures {
			f.until = now.Add(LockoutFor)
		}
		return fmt.Errorf("%w: %w", ErrBadToken, err)
	}
	delete(c.failures, deviceID)
	c.tokens[deviceID] = hash
	return nil
}

// ResubmitWindow is how long after its use a token still logs in, while its device has not
// committed a certificate: an agent whose reply was lost reconnects and resubmits the same
// request id, which the issuer answers with the certificate already issued. A new request on
// such a session is refused, because the token is used.
const ResubmitWindow = time.Hour

func (c *Checker) replyLost(ctx context.Context, deviceID, hash string, now time.Time) bool {
	if _, err := c.store.ActiveCertificate(ctx, deviceID); err == nil {
		return false
	}
	t, err := c.store.Token(ctx, hash)
	return err == nil && t.DeviceID == deviceID && !t.UsedAt.IsZero() && now.Sub(t.UsedAt) < ResubmitWindow
}

// TokenHash returns the hash of the token deviceID's enrolling session logged in with.
func (c *Checker) TokenHash(deviceID string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tokens[deviceID]
}

// IsAdmin reports whether name is an admin login, so the broker can tell an admin from an
// enrolling device before checking the password.
func (c *Checker) IsAdmin(name string) bool {
	_, ok := c.admins[name]
	return ok
}

// Admin checks an admin's password.
func (c *Checker) Admin(name, password string) bool {
	hash, ok := c.admins[name]
	return ok && secret.CheckPassword(hash, password)
}
