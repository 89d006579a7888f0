package inventory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"gorm.io/gorm"
)

// copyTables are the inventory's tables in the order CopyTo fills them (campaigns before the
// campaign_devices that refer to them). A table the source has and this list lacks stops
// the copy: nothing is left behind unnoticed.
var copyTables = []string{"devices", "certificates", "attempts", "tokens", "events", "settings",
	"campaigns", "campaign_devices", "users", "sessions", "proposals", "presence", "lockouts"}

// boolColumns are the columns SQLite stores as INTEGER 0/1 and PostgreSQL as BOOLEAN.
var boolColumns = map[string][]string{
	"devices":          {"online", "health_chain_ok", "renewal_again"},
	"campaigns":        {"all_devices"},
	"campaign_devices": {"canary"},
}

// ErrTargetNotEmpty reports a CopyTo into an inventory that already holds rows.
var ErrTargetNotEmpty = errors.New("the target inventory is not empty")

// CopyReport is what CopyTo moved: rows per table, as counted on both sides afterwards.
type CopyReport struct {
	Rows map[string]int64
}

// CopyTo copies every row of s (a SQLite inventory) into dst (an empty PostgreSQL one at
// the same schema version), in one transaction of dst under its write lock: the target
// holds all of it or none of it. Rows keep their order (SQLite's rowid order, which the
// target's rowid and seq columns then follow). Afterwards it compares the rows of every
// table on both sides and verifies the audit chain on the target; a difference is an error
// (the copy is then committed but wrong: drop the target database and start again). s must
// not change meanwhile: stop the hub first.
func (s *Store) CopyTo(ctx context.Context, dst *Store) (CopyReport, error) {
	if s.pg || !dst.pg {
		return CopyReport{}, errors.New("copy: from a sqlite inventory to a postgres one only")
	}
	sv, err := s.SchemaVersion(ctx)
	if err != nil {
		return CopyReport{}, fmt.Errorf("copy: %w", err)
	}
	dv, err := dst.SchemaVersion(ctx)
	if err != nil {
		return CopyReport{}, fmt.Errorf("copy: %w", err)
	}
	if sv != dv {
		return CopyReport{}, fmt.Errorf("copy: the source is at schema version %d, the target at %d", sv, dv)
	}
	var tables []string
	if err := s.read(ctx).Raw(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'schema_migrations'`).
		Scan(&tables).Error; err != nil {
		return CopyReport{}, fmt.Errorf("copy: list the source's tables: %w", err)
	}
	for _, t := range tables {
		if !slices.Contains(copyTables, t) {
			return CopyReport{}, fmt.Errorf("copy: the source has a table %q this version does not know how to copy", t)
		}
	}
	for _, t := range copyTables {
		n, err := countRows(ctx, dst.w, t)
		if err != nil {
			return CopyReport{}, fmt.Errorf("copy: %w", err)
		}
		if n > 0 {
			return CopyReport{}, fmt.Errorf("copy: table %s has %d rows: %w", t, n, ErrTargetNotEmpty)
		}
	}
	err = dst.w.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := dst.lockWrites(tx); err != nil {
			return err
		}
		for _, t := range copyTables {
			if err := s.copyTable(ctx, tx, t); err != nil {
				return fmt.Errorf("table %s: %w", t, err)
			}
		}
		// The next campaign gets the seq after the copied ones.
		return tx.Exec(`SELECT setval(pg_get_serial_sequence('campaigns', 'seq'), GREATEST(COALESCE(MAX(seq), 0), 1), COALESCE(MAX(seq), 0) > 0) FROM campaigns`).Error
	})
	if err != nil {
		return CopyReport{}, fmt.Errorf("copy: %w (nothing was written)", err)
	}
	rep := CopyReport{Rows: map[string]int64{}}
	for _, t := range copyTables {
		from, err := countRows(ctx, s.r, t)
		if err != nil {
			return rep, fmt.Errorf("copy: verify: %w", err)
		}
		to, err := countRows(ctx, dst.r, t)
		if err != nil {
			return rep, fmt.Errorf("copy: verify: %w", err)
		}
		if from != to {
			return rep, fmt.Errorf("copy: verify: table %s has %d rows in the source and %d in the target", t, from, to)
		}
		rep.Rows[t] = to
	}
	if err := dst.VerifyAudit(ctx); err != nil {
		return rep, fmt.Errorf("copy: verify the target's audit chain: %w", err)
	}
	return rep, nil
}

func countRows(ctx context.Context, db *gorm.DB, table string) (int64, error) {
	var n int64
	if err := db.WithContext(ctx).Raw("SELECT COUNT(*) FROM " + table).Scan(&n).Error; err != nil {
		return 0, fmt.Errorf("count %s: %w", table, err)
	}
	return n, nil
}

// copyTable inserts every row of the source's table into tx, in rowid order.
func (s *Store) copyTable(ctx context.Context, tx *gorm.DB, table string) error {
	rows, err := s.read(ctx).Raw("SELECT * FROM " + table + " ORDER BY rowid").Rows()
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	quoted := make([]string, len(cols))
	marks := make([]string, len(cols))
	isBool := make([]bool, len(cols))
	for i, c := range cols {
		quoted[i], marks[i] = `"`+c+`"`, "?"
		isBool[i] = slices.Contains(boolColumns[table], c)
	}
	insert := "INSERT INTO " + table + " (" + strings.Join(quoted, ", ") + ") VALUES (" + strings.Join(marks, ", ") + ")"
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		args := make([]any, len(vals))
		for i, v := range vals {
			switch x := v.(type) {
			case []byte:
				args[i] = string(x)
			case int64:
				if isBool[i] {
					args[i] = x != 0
				} else {
					args[i] = x
				}
			default:
				args[i] = x
			}
		}
		if err := tx.Exec(insert, args...).Error; err != nil {
			return err
		}
	}
	return rows.Err()
}

// CopyTables are the tables CopyTo copies, in its order (its report's keys).
func CopyTables() []string { return slices.Clone(copyTables) }
