package inventory

import (
	"context"
	"fmt"
	"time"

	"github.com/hearth-pki/hearth/protocol"
)

// renewalReasons are the attempt reasons that renew a certificate a device already has: not
// an enrollment, not an import (issue 13: the 24 h success rate counts renewals only).
var renewalReasons = []string{string(protocol.ReasonWindow), string(protocol.ReasonCommand),
	string(protocol.ReasonRekey), string(protocol.ReasonRecovery)}

// RenewalStats counts the renewal attempts (reasons window, command, rekey, recovery) started
// at or after since that ended: successes committed, failures failed, rolled back or expired.
// An attempt still pending (issued, not committed) counts neither way. Their ratio is Home
// Assistant's 24 h success rate. One aggregate query over the attempts since (indexed by
// their start).
func (s *Store) RenewalStats(ctx context.Context, since time.Time) (successes, failures int, err error) {
	var r struct {
		Successes int
		Failures  int
	}
	err = s.read(ctx).Raw(`SELECT
			COALESCE(SUM(CASE WHEN outcome = ? THEN 1 ELSE 0 END), 0) AS successes,
			COALESCE(SUM(CASE WHEN outcome IN (?, ?, ?) THEN 1 ELSE 0 END), 0) AS failures
		FROM attempts WHERE started_at >= ? AND reason IN ?`,
		OutcomeCommitted, OutcomeFailed, OutcomeRolledBack, OutcomeExpired, unix(since), renewalReasons).Scan(&r).Error
	if err != nil {
		return 0, 0, fmt.Errorf("renewal stats: %w", err)
	}
	return r.Successes, r.Failures, nil
}
