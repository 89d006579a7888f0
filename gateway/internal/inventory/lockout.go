package inventory

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// Lockout is one remembered count of failed logins (gateway/internal/access), kept so that a
// restart does not wipe the backoff of a source, device id or user name that was guessing.
// Kind names the count ("source", "device", "user"), Key what failed. Count zero in
// SaveLockouts deletes the entry (a success reset it). Expires is when the entry is
// forgotten; Lockouts never returns it after that, and SaveLockouts deletes it.
type Lockout struct {
	Kind    string
	Key     string
	Count   int
	Last    time.Time
	Until   time.Time
	Expires time.Time
}

type lockoutRow struct {
	Kind    string `gorm:"column:kind;primaryKey"`
	Key     string `gorm:"column:key;primaryKey"`
	Count   int    `gorm:"column:count"`
	Last    int64  `gorm:"column:last_at"`
	Until   int64  `gorm:"column:until_at"`
	Expires int64  `gorm:"column:expires_at"`
}

func (lockoutRow) TableName() string { return "lockouts" }

// ceilUnix is t in Unix seconds rounded up, so a stored wait never ends early.
func ceilUnix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	sec := t.Unix()
	if t.Nanosecond() > 0 {
		sec++
	}
	return sec
}

// SaveLockouts stores the changed entries (upserts; Count zero deletes) and deletes every
// entry expired at now, in one write of the group commit: the table holds no more than the
// entries the lockout holds in memory.
func (s *Store) SaveLockouts(ctx context.Context, changed []Lockout, now time.Time) error {
	err := s.write(ctx, func(tx *gorm.DB) error {
		for _, l := range changed {
			if l.Count <= 0 {
				if err := tx.Exec("DELETE FROM lockouts WHERE kind = ? AND key = ?", l.Kind, l.Key).Error; err != nil {
					return err
				}
				continue
			}
			if err := tx.Exec(`INSERT INTO lockouts (kind, key, count, last_at, until_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)
				ON CONFLICT (kind, key) DO UPDATE SET count = excluded.count, last_at = excluded.last_at,
				until_at = excluded.until_at, expires_at = excluded.expires_at`,
				l.Kind, l.Key, l.Count, unix(l.Last), ceilUnix(l.Until), ceilUnix(l.Expires)).Error; err != nil {
				return err
			}
		}
		return tx.Exec("DELETE FROM lockouts WHERE expires_at <= ?", now.Unix()).Error
	})
	if err != nil {
		return fmt.Errorf("save lockouts: %w", err)
	}
	return nil
}

// Lockouts returns the entries not expired at now, of every kind, the latest to expire first
// (so that a caller holding only so many keeps the freshest).
func (s *Store) Lockouts(ctx context.Context, now time.Time) ([]Lockout, error) {
	var rows []lockoutRow
	if err := s.read(ctx).Where("expires_at > ?", now.Unix()).Order("expires_at DESC").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("lockouts: %w", err)
	}
	out := make([]Lockout, len(rows))
	for i, r := range rows {
		out[i] = Lockout{Kind: r.Kind, Key: r.Key, Count: r.Count, Last: fromUnix(r.Last), Until: fromUnix(r.Until), Expires: fromUnix(r.Expires)}
	}
	return out, nil
}
