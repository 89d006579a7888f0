package inventory

import (
	"context"
	"fmt"
)

// CountActiveIssuedBy returns how many devices' active certificates issuer (a CA subject,
// as Certificate.Issuer holds it) issued: one aggregate query, so an intermediate rotation
// knows when no device uses the previous intermediate any more.
func (s *Store) CountActiveIssuedBy(ctx context.Context, issuer string) (int, error) {
	var n int64
	if err := s.read(ctx).Model(&certRow{}).Where("status = ? AND issuer = ?", StatusActive, issuer).Count(&n).Error; err != nil {
		return 0, fmt.Errorf("count active certificates of %q: %w", issuer, err)
	}
	return int(n), nil
}
