package inventory

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// DefaultRetention is how long the store keeps what no longer matters to any device: a
// finished attempt, counted from its end, and a superseded or abandoned certificate, counted
// from its expiry.
const DefaultRetention = 90 * 24 * time.Hour

// Pruned counts what Prune deleted.
type Pruned struct {
	Attempts     int
	Certificates int
}

// Prune deletes, in one transaction, the attempts that finished before cutoff (except each
// device's latest, which the dashboard and the renewal scheduler read) and the superseded and
// abandoned certificates that expired before cutoff. Active, pending and revoked certificates
// are kept (the CRL lists revoked ones), as is the audit log, which names every serial it
// concerns. The hub calls it at start and daily with now minus its retention.
func (s *Store) Prune(ctx context.Context, cutoff time.Time) (Pruned, error) {
	var out Pruned
	err := s.write(ctx, func(tx *gorm.DB) error {
		res := tx.Exec(`DELETE FROM attempts WHERE outcome <> ? AND finished_at < ?
			AND started_at < (SELECT MAX(a.started_at) FROM attempts a WHERE a.device_id = attempts.device_id)`,
			OutcomeIssued, unix(cutoff))
		if res.Error != nil {
			return res.Error
		}
		out.Attempts = int(res.RowsAffected)
		res = tx.Exec(`DELETE FROM certificates WHERE status IN (?, ?) AND not_after < ?`,
			StatusSuperseded, StatusAbandoned, unix(cutoff))
		if res.Error != nil {
			return res.Error
		}
		out.Certificates = int(res.RowsAffected)
		return nil
	})
	if err != nil {
		return Pruned{}, fmt.Errorf("prune: %w", err)
	}
	return out, nil
}
