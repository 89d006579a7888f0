// Package access decides who may connect to the hub's broker: devices by certificate,
// enrolling devices by one-time token, people (configured admins, the hub's users) by
// password. It implements the broker's Auth interface over the inventory and remembers, for
// the issuer, which token an enrolling session logged in with (the token is consumed only
// when a certificate is issued, so a refused CSR does not burn it).
//
// Failed logins lock out without letting anyone lock out a device or an admin
// (protocol/README.md, "Why an enrollment login was refused"; issue 15): failures are counted
// per source (broker.Source: an IPv4 address or an IPv6 /64) and per name (device id, user
// name). A source that failed more than FreeFailures times waits, with exponential backoff,
// before any further login; a name that failed likewise waits only for sources that failed
// themselves, so the right token or password still works from a source that did not fail.
// Failures are forgotten ForgetAfter the last one, and survive a restart: Run stores the
// counts that changed every SaveEvery through the inventory (its lockouts table), and Load
// restores them at start. A refused token login says why with a *Refusal (token_unknown,
// token_used, token_expired, locked_out), which the broker tells the agent.
//
// People log in by password: the configured admins and the hub's users (authz.Authenticator,
// one PBKDF2 of 600,000 iterations per check, against a dummy hash when the name is nobody's,
// so the time taken does not tell names from others). Password applies the lockout above to
// every such login, configured admin or user alike, before the check; token-shaped
// passwords (secret.IsToken) are enrollments and never reach PBKDF2.
//
// A Checker is safe for concurrent use.
package access

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/authz"
	"github.com/hearth-pki/hearth/gateway/internal/broker"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/rate"
	"github.com/hearth-pki/hearth/gateway/internal/secret"
	"github.com/hearth-pki/hearth/protocol"
)

// Lockout settings.
const (
	FreeFailures = 5                // failed logins per source or name before any wait
	FirstWait    = time.Second      // the wait after the next failure; it doubles with each
	MaxWait      = 15 * time.Minute // the longest wait
	ForgetAfter  = time.Hour        // failures are forgotten this long after the last one
)

// Errors returned to the broker; it refuses the CONNECT on any error.
var (
	ErrUnknownCertificate = errors.New("certificate not issued by this hub to this device")
	ErrRevoked            = errors.New("certificate revoked")
	ErrAbandoned          = errors.New("certificate abandoned: its request ended without a commit")
	ErrSuperseded         = errors.New("certificate superseded by a newer one")
	ErrQuarantined        = errors.New("device quarantined: enroll it again with a new token")
	ErrLockedOut          = errors.New("too many failed logins; locked out")
	ErrBadToken           = errors.New("enrollment token refused")
)

// Refusal is a refused token login with the reason the agent is told. It implements
// broker.Refusal and wraps ErrLockedOut or ErrBadToken (and then the inventory's
// ErrTokenInvalid, ErrTokenUsed or ErrTokenExpired).
type Refusal struct {
	Code       protocol.Code
	RetryAfter time.Duration // with CodeLockedOut: how long the source must wait
	Err        error
}

// Error describes the refusal for the log.
func (r *Refusal) Error() string { return r.Err.Error() }

// Unwrap returns the cause.
func (r *Refusal) Unwrap() error { return r.Err }

// Reason returns the code and wait the agent is told.
func (r *Refusal) Reason() (protocol.Code, time.Duration) { return r.Code, r.RetryAfter }

var _ broker.Refusal = (*Refusal)(nil)

// Authenticator checks a person's password (authz.Authenticator implements it): the
// principal, or an error wrapping authz.ErrBadLogin after the same work whether the name
// exists or not; any other error means the password could not be checked.
type Authenticator interface {
	Authenticate(ctx context.Context, name, password string) (authz.Principal, error)
}

// Checker answers the broker's authentication questions.
type Checker struct {
	store  *inventory.Store
	people Authenticator
	now    func() time.Time
	// overlap is how long a superseded certificate still logs in (SetSupersededOverlap).
	overlap time.Duration

	sources *rate.Backoff            // failed logins by source, tokens and passwords alike
	ids     *rate.Backoff            // failed token logins by device id
	names   *rate.Backoff            // failed password logins by name
	kept    map[string]*rate.Backoff // further counts Run saves and Load restores (Keep)

	mu     sync.Mutex
	tokens map[string]string // device id → hash of the token its session logged in with
	swept  time.Time         // when Save last dropped expired entries without a change

	saving  sync.Mutex          // one Save at a time
	unsaved []inventory.Lockout // changes a failed Save could not store
	log     *slog.Logger
}

// New returns a Checker over the inventory's tokens and certificates and people's passwords
// (nil: no password login succeeds). now defaults to time.Now.
func New(store *inventory.Store, people Authenticator, now func() time.Time) *Checker {
	if now == nil {
		now = time.Now
	}
	backoff := func() *rate.Backoff {
		return rate.NewBackoff(rate.BackoffConfig{Free: FreeFailures, Base: FirstWait, Max: MaxWait, Forget: ForgetAfter})
	}
	return &Checker{store: store, people: people, now: now, overlap: DefaultSupersededOverlap,
		sources: backoff(), ids: backoff(), names: backoff(), tokens: map[string]string{}}
}

// wait returns how long a login for name (in names) from src must still wait: the source's
// own wait, or the name's when the source failed too.
func (c *Checker) wait(names *rate.Backoff, src, name string, now time.Time) time.Duration {
	if w := c.sources.Wait(src, now); w > 0 {
		return w
	}
	if c.sources.Failed(src, now) {
		return names.Wait(name, now)
	}
	return 0
}

// Failures returns how many sources, device ids and admin names the lockout remembers at
// now; the counts shrink as failures are forgotten.
func (c *Checker) Failures(now time.Time) (sources, ids, names int) {
	return c.sources.Len(now), c.ids.Len(now), c.names.Len(now)
}

// Token allows an enrollment login with an unused, unexpired token for deviceID, and
// remembers it for TokenHash. A refusal of a token-shaped password is a *Refusal, except
// when the inventory could not be read (then nothing counts as a failure).
func (c *Checker) Token(ctx context.Context, deviceID, token string) error {
	if !secret.IsToken(token) {
		// A failed admin login (Admin counted it): refused without a reason, as a person
		// with a wrong password expects (CONNACK "not authorized").
		return fmt.Errorf("%w: the password is neither an admin's nor an enrollment token", ErrBadToken)
	}
	now, src := c.now(), broker.Source(ctx)
	if w := c.wait(c.ids, src, deviceID, now); w > 0 {
		return &Refusal{Code: protocol.CodeLockedOut, RetryAfter: w,
			Err: fmt.Errorf("%w: source %s, device %s, for %s", ErrLockedOut, src, deviceID, w.Round(time.Second))}
	}
	hash := secret.HashToken(token)
	err := c.store.CheckToken(ctx, deviceID, hash, now)
	if errors.Is(err, inventory.ErrTokenUsed) && c.replyLost(ctx, deviceID, hash, now) {
		err = nil
	}
	var code protocol.Code
	switch {
	case err == nil:
		c.ids.Reset(deviceID)
		c.mu.Lock()
		c.tokens[deviceID] = hash
		c.mu.Unlock()
		return nil
	case errors.Is(err, inventory.ErrTokenInvalid):
		code = protocol.CodeTokenUnknown
	case errors.Is(err, inventory.ErrTokenUsed):
		code = protocol.CodeTokenUsed
	case errors.Is(err, inventory.ErrTokenExpired):
		code = protocol.CodeTokenExpired
	default:
		return fmt.Errorf("check token: %w", err)
	}
	c.sources.Fail(src, now)
	c.ids.Fail(deviceID, now)
	return &Refusal{Code: code, Err: fmt.Errorf("%w: %w", ErrBadToken, err)}
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

// ErrEnrollment is Password's answer to a token-shaped password: an enrollment, which Token
// decides (and counts).
var ErrEnrollment = errors.New("the password is an enrollment token")

// Admin reports whether username and password are a person's credentials (broker.Auth): a
// configured admin's or a hub user's; Password decides.
func (c *Checker) Admin(ctx context.Context, username, password string) bool {
	_, err := c.Password(ctx, username, password)
	return err == nil
}

// Password checks a person's password login from the source in ctx, configured admin and hub
// user alike. A token-shaped password is an enrollment: ErrEnrollment at once, unchecked. A
// source the lockout makes wait gets an error wrapping ErrLockedOut, unchecked. Any other
// login takes exactly one Authenticate call — the same work whether the name exists or not —
// and a wrong password (authz.ErrBadLogin) counts for the source and the name; an error
// checking it counts for neither.
func (c *Checker) Password(ctx context.Context, name, password string) (authz.Principal, error) {
	if secret.IsToken(password) {
		return authz.Principal{}, ErrEnrollment
	}
	now, src := c.now(), broker.Source(ctx)
	if w := c.wait(c.names, src, name, now); w > 0 {
		return authz.Principal{}, fmt.Errorf("%w: source %s, user %q, for %s", ErrLockedOut, src, name, w.Round(time.Second))
	}
	if c.people == nil {
		return authz.Principal{}, authz.ErrBadLogin
	}
	p, err := c.people.Authenticate(ctx, name, password)
	switch {
	case err == nil:
		c.names.Reset(name)
		return p, nil
	case errors.Is(err, authz.ErrBadLogin):
		c.sources.Fail(src, now)
		c.names.Fail(name, now)
	}
	return authz.Principal{}, err
}
