package hub

import (
	"context"
	"errors"
	"fmt"

	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/lease"
)

// openInventory opens the inventory the configuration names: the SQLite file in the data
// directory, or the PostgreSQL database hub replicas share.
func openInventory(ctx context.Context, cfg config.Config) (*inventory.Store, error) {
	if cfg.Storage.Replicated() {
		return inventory.OpenPostgres(ctx, inventory.PostgresOptions{DSN: cfg.Storage.DSN, PasswordFile: cfg.Storage.PasswordFile})
	}
	return inventory.Open(ctx, cfg.DatabasePath())
}

// newLease returns the scheduler's lease among replicas, or nil for a single hub (which
// always runs its scheduler).
func (h *Hub) newLease() (*lease.Lease, error) {
	if !h.cfg.Storage.Replicated() {
		return nil, nil
	}
	return lease.New(lease.Config{Store: h.store, Name: "scheduler", Replica: h.cfg.ReplicaID,
		Changed: func(leader bool, _ int64) {
			if leader {
				h.renewal.Kick()
			}
		},
		Logger: h.log.With("part", "lease")})
}

// schedulerLeader is the renewal scheduler's gate: nil (always leader) for a single hub.
func (h *Hub) schedulerLeader() func(ctx context.Context) (context.Context, bool) {
	if h.lease == nil {
		return nil
	}
	return h.lease.Leader
}

// isLeader reports whether this replica runs the scheduler (the metrics' leader gauge).
func (h *Hub) isLeader() bool { return h.lease != nil && h.lease.Term() != 0 }

// ready is /readyz: the database answers, the broker listens, the CA is loaded and its
// intermediate has not expired.
func (h *Hub) ready(ctx context.Context) error {
	var errs []error
	if err := h.store.Ping(ctx); err != nil {
		errs = append(errs, fmt.Errorf("database: %w", err))
	}
	if h.broker.Addr() == nil {
		errs = append(errs, errors.New("broker: not listening"))
	}
	if h.ca == nil || h.ca.Intermediate() == nil {
		errs = append(errs, errors.New("CA: not loaded"))
	} else if !h.now().Before(h.ca.Intermediate().NotAfter) {
		errs = append(errs, errors.New("CA: the intermediate has expired"))
	}
	return errors.Join(errs...)
}
