package inventory

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// Leases (PostgreSQL only): a named lease with a holder, a term and an expiry, kept in the
// table hearth_leases by the database's clock (so replicas' clocks never disagree on it).
// Granting, renewing and releasing a lease are writes like every other: they take the write
// lock (pgWriteLock). So is the fence check of a write that carries a term (WithFence): it
// runs under that lock, inside the write's transaction, and a new term is granted only once
// no write of the old term can still commit. A paused old leader's writes are refused
// however late they arrive.

// ErrFenced reports a write made for a lease term that is no longer the current one: the
// lease expired or passed to another holder. Nothing was written.
var ErrFenced = errors.New("fenced: the lease's term moved on")

// ErrNoLeases reports a lease operation on SQLite: a single hub needs no leader.
var ErrNoLeases = errors.New("leases need the postgres storage")

// leaseTable is created by OpenPostgres beside the migrated schema: it is not part of the
// inventory's data (migrate sqlite-to-postgres does not copy it, a SQLite file has none).
const leaseTable = `CREATE TABLE IF NOT EXISTS hearth_leases (
	name TEXT PRIMARY KEY NOT NULL,
	holder TEXT NOT NULL,
	term BIGINT NOT NULL,
	expires_at TIMESTAMPTZ NOT NULL
)`

// Fence is the lease term a write is made for (WithFence).
type Fence struct {
	Lease  string // the lease's name
	Holder string
	Term   int64
}

type fenceKey struct{}

// WithFence returns ctx carrying f: every write made with it checks, in its transaction,
// that f's holder still holds the lease in f's term, unexpired, and fails with ErrFenced
// otherwise. On SQLite the fence is not checked (one hub, no lease).
func WithFence(ctx context.Context, f Fence) context.Context {
	return context.WithValue(ctx, fenceKey{}, f)
}

// checkFence refuses tx's write if ctx carries a fence that no longer holds.
func checkFence(ctx context.Context, tx *gorm.DB) error {
	f, ok := ctx.Value(fenceKey{}).(Fence)
	if !ok {
		return nil
	}
	var n int64
	err := tx.Raw(`SELECT COUNT(*) FROM hearth_leases WHERE name = ? AND holder = ? AND term = ? AND expires_at > clock_timestamp()`,
		f.Lease, f.Holder, f.Term).Scan(&n).Error
	if err != nil {
		return fmt.Errorf("check lease %q: %w", f.Lease, err)
	}
	if n == 0 {
		return fmt.Errorf("lease %q term %d of %s: %w", f.Lease, f.Term, f.Holder, ErrFenced)
	}
	return nil
}

// LeaseGrant is a lease as its holder got it.
type LeaseGrant struct {
	Holder  string
	Term    int64
	Expires time.Time // by the database's clock
}

// AcquireLease grants the lease name to holder for ttl, or renews it if holder holds it
// unexpired (same term). An expired lease, or one never held, goes to holder in a new term.
// ok is false when another holder holds it unexpired; grant then describes that holder.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (grant LeaseGrant, ok bool, err error) {
	if !s.pg {
		return LeaseGrant{}, false, ErrNoLeases
	}
	if name == "" || holder == "" || ttl < time.Second {
		return LeaseGrant{}, false, invalidf("lease needs a name, a holder and a ttl of at least a second")
	}
	err = s.write(ctx, func(tx *gorm.DB) error {
		var rows []struct {
			Holder    string
			Term      int64
			ExpiresAt time.Time
		}
		err := tx.Raw(`INSERT INTO hearth_leases (name, holder, term, expires_at)
				VALUES (?, ?, 1, clock_timestamp() + ? * interval '1 millisecond')
			ON CONFLICT (name) DO UPDATE SET
				holder = excluded.holder,
				term = CASE WHEN hearth_leases.holder = excluded.holder AND hearth_leases.expires_at > clock_timestamp()
					THEN hearth_leases.term ELSE hearth_leases.term + 1 END,
				expires_at = excluded.expires_at
			WHERE hearth_leases.holder = excluded.holder OR hearth_leases.expires_at <= clock_timestamp()
			RETURNING holder, term, expires_at`, name, holder, ttl.Milliseconds()).Scan(&rows).Error
		if err != nil {
			return err
		}
		if len(rows) == 1 {
			grant, ok = LeaseGrant{Holder: rows[0].Holder, Term: rows[0].Term, Expires: rows[0].ExpiresAt.UTC()}, true
			return nil
		}
		if err := tx.Raw(`SELECT holder, term, expires_at FROM hearth_leases WHERE name = ?`, name).Scan(&rows).Error; err != nil {
			return err
		}
		if len(rows) == 1 {
			grant = LeaseGrant{Holder: rows[0].Holder, Term: rows[0].Term, Expires: rows[0].ExpiresAt.UTC()}
		}
		return nil
	})
	if err != nil {
		return LeaseGrant{}, false, fmt.Errorf("acquire lease %q: %w", name, err)
	}
	return grant, ok, nil
}

// ReleaseLease ends holder's lease name at once (a replica shutting down), so another
// takes over without waiting for the expiry; the term stays, the next holder's is higher.
// Releasing a lease holder does not hold is no error.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	if !s.pg {
		return ErrNoLeases
	}
	err := s.write(ctx, func(tx *gorm.DB) error {
		return tx.Exec(`UPDATE hearth_leases SET expires_at = clock_timestamp() WHERE name = ? AND holder = ?`, name, holder).Error
	})
	if err != nil {
		return fmt.Errorf("release lease %q: %w", name, err)
	}
	return nil
}

// Lease returns the lease name as the database holds it (expired or not), or ErrNotFound
// if it was never granted.
func (s *Store) Lease(ctx context.Context, name string) (LeaseGrant, error) {
	if !s.pg {
		return LeaseGrant{}, ErrNoLeases
	}
	var rows []struct {
		Holder    string
		Term      int64
		ExpiresAt time.Time
	}
	if err := s.read(ctx).Raw(`SELECT holder, term, expires_at FROM hearth_leases WHERE name = ?`, name).Scan(&rows).Error; err != nil {
		return LeaseGrant{}, fmt.Errorf("lease %q: %w", name, err)
	}
	if len(rows) == 0 {
		return LeaseGrant{}, fmt.Errorf("lease %q: %w", name, ErrNotFound)
	}
	return LeaseGrant{Holder: rows[0].Holder, Term: rows[0].Term, Expires: rows[0].ExpiresAt.UTC()}, nil
}
