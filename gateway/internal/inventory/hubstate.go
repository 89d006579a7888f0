package inventory

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"time"

	"gorm.io/gorm"

	"github.com/hearth-pki/hearth/protocol"
)

// Settings keys of the hub's own state.
const (
	settingCRLNumber  = "crl_number"
	settingPolicyHash = "policy/hash"
	settingPolicyYAML = "policy/yaml"
)

// NextCRLNumber returns the number of the next CRL, one above the last one handed out (1 for
// the first), and records it, in one transaction: CRL numbers only grow (RFC 5280, 5.2.3),
// whatever the crash.
func (s *Store) NextCRLNumber(ctx context.Context) (*big.Int, error) {
	n := big.NewInt(1)
	err := s.write(ctx, func(tx *gorm.DB) error {
		var rows []settingRow
		if err := tx.Where("key = ?", settingCRLNumber).Limit(1).Find(&rows).Error; err != nil {
			return err
		}
		n = big.NewInt(1)
		if len(rows) == 1 {
			last, ok := new(big.Int).SetString(rows[0].Value, 10)
			if !ok {
				return fmt.Errorf("stored CRL number %q is not a number", rows[0].Value)
			}
			n.Add(last, n)
		}
		return tx.Exec("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
			settingCRLNumber, n.String()).Error
	})
	if err != nil {
		return nil, fmt.Errorf("next CRL number: %w", err)
	}
	return n, nil
}

// PolicyInForce returns the hash and YAML of the policy recorded last by RecordPolicy; both
// "" when none was.
func (s *Store) PolicyInForce(ctx context.Context) (hash, yaml string, err error) {
	hash, err = s.Setting(ctx, settingPolicyHash)
	if errors.Is(err, ErrNotFound) {
		return "", "", nil
	}
	if err != nil {
		return "", "", err
	}
	yaml, err = s.Setting(ctx, settingPolicyYAML)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return "", "", err
	}
	return hash, yaml, nil
}

// RecordPolicy records the policy now in force (its hash and YAML) with an
// EventPolicyChanged event whose message says what changed, in one transaction. The actor
// comes from ctx (WithActor).
func (s *Store) RecordPolicy(ctx context.Context, hash, yaml, change string, now time.Time) error {
	if err := checkText(hash, yaml, change); err != nil {
		return err
	}
	err := s.write(ctx, func(tx *gorm.DB) error {
		prev := ""
		var rows []settingRow
		if err := tx.Where("key = ?", settingPolicyHash).Limit(1).Find(&rows).Error; err != nil {
			return err
		}
		if len(rows) == 1 {
			prev = rows[0].Value
		}
		if _, err := s.appendEvent(ctx, tx, Event{Time: now, Kind: protocol.EventPolicyChanged, Actor: actorFrom(ctx), Message: change,
			Data: map[string]string{"hash": hash, "previous": prev}}); err != nil {
			return err
		}
		for k, v := range map[string]string{settingPolicyHash: hash, settingPolicyYAML: yaml} {
			if err := tx.Exec("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", k, v).Error; err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record policy: %w", err)
	}
	return nil
}
