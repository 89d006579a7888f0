package inventory

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/hearth-pki/hearth/protocol"
)

// Token is a single-use enrollment token for one device id. The store keeps only its hash:
// hashing the secret is the caller's job, and so is comparing what a client presents by
// hashing it the same way.
type Token struct {
	Hash      string
	DeviceID  string
	Name      string // the device name to use on enrollment
	Family    string
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    time.Time // zero while unused
}

// CreateToken stores t and appends a protocol.EventTokenCreated event (at CreatedAt), in one
// transaction. Hash, DeviceID, CreatedAt and an ExpiresAt after CreatedAt are required; a
// device may hold several open tokens. A hash that is already stored is refused with
// ErrDuplicate.
func (s *Store) CreateToken(ctx context.Context, t Token) error {
	if t.Hash == "" || t.DeviceID == "" || t.CreatedAt.IsZero() || t.ExpiresAt.Unix() <= t.CreatedAt.Unix() {
		return invalidf("token needs a hash, a device id, a creation time and a later expiry")
	}
	if err := checkText(t.Hash, t.DeviceID, t.Name, t.Family); err != nil {
		return err
	}
	err := s.write(ctx, func(tx *gorm.DB) error {
		var n int64
		if err := tx.Model(&tokenRow{}).Where("hash = ?", t.Hash).Count(&n).Error; err != nil {
			return err
		}
		if n > 0 {
			return ErrDuplicate
		}
		r := tokenRow{Hash: t.Hash, DeviceID: t.DeviceID, Name: t.Name, Family: t.Family,
			Created: unix(t.CreatedAt), Expires: unix(t.ExpiresAt), Used: unix(t.UsedAt)}
		if err := tx.Create(&r).Error; err != nil {
			return err
		}
		_, err := s.appendEvent(ctx, tx, Event{Time: t.CreatedAt, Kind: protocol.EventTokenCreated, DeviceID: t.DeviceID, Actor: actorFrom(ctx),
			Data: map[string]string{"name": t.Name, "family": t.Family, "expires_at": t.ExpiresAt.UTC().Format(time.RFC3339)}})
		return err
	})
	if err != nil {
		return fmt.Errorf("create token for device %q: %w", t.DeviceID, err)
	}
	return nil
}

// checkToken returns the token row if hash is an unused token of deviceID that has not
// expired at now; otherwise ErrTokenInvalid, ErrTokenUsed or ErrTokenExpired.
func checkToken(db *gorm.DB, deviceID, hash string, now time.Time) (tokenRow, error) {
	row, found, err := one[tokenRow](db.Where("hash = ?", hash))
	if err != nil {
		return tokenRow{}, err
	}
	switch {
	case !found || row.DeviceID != deviceID:
		return tokenRow{}, ErrTokenInvalid
	case row.Used != 0:
		return tokenRow{}, ErrTokenUsed
	case now.Unix() >= row.Expires:
		return tokenRow{}, ErrTokenExpired
	}
	return row, nil
}

// CheckToken reports whether hash is an unused, unexpired enrollment token of deviceID at
// now, without consuming it: nil, ErrTokenInvalid, ErrTokenUsed or ErrTokenExpired. The
// broker uses it at CONNECT; RecordIssuance consumes the token.
func (s *Store) CheckToken(ctx context.Context, deviceID, hash string, now time.Time) error {
	if _, err := checkToken(s.read(ctx), deviceID, hash, now); err != nil {
		return fmt.Errorf("check token of device %q: %w", deviceID, err)
	}
	return nil
}

// Token returns the token stored under hash, used or not, or ErrNotFound.
func (s *Store) Token(ctx context.Context, hash string) (Token, error) {
	var rows []tokenRow
	if err := s.read(ctx).Where("hash = ?", hash).Limit(1).Find(&rows).Error; err != nil {
		return Token{}, fmt.Errorf("look up token: %w", err)
	}
	if len(rows) == 0 {
		return Token{}, fmt.Errorf("look up token: %w", ErrNotFound)
	}
	return rows[0].token(), nil
}

// Tokens returns every stored token, used and expired ones included, oldest first.
func (s *Store) Tokens(ctx context.Context) ([]Token, error) {
	var rows []tokenRow
	if err := s.read(ctx).Order("created_at, device_id, hash").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	out := make([]Token, len(rows))
	for i, r := range rows {
		out[i] = r.token()
	}
	return out, nil
}
