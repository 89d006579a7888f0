package inventory

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"gorm.io/gorm"
)

// Classes stored with the devices (issue 14): devices.class is the device's policy class and
// devices.class_hash the policy.ClassHash it was chosen under. The class is written with
// the family and tags it follows from (an issuance, an import: the writes of the state
// machine's path), and rewritten by Reclassify in one batched pass when a policy is put in
// force — work per policy change, not per event. A class whose hash is not the policy's is
// stale (a row stored before migration 10, or written under the previous policy while the
// pass ran); StaleClasses lists those, so that a reader can choose their classes itself
// and still answer a class filter in SQL (FleetQuery.Class).

// ClassSubject is what the policy chooses a device's class from.
type ClassSubject struct {
	ID, Family string
	Tags       []string
}

// reclassifyBatch is the number of devices Reclassify reads and writes per transaction.
const reclassifyBatch = 500

// Reclassify stores, for every device whose class_hash is not hash, the class classOf
// chooses for it, with hash: in transactions of reclassifyBatch devices, each reading the
// devices it changes inside the transaction (so a device's family or tags cannot change
// between the read and the write: writes are serialized, on PostgreSQL by the advisory
// lock), with one UPDATE per class and batch. It returns the number of devices written.
// classOf (policy.Policy.ClassFor's name) runs inside the write transaction: it must be a
// fast, pure function and must not call back into the Store.
func (s *Store) Reclassify(ctx context.Context, hash string, classOf func(ClassSubject) string) (int, error) {
	if hash == "" {
		return 0, invalidf("reclassify: empty class hash")
	}
	total := 0
	for {
		n := 0
		err := s.write(ctx, func(tx *gorm.DB) error {
			subjects, err := staleClasses(tx, hash, reclassifyBatch)
			if err != nil {
				return err
			}
			n = len(subjects)
			byClass := map[string][]string{}
			for _, sub := range subjects {
				c := classOf(sub)
				if err := checkText(c); err != nil {
					return fmt.Errorf("class of %q: %w", sub.ID, err)
				}
				byClass[c] = append(byClass[c], sub.ID)
			}
			for _, c := range slices.Sorted(maps.Keys(byClass)) {
				if err := tx.Model(&deviceRow{}).Where("id IN ?", byClass[c]).
					Updates(map[string]any{"class": c, "class_hash": hash}).Error; err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("reclassify devices: %w", err)
		}
		total += n
		if n < reclassifyBatch {
			return total, nil
		}
	}
}

// StaleClasses returns up to limit devices whose class_hash is not hash, by id, and whether
// there are more.
func (s *Store) StaleClasses(ctx context.Context, hash string, limit int) (subjects []ClassSubject, more bool, err error) {
	out, err := staleClasses(s.read(ctx), hash, limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("stale classes: %w", err)
	}
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

// staleClasses reads up to limit devices whose class_hash is not hash through db. The
// condition is written as two ranges so that the index devices_class serves it.
func staleClasses(db *gorm.DB, hash string, limit int) ([]ClassSubject, error) {
	var rows []deviceRow
	err := db.Select("id, family, tags").Where("class_hash < ? OR class_hash > ?", hash, hash).
		Order("id").Limit(limit).Find(&rows).Error
	if err != nil {
		return nil, err
	}
	out := make([]ClassSubject, len(rows))
	for i, r := range rows {
		out[i] = ClassSubject{ID: r.ID, Family: r.Family}
		if r.Tags != "" && r.Tags != "[]" {
			if err := json.Unmarshal([]byte(r.Tags), &out[i].Tags); err != nil {
				return nil, fmt.Errorf("device %q: decode tags: %w", r.ID, err)
			}
		}
	}
	return out, nil
}

// ClassMembers are the devices whose stored class is one class under one hash: how many,
// and the first few ids.
type ClassMembers struct {
	Count  int
	Sample []string // at most the sample ClassCounts was asked for, by id
}

// ClassCounts returns, per class, the devices whose class was chosen under hash: one
// aggregate over the index devices_class, then the first sample ids of each class (one
// indexed range per class of the policy, not per device). Stale devices are not counted:
// the caller adds those of StaleClasses.
func (s *Store) ClassCounts(ctx context.Context, hash string, sample int) (map[string]ClassMembers, error) {
	var rows []struct {
		Class string
		N     int
	}
	if err := s.read(ctx).Raw(`SELECT class, COUNT(*) AS n FROM devices WHERE class_hash = ? GROUP BY class`, hash).
		Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("count classes: %w", err)
	}
	out := make(map[string]ClassMembers, len(rows))
	for _, r := range rows {
		m := ClassMembers{Count: r.N}
		if sample > 0 {
			if err := s.read(ctx).Raw(`SELECT id FROM devices WHERE class_hash = ? AND class = ? ORDER BY id LIMIT ?`,
				hash, r.Class, sample).Scan(&m.Sample).Error; err != nil {
				return nil, fmt.Errorf("count classes: %w", err)
			}
		}
		out[r.Class] = m
	}
	return out, nil
}
