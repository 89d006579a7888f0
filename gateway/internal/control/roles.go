package control

import (
	"context"
	"fmt"
	"strconv"

	"github.com/hearth-pki/hearth/gateway/internal/authz"
)

// Peer is the OS user of the process at the other end of a connection, as the kernel reports
// it (SO_PEERCRED): its uid and, when the system knows one, its user name.
type Peer struct {
	Known bool // false when the kernel could not tell (outside Linux): no role
	UID   uint32
	Name  string // "" without a user name for the uid
}

// String names the peer as the audit log's actor does after "cli:": the user name, else
// "uid N", else "unknown".
func (p Peer) String() string {
	switch {
	case !p.Known:
		return "unknown"
	case p.Name != "":
		return p.Name
	}
	return "uid " + strconv.FormatUint(uint64(p.UID), 10)
}

// Roles decides which role the OS user at the other end of the socket has (issue 15): root
// and Owner, the hub's own user, are admins (either can read the CA keys in the data
// directory anyway); any other user has its role in Names (the configuration's cli_roles),
// else the role of the hub user of the same name (Users), else none. A uid without a user
// name has no role but root's and Owner's. A peer the kernel cannot report (outside Linux)
// is an admin while the socket is the owner's alone (not Shared), else nobody.
type Roles struct {
	Owner uint32
	Names map[string]authz.Role
	// Users returns the role of the hub user name (the inventory's users table), false when
	// there is none; nil: no hub user has a CLI role.
	Users func(ctx context.Context, name string) (authz.Role, bool)
}

// Shared reports whether users other than root and Owner may have a role, so the socket must
// be reachable for them: cli_roles names someone.
func (r Roles) Shared() bool { return len(r.Names) > 0 }

// Role returns p's role; zero for none.
func (r Roles) Role(ctx context.Context, p Peer) authz.Role {
	switch {
	case !p.Known && !r.Shared():
		return authz.Admin
	case !p.Known:
		return 0
	case p.UID == 0 || p.UID == r.Owner:
		return authz.Admin
	case p.Name == "":
		return 0
	}
	if role, ok := r.Names[p.Name]; ok {
		return role
	}
	if r.Users != nil {
		if role, ok := r.Users(ctx, p.Name); ok {
			return role
		}
	}
	return 0
}

// noRole is the answer to a peer without any role: who it is, and how an admin gives it one.
func noRole(p Peer) error {
	if !p.Known || p.Name == "" {
		return fmt.Errorf("the hub cannot name the OS user of this process (%s), so it has no role: run the command as root or as the hub's own user", p)
	}
	return fmt.Errorf("the OS user %s has no role on this hub: an admin can give it one with cli_roles: {%s: viewer} in the configuration, or with `hearth-gateway user add %s --role viewer`", p.Name, p.Name, p.Name)
}
