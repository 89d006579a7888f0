package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/authz"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/secret"
	"github.com/hearth-pki/hearth/protocol"
)

// DoAs runs op for principal p: the one authorization check of every front end (CLI socket,
// bridge API, dashboard and JSON API, Home Assistant's broker). An operation p's role may not
// run is answered with protocol.CodeForbidden; with change approval on, an operation that
// needs it (authz.NeedsApproval) with protocol.CodeNeedsApproval, naming how to propose it.
// Otherwise it is Do with p.Name as the actor.
func (s *Service) DoAs(ctx context.Context, p authz.Principal, op string, payload []byte) protocol.BridgeResponse {
	if err := authz.Check(p, op); err != nil {
		s.cfg.Logger.Info("operation refused", "op", op, "actor", p.Name, "role", p.Role, "err", err)
		return errResponse(transactionOf(payload), protocol.CodeForbidden, err)
	}
	if s.cfg.ApprovalRequired && authz.NeedsApproval(op) {
		return errResponse(transactionOf(payload), protocol.CodeNeedsApproval, fmt.Errorf(
			"%s needs a second admin's approval: propose it (change/propose; for a policy, `hearth-gateway policy propose FILE`)", op))
	}
	return s.Do(withPrincipal(ctx, p), p.Name, op, payload)
}

type principalKey struct{}

func withPrincipal(ctx context.Context, p authz.Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// principalFrom is who runs the operation: DoAs's principal, or for Do (the hub's trusted
// callers) its actor as an admin.
func principalFrom(ctx context.Context) authz.Principal {
	p, _ := ctx.Value(principalKey{}).(authz.Principal)
	return p
}

// doUsers runs the user operations; ok is false for another op.
func (s *Service) doUsers(ctx context.Context, op string, payload []byte) (_ any, ok bool, _ error) {
	if !slices.Contains([]string{"user/add", "user/remove", "user/list", "user/set-role"}, op) {
		return nil, false, nil
	}
	var r protocol.UserRequest
	if err := protocol.Decode(payload, &r); err != nil {
		return nil, true, err
	}
	now := s.cfg.Now().UTC().Truncate(time.Second)
	switch op {
	case "user/list":
		users, err := s.cfg.Store.Users(ctx)
		if err != nil {
			return nil, true, internal(err)
		}
		out := protocol.UserList{Users: []protocol.UserInfo{}, Configured: s.cfg.ConfiguredAdmins}
		for _, u := range users {
			out.Users = append(out.Users, protocol.UserInfo{Name: u.Name, Role: u.Role, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt})
		}
		return out, true, nil
	case "user/add":
		role, err := authz.ParseRole(r.Role)
		if err != nil {
			return nil, true, err
		}
		if slices.Contains(s.cfg.ConfiguredAdmins, r.Name) {
			return nil, true, fmt.Errorf("user %q is an admin of the configuration file; choose another name", r.Name)
		}
		hash, err := secret.HashPassword(r.Password)
		if err != nil {
			return nil, true, fmt.Errorf("user %q: %w", r.Name, err)
		}
		err = s.cfg.Store.AddUser(ctx, inventory.User{Name: r.Name, Role: role.String(), PasswordHash: hash, CreatedAt: now})
		if errors.Is(err, inventory.ErrDuplicate) || errors.Is(err, inventory.ErrInvalid) {
			return nil, true, err
		}
		if err != nil {
			return nil, true, internal(err)
		}
		return protocol.UserInfo{Name: r.Name, Role: role.String(), CreatedAt: now, UpdatedAt: now}, true, nil
	case "user/set-role":
		role, err := authz.ParseRole(r.Role)
		if err != nil {
			return nil, true, err
		}
		prev, err := s.cfg.Store.SetUserRole(ctx, r.Name, role.String(), now)
		if err != nil {
			return nil, true, userError(r.Name, err)
		}
		return protocol.UserInfo{Name: r.Name, Role: role.String(), Previous: prev, UpdatedAt: now}, true, nil
	default: // user/remove
		u, err := s.cfg.Store.User(ctx, r.Name)
		if err == nil {
			err = s.cfg.Store.RemoveUser(ctx, r.Name, now)
		}
		if err != nil {
			return nil, true, userError(r.Name, err)
		}
		return protocol.UserInfo{Name: r.Name, Role: u.Role, Removed: true}, true, nil
	}
}

func userError(name string, err error) error {
	switch {
	case errors.Is(err, inventory.ErrNotFound):
		return &notFoundError{fmt.Sprintf("user %q does not exist (hearth-gateway user list)", name)}
	case errors.Is(err, inventory.ErrInvalid):
		return err
	}
	return internal(err)
}

// transactionOf is the request's transaction, for answers refused before decoding.
func transactionOf(payload []byte) string {
	var base protocol.BridgeRequest
	_ = json.Unmarshal(payload, &base)
	return base.Transaction
}
