package authz

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hearth-pki/hearth/gateway/internal/secret"
)

// Account is a person's login: a name, a role and a password hash from secret.HashPassword.
type Account struct {
	Name         string
	Role         Role
	PasswordHash string
}

// Accounts looks accounts up by name (the inventory's users), returning ErrNoAccount for a
// name it does not have.
type Accounts interface {
	Account(ctx context.Context, name string) (Account, error)
}

// Errors of Authenticate and Lookup.
var (
	ErrNoAccount = errors.New("no such user")
	ErrBadLogin  = errors.New("wrong user name or password")
)

// Authenticator checks logins against the configured admins (config file and
// HEARTH_ADMIN_PASSWORD, always role admin) and the users of the inventory. A configured
// admin shadows a user of the same name.
type Authenticator struct {
	static   map[string]Account
	accounts Accounts
	// check compares a password with a hash (secret.CheckPassword; tests count the calls).
	check func(hash, password string) bool
	// dummy is the hash an unknown name's password is checked against, so that a name
	// nobody has costs the same work as a real one.
	dummy func() string
}

// dummyHash is made once per process, with the cost of every stored hash (HashPassword's
// iteration count); making it costs no key derivation (secret.StandIn), so the first login
// for an unknown name costs what any other does.
var dummyHash = sync.OnceValue(func() string { return secret.StandIn(0) })

// NewAuthenticator returns an Authenticator over static accounts and accounts (nil: only the
// static ones).
func NewAuthenticator(static []Account, accounts Accounts) *Authenticator {
	m := make(map[string]Account, len(static))
	for _, a := range static {
		m[a.Name] = a
	}
	return &Authenticator{static: m, accounts: accounts, check: secret.CheckPassword, dummy: dummyHash}
}

// PrincipalName is the audit actor of the account name: the same for a person whichever
// front end they use, which is what lets the change approval tell two admins apart.
func PrincipalName(account string) string { return "user:" + account }

func (a *Authenticator) account(ctx context.Context, name string) (Account, error) {
	if acc, ok := a.static[name]; ok {
		return acc, nil
	}
	if a.accounts == nil || name == "" {
		return Account{}, ErrNoAccount
	}
	return a.accounts.Account(ctx, name)
}

// Authenticate is the one password check of the hub for people (dashboard logins, broker
// logins of users): the principal of name when password is its password, else an error
// wrapping ErrBadLogin, the same whether the name exists or not, after the same password
// hashing work (an unknown name is checked against a dummy hash). Wrap this function to add
// throttling; every caller goes through it.
func (a *Authenticator) Authenticate(ctx context.Context, name, password string) (Principal, error) {
	acc, err := a.account(ctx, name)
	if err != nil && !errors.Is(err, ErrNoAccount) {
		return Principal{}, fmt.Errorf("look up user %q: %w", name, err)
	}
	if err != nil {
		a.check(a.dummy(), password) // the same work as for a real name
		return Principal{}, ErrBadLogin
	}
	if !a.check(acc.PasswordHash, password) || password == "" {
		return Principal{}, ErrBadLogin
	}
	return Principal{Name: PrincipalName(acc.Name), Role: acc.Role}, nil
}

// Lookup returns the principal of an account already authenticated (a dashboard session, a
// broker session), with its role as it is now: a role changed or a user removed takes
// effect on the next request. ErrNoAccount for a name that no longer exists.
func (a *Authenticator) Lookup(ctx context.Context, name string) (Principal, error) {
	acc, err := a.account(ctx, name)
	if err != nil {
		return Principal{}, err
	}
	return Principal{Name: PrincipalName(acc.Name), Role: acc.Role}, nil
}

// Static reports whether any account is configured outside the inventory.
func (a *Authenticator) Static() bool { return len(a.static) > 0 }
