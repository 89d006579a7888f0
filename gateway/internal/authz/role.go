// Package authz decides who may run which administrative operation. Every front end — the
// CLI's control socket, the bridge API on the hub's broker, the dashboard and its JSON API,
// Home Assistant's broker — turns whoever asks into a Principal and calls Check (through
// admin.Service.DoAs) before the operation runs, so a role means the same everywhere.
//
// Roles are ordered: a viewer reads; an operator also renews, runs campaigns and adds
// devices; an admin also changes the policy, the CA, revokes and removes devices and manages
// users. An operation this package does not list needs an admin, so a new operation is
// closed until someone opens it here.
//
// Everything here is a pure function or safe for concurrent use.
package authz

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Role is what a principal may do. The zero Role is none: nothing is allowed.
type Role int

// The roles, weakest first; each may do everything the ones before it may.
const (
	Viewer Role = iota + 1
	Operator
	Admin
)

// Roles lists the roles weakest first.
func Roles() []Role { return []Role{Viewer, Operator, Admin} }

// String returns the role's name as configured and shown: viewer, operator or admin.
func (r Role) String() string {
	switch r {
	case Viewer:
		return "viewer"
	case Operator:
		return "operator"
	case Admin:
		return "admin"
	}
	return "none"
}

// ParseRole reads a role's name (viewer, operator, admin).
func ParseRole(s string) (Role, error) {
	for _, r := range Roles() {
		if strings.EqualFold(strings.TrimSpace(s), r.String()) {
			return r, nil
		}
	}
	return 0, fmt.Errorf("role %q is not viewer, operator or admin", s)
}

// Principal is who asks: Name is the actor the audit log records ("user:alice",
// "ha:Alice", "cli:root", "mqtt:admin"), Role what the principal may do.
type Principal struct {
	Name string
	Role Role
}

// ErrDenied is the error Check wraps when a principal's role is too weak.
var ErrDenied = errors.New("permission denied")

// DeniedError says which operation was refused to whom and which role it needs.
type DeniedError struct {
	Principal Principal
	Op        string
	Need      Role
}

func (e *DeniedError) Error() string {
	if e.Principal.Role == 0 {
		return fmt.Sprintf("%s needs a login with the %s role", e.Op, e.Need)
	}
	return fmt.Sprintf("%s needs the %s role; %s is %s", e.Op, e.Need, e.Principal.Name, e.Principal.Role)
}

// Unwrap makes errors.Is(err, ErrDenied) hold.
func (e *DeniedError) Unwrap() error { return ErrDenied }

// readOps and operateOps are the operations a viewer and an operator may run; anything else
// needs an admin.
var (
	readOps = []string{"device/list", "device/get", "events", "campaign/list", "ca/show", "audit/verify",
		"policy/diff", "change/list", "help/request"}
	operateOps = []string{"device/renew", "campaign/start", "token/create", "device/import", "device/sign"}
)

// Need returns the weakest role that may run op. Operations not listed need Admin.
func Need(op string) Role {
	switch {
	case slices.Contains(readOps, op):
		return Viewer
	case slices.Contains(operateOps, op):
		return Operator
	}
	return Admin
}

// approvalOps are the operations that, with change approval on, run only once a second
// admin approves them (issue 15): policy changes, a family's revocation
// (incident/family-compromised), an intermediate's (incident/intermediate-compromised) and
// operations on the CA (by the name starting with "ca/"; ca/show reads).
var approvalOps = []string{"policy/apply", "policy/reload", "incident/family-compromised", "incident/intermediate-compromised"}

// NeedsApproval reports whether op, with change approval on, must be proposed and approved by
// a second admin rather than run directly.
func NeedsApproval(op string) bool {
	return slices.Contains(approvalOps, op) || (strings.HasPrefix(op, "ca/") && Need(op) == Admin)
}

// Check returns nil when p may run op, else a *DeniedError (errors.Is ErrDenied).
func Check(p Principal, op string) error {
	if need := Need(op); p.Role < need {
		return &DeniedError{Principal: p, Op: op, Need: need}
	}
	return nil
}
