package inventory

import (
	"context"
	"fmt"
	"slices"
	"time"

	"gorm.io/gorm"

	"github.com/hearth-pki/hearth/protocol"
)

// User is a person who may log in to the dashboard and the hub's broker. Role is viewer,
// operator or admin (gateway/internal/authz decides what each may do); PasswordHash comes
// from secret.HashPassword: the store never sees a password.
type User struct {
	Name         string
	Role         string
	PasswordHash string
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// userRoles are the roles the users table accepts (its CHECK constraint).
var userRoles = []string{"viewer", "operator", "admin"}

type userRow struct {
	Name         string `gorm:"column:name;primaryKey"`
	Role         string `gorm:"column:role"`
	PasswordHash string `gorm:"column:password_hash"`
	Created      int64  `gorm:"column:created_at"`
	Updated      int64  `gorm:"column:updated_at"`
}

func (userRow) TableName() string { return "users" }

func (r userRow) user() User {
	return User{Name: r.Name, Role: r.Role, PasswordHash: r.PasswordHash, CreatedAt: fromUnix(r.Created), UpdatedAt: fromUnix(r.Updated)}
}

func checkUser(name, role string) error {
	if err := protocol.ValidateDeviceID(name); err != nil {
		return invalidf("user name %q: letters, digits, '-' and '_' only, 1 to 64 characters", name)
	}
	if !slices.Contains(userRoles, role) {
		return invalidf("role %q is not viewer, operator or admin", role)
	}
	return nil
}

// AddUser stores u and appends a protocol.EventUserAdded event (actor from the context) in
// one transaction. A name already taken is ErrDuplicate.
func (s *Store) AddUser(ctx context.Context, u User) error {
	if err := checkUser(u.Name, u.Role); err != nil {
		return err
	}
	if u.PasswordHash == "" || u.CreatedAt.IsZero() {
		return invalidf("user needs a password hash and a creation time")
	}
	err := s.write(ctx, func(tx *gorm.DB) error {
		var n int64
		if err := tx.Model(&userRow{}).Where("name = ?", u.Name).Count(&n).Error; err != nil {
			return err
		}
		if n > 0 {
			return ErrDuplicate
		}
		r := userRow{Name: u.Name, Role: u.Role, PasswordHash: u.PasswordHash, Created: unix(u.CreatedAt), Updated: unix(u.CreatedAt)}
		if err := tx.Create(&r).Error; err != nil {
			return err
		}
		_, err := s.appendEvent(ctx, tx, Event{Time: u.CreatedAt, Kind: protocol.EventUserAdded, Actor: actorFrom(ctx),
			Message: fmt.Sprintf("user %s added as %s", u.Name, u.Role), Data: map[string]string{"user": u.Name, "role": u.Role}})
		return err
	})
	if err != nil {
		return fmt.Errorf("add user %q: %w", u.Name, err)
	}
	return nil
}

// User returns the user named name, or ErrNotFound.
func (s *Store) User(ctx context.Context, name string) (User, error) {
	row, found, err := one[userRow](s.read(ctx).Where("name = ?", name))
	if err != nil {
		return User{}, fmt.Errorf("user %q: %w", name, err)
	}
	if !found {
		return User{}, fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	return row.user(), nil
}

// Users returns every user in name order.
func (s *Store) Users(ctx context.Context) ([]User, error) {
	var rows []userRow
	if err := s.read(ctx).Order("name").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	out := make([]User, len(rows))
	for i, r := range rows {
		out[i] = r.user()
	}
	return out, nil
}

// SetUserRole changes a user's role and appends a protocol.EventUserRoleChanged event, in
// one transaction; it returns the previous role. Setting the role a user has changes
// nothing and records nothing. ErrNotFound for an unknown user.
func (s *Store) SetUserRole(ctx context.Context, name, role string, now time.Time) (string, error) {
	if err := checkUser(name, role); err != nil {
		return "", err
	}
	var previous string
	err := s.write(ctx, func(tx *gorm.DB) error {
		var rows []userRow
		if err := tx.Where("name = ?", name).Limit(1).Find(&rows).Error; err != nil {
			return err
		}
		if len(rows) == 0 {
			return ErrNotFound
		}
		if previous = rows[0].Role; previous == role {
			return nil
		}
		if err := tx.Model(&userRow{}).Where("name = ?", name).Updates(map[string]any{"role": role, "updated_at": unix(now)}).Error; err != nil {
			return err
		}
		_, err := s.appendEvent(ctx, tx, Event{Time: now, Kind: protocol.EventUserRoleChanged, Actor: actorFrom(ctx),
			Message: fmt.Sprintf("user %s is now %s (was %s)", name, role, previous),
			Data:    map[string]string{"user": name, "role": role, "previous": previous}})
		return err
	})
	if err != nil {
		return "", fmt.Errorf("set role of user %q: %w", name, err)
	}
	return previous, nil
}

// RemoveUser deletes a user and its sessions and appends a protocol.EventUserRemoved event,
// in one transaction. ErrNotFound for an unknown user.
func (s *Store) RemoveUser(ctx context.Context, name string, now time.Time) error {
	err := s.write(ctx, func(tx *gorm.DB) error {
		var rows []userRow
		if err := tx.Where("name = ?", name).Limit(1).Find(&rows).Error; err != nil {
			return err
		}
		if len(rows) == 0 {
			return ErrNotFound
		}
		if err := tx.Where(`"user" = ?`, name).Delete(&sessionRow{}).Error; err != nil {
			return err
		}
		if err := tx.Where("name = ?", name).Delete(&userRow{}).Error; err != nil {
			return err
		}
		_, err := s.appendEvent(ctx, tx, Event{Time: now, Kind: protocol.EventUserRemoved, Actor: actorFrom(ctx),
			Message: fmt.Sprintf("user %s (%s) removed", name, rows[0].Role), Data: map[string]string{"user": name, "role": rows[0].Role}})
		return err
	})
	if err != nil {
		return fmt.Errorf("remove user %q: %w", name, err)
	}
	return nil
}

// Session is a dashboard login: the hash of its cookie (the cookie itself is never stored),
// its user and its expiry.
type Session struct {
	Hash      string
	User      string
	CreatedAt time.Time
	ExpiresAt time.Time
}

type sessionRow struct {
	Hash    string `gorm:"column:hash;primaryKey"`
	User    string `gorm:"column:user"`
	Created int64  `gorm:"column:created_at"`
	Expires int64  `gorm:"column:expires_at"`
}

func (sessionRow) TableName() string { return "sessions" }

// CreateSession stores a session (whoever authenticated its user checked that the user
// exists) and deletes the sessions that expired by its creation time, in one transaction.
func (s *Store) CreateSession(ctx context.Context, se Session) error {
	if se.Hash == "" || se.CreatedAt.IsZero() || !se.ExpiresAt.After(se.CreatedAt) {
		return invalidf("session needs a hash, a creation time and a later expiry")
	}
	err := s.write(ctx, func(tx *gorm.DB) error {
		if err := tx.Where("expires_at <= ?", unix(se.CreatedAt)).Delete(&sessionRow{}).Error; err != nil {
			return err
		}
		return tx.Create(&sessionRow{Hash: se.Hash, User: se.User, Created: unix(se.CreatedAt), Expires: unix(se.ExpiresAt)}).Error
	})
	if err != nil {
		return fmt.Errorf("create session of %q: %w", se.User, err)
	}
	return nil
}

// Session returns the session with the hash if it has not expired at now, else ErrNotFound.
func (s *Store) Session(ctx context.Context, hash string, now time.Time) (Session, error) {
	var rows []sessionRow
	if err := s.read(ctx).Where("hash = ? AND expires_at > ?", hash, unix(now)).Limit(1).Find(&rows).Error; err != nil {
		return Session{}, fmt.Errorf("session: %w", err)
	}
	if len(rows) == 0 {
		return Session{}, fmt.Errorf("session: %w", ErrNotFound)
	}
	r := rows[0]
	return Session{Hash: r.Hash, User: r.User, CreatedAt: fromUnix(r.Created), ExpiresAt: fromUnix(r.Expires)}, nil
}

// DeleteSession ends a session (logout); ending one that does not exist is no error.
func (s *Store) DeleteSession(ctx context.Context, hash string) error {
	err := s.write(ctx, func(tx *gorm.DB) error { return tx.Where("hash = ?", hash).Delete(&sessionRow{}).Error })
	if err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}
