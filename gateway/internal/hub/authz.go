package hub

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/access"
	"github.com/hearth-pki/hearth/gateway/internal/authz"
	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/gateway/internal/control"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/protocol"
)

// haPrincipal is who Home Assistant's broker is: any of its clients, restricted further to
// haOps. An operator may renew, which is what the entities' buttons do.
var haPrincipal = authz.Principal{Name: "ha:broker", Role: authz.Operator}

// brokerAuth lets the hub's users log in to the broker besides the configured admins, so a
// bridge request runs with its sender's role.
type brokerAuth struct {
	*access.Checker
	users *authz.Authenticator
	// failed records a refused password of an existing account (the audit log).
	failed func(username string)
}

// Admin accepts a configured admin's or a hub user's password: access.Checker.Password, the
// same lockout per source and name and the same work whether the name exists or not (issue
// 15). A wrong password of an existing account is audited; a name nobody has, a locked-out
// attempt and an enrollment token are not (the audit log is no flood sink).
func (a brokerAuth) Admin(ctx context.Context, username, password string) bool {
	_, err := a.Checker.Password(ctx, username, password)
	if errors.Is(err, authz.ErrBadLogin) {
		if _, lerr := a.users.Lookup(ctx, username); lerr == nil {
			a.failed(username)
		}
	}
	return err == nil
}

// brokerLoginFailed appends the login.failed record of a refused broker login.
func (h *Hub) brokerLoginFailed(username string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	user := protocol.Clip(username, 64)
	if _, err := h.store.AppendEvent(ctx, inventory.Event{Time: h.now(), Kind: protocol.EventLoginFailed, Actor: authz.PrincipalName(user),
		Message: "broker login refused: wrong password", Data: map[string]string{"user": user, "via": "mqtt", "reason": "wrong password"}}); err != nil {
		h.log.Error("audit failed broker login", "user", user, "err", err)
	}
}

// bridgePrincipal is who sent a bridge request on the hub's broker: the user the session
// logged in as, with its role as it is now.
func (h *Hub) bridgePrincipal(ctx context.Context, username string) (authz.Principal, error) {
	p, err := h.users.Lookup(ctx, username)
	if errors.Is(err, authz.ErrNoAccount) {
		return authz.Principal{Name: authz.PrincipalName(username)}, nil // removed since it logged in: no role
	}
	return p, err
}

// newUsers is the hub's authenticator: the configured admins, then the inventory's users.
func (h *Hub) newUsers(admins []authz.Account) *authz.Authenticator {
	return authz.NewAuthenticator(admins, authz.Inventory(h.store))
}

// checkDashboardLogin refuses to serve the dashboard to other machines when nobody could
// log in to it: with http_auth login that needs a configured admin or a user.
func (h *Hub) checkDashboardLogin(ctx context.Context) error {
	if h.cfg.HTTPListen == "" || h.cfg.Addon || h.cfg.HTTPAuth == config.HTTPAuthNone || config.IsLoopback(h.cfg.HTTPListen) || h.users.Static() {
		return nil
	}
	users, err := h.store.Users(ctx)
	if err != nil {
		return err
	}
	if len(users) == 0 {
		return fmt.Errorf("http_listen %s is reachable from other machines but no one can log in to the dashboard: "+
			"set HEARTH_ADMIN_PASSWORD or admins in the config file, or start on 127.0.0.1 and add a user "+
			"(hearth-gateway user add NAME --role admin)", h.cfg.HTTPListen)
	}
	return nil
}

// CanLogIn reports whether anyone can log in to the dashboard: a configured admin or a user.
func (h *Hub) CanLogIn(ctx context.Context) bool {
	if h.users.Static() {
		return true
	}
	users, err := h.store.Users(ctx)
	return err != nil || len(users) > 0 // on a read error, do not claim there is nobody
}

// ingressRoles reads the configured Home Assistant users' roles (validated by config).
func ingressRoles(cfg config.Config) (authz.Role, map[string]authz.Role) {
	def, err := authz.ParseRole(cfg.IngressRole)
	if err != nil {
		def = authz.Admin
	}
	m := make(map[string]authz.Role, len(cfg.IngressUsers))
	for name, r := range cfg.IngressUsers {
		if role, err := authz.ParseRole(r); err == nil {
			m[name] = role
		}
	}
	return def, m
}

// newCLIRoles maps the control socket's OS users to roles: root and the hub's own user are
// admins, others have their cli_roles entry (validated by config), else the role of the hub
// user of the same name.
func (h *Hub) newCLIRoles() control.Roles {
	names := make(map[string]authz.Role, len(h.cfg.CLIRoles))
	for name, r := range h.cfg.CLIRoles {
		if role, err := authz.ParseRole(r); err == nil {
			names[name] = role
		}
	}
	return control.Roles{Owner: uint32(os.Geteuid()), Names: names, Users: func(ctx context.Context, name string) (authz.Role, bool) {
		u, err := h.store.User(ctx, name)
		if err != nil {
			return 0, false
		}
		role, err := authz.ParseRole(u.Role)
		return role, err == nil
	}}
}
