package authz

import (
	"context"
	"errors"
	"fmt"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
)

// UserStore is what Inventory needs of the inventory (inventory.Store implements it).
type UserStore interface {
	User(ctx context.Context, name string) (inventory.User, error)
}

// Inventory returns the Accounts of the inventory's users.
func Inventory(s UserStore) Accounts { return inventoryAccounts{s} }

type inventoryAccounts struct{ s UserStore }

func (a inventoryAccounts) Account(ctx context.Context, name string) (Account, error) {
	u, err := a.s.User(ctx, name)
	if errors.Is(err, inventory.ErrNotFound) {
		return Account{}, ErrNoAccount
	}
	if err != nil {
		return Account{}, err
	}
	role, err := ParseRole(u.Role)
	if err != nil {
		return Account{}, fmt.Errorf("user %q: %w", name, err)
	}
	return Account{Name: u.Name, Role: role, PasswordHash: u.PasswordHash}, nil
}
