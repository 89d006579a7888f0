package inventory

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// FleetQuery selects and orders devices for one page of the dashboard's device list, read
// with their active certificates by FleetPage and counted by CountFleet: the filters that
// are columns are applied by the database, so a page reads its own rows and not the fleet.
type FleetQuery struct {
	Family, State string
	// Class, when set, keeps the devices of that policy class: those whose stored class is
	// Class under ClassHash (the policy.ClassHash of the policy in force, required with
	// Class), and the devices named in ClassAlso, which the caller found of Class among the
	// stale ones (StaleClasses; at most some thousands: each is a query parameter).
	Class, ClassHash string
	ClassAlso        []string
	Online           *bool
	// Search matches id, name or family, case-insensitively (LOWER on both sides).
	Search string
	// Suspects, when set, splits the fleet for the device list's default order: a device is
	// a suspect when a problem or a person's attention is possible for it (see Suspects).
	// With Only the query keeps the suspects; without, the others and the devices named in
	// Also (at most some thousands: each is a query parameter).
	Suspects *Suspects
	Only     bool
	Also     []string
	// Order is one of the Order* constants; Limit 0 means no limit.
	Order         string
	Limit, Offset int
}

// Orders of a FleetQuery, ties by id.
const (
	OrderID     = "id"
	OrderExpiry = "expiry" // the active certificate's not-after, devices without one last
	OrderName   = "name"   // the name (the id when it has none), case-insensitively (ASCII)
	OrderSeen   = "seen"   // last seen, latest first
)

// Suspects are the bounds of the suspect test, computed from the policy in force by the
// caller: a device that is not a suspect has no problem and needs no attention at Now
// (monitor.Judge and the dashboard agree on it), so its verdict need not be computed to
// place it in the list. A device is a suspect when it is quarantined, has no active
// certificate, is failing renewal, reported a clock skew beyond MaxSkew or a serial other
// than its active one, has no agent (a person renews it), or its certificate may have
// reached the end of its renewal window under one of Windows (a certificate past the end of
// its window is expiring; which class a device falls in is the policy's to say, so every
// class's bound is tried).
type Suspects struct {
	Now     time.Time
	MaxSkew time.Duration
	Windows []WindowBound
}

// WindowBound is a lower bound of the end of the renewal windows one policy class gives a
// certificate with validity [nb, na] and lifetime life = na - nb: nb + Fraction·life when
// Before is zero, else the mean of min(max(nb, na - Before), E) and E, E = na - Floor·life
// (the emergency floor). The caller derives it from the class's settings with the jitter
// at its least favourable.
type WindowBound struct {
	Fraction float64
	Before   time.Duration
	Floor    float64
}

// sql returns b's condition "the window may have ended by now" and its arguments.
func (b WindowBound) sql(now int64) (string, []any) {
	// Portable SQL: CASE for the scalar min and max (PostgreSQL has no two-argument MIN),
	// and the fractions cast (PostgreSQL would take a parameter beside a BIGINT as one).
	if b.Before == 0 {
		return `c.not_before + CAST((c.not_after - c.not_before) * CAST(? AS DOUBLE PRECISION) AS BIGINT) <= ?`, []any{b.Fraction, now}
	}
	e := `(c.not_after - CAST((c.not_after - c.not_before) * CAST(? AS DOUBLE PRECISION) AS BIGINT))`
	before := int64(b.Before / time.Second)
	hi := `(CASE WHEN c.not_before > c.not_after - ? THEN c.not_before ELSE c.not_after - ? END)`
	return `((CASE WHEN ` + hi + ` < ` + e + ` THEN ` + hi + ` ELSE ` + e + ` END) + ` + e + `) / 2 <= ?`,
		[]any{before, before, b.Floor, before, before, b.Floor, b.Floor, now}
}

// where returns the SQL condition of q's filters and its arguments.
func (q FleetQuery) where() (string, []any) {
	var conds []string
	var args []any
	if q.Family != "" {
		conds, args = append(conds, "d.family = ?"), append(args, q.Family)
	}
	if q.State != "" {
		conds, args = append(conds, "d.state = ?"), append(args, q.State)
	}
	if q.Class != "" {
		c := "(d.class_hash = ? AND d.class = ?)"
		args = append(args, q.ClassHash, q.Class)
		if len(q.ClassAlso) > 0 {
			c = "(" + c + " OR d.id IN ?)"
			args = append(args, q.ClassAlso)
		}
		conds = append(conds, c)
	}
	if q.Online != nil {
		conds, args = append(conds, "d.online = ?"), append(args, *q.Online)
	}
	if q.Search != "" {
		like := "%" + strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(q.Search) + "%"
		like = strings.ToLower(like)
		conds = append(conds, `(LOWER(d.id) LIKE ? ESCAPE '\' OR LOWER(d.name) LIKE ? ESCAPE '\' OR LOWER(d.family) LIKE ? ESCAPE '\')`)
		args = append(args, like, like, like)
	}
	if p := q.Suspects; p != nil {
		now := unix(p.Now) + 2 // the window's times are truncated to the second
		suspect := `(d.state = ? OR c.serial IS NULL OR d.renewal_state = ? OR d.mechanism = ?
			OR (d.health_at <> 0 AND (d.health_clock_skew_ns > ? OR d.health_clock_skew_ns < ?))
			OR (d.health_at <> 0 AND d.health_serial <> '' AND d.health_serial <> c.serial AND d.health_at > c.activated_at)
			OR c.not_after <= c.not_before OR c.not_after <= ?`
		sargs := []any{StateQuarantined, RenewalFailing, MechanismManual, int64(p.MaxSkew), -int64(p.MaxSkew), now}
		for _, b := range p.Windows {
			c, a := b.sql(now)
			suspect += " OR " + c
			sargs = append(sargs, a...)
		}
		suspect += ")"
		if q.Only {
			conds, args = append(conds, suspect), append(args, sargs...)
		} else {
			not := "NOT " + suspect
			if len(q.Also) > 0 {
				not = "(" + not + " OR d.id IN ?)"
				sargs = append(sargs, q.Also)
			}
			conds, args = append(conds, not), append(args, sargs...)
		}
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// FleetPage returns the devices q selects, with their active certificates, in q's order, in
// one query; the records hold what Fleet's do.
func (s *Store) FleetPage(ctx context.Context, q FleetQuery) ([]DeviceRecord, error) {
	where, args := q.where()
	order := " ORDER BY d.id"
	switch q.Order {
	case OrderExpiry:
		order = " ORDER BY c.serial IS NULL, c.not_after, d.id"
	case OrderName:
		order = " ORDER BY lower(CASE WHEN d.name = '' THEN d.id ELSE d.name END), d.id"
	case OrderSeen:
		order = " ORDER BY d.last_seen DESC, d.id"
	}
	limit := ""
	if q.Limit > 0 {
		limit = fmt.Sprintf(" LIMIT %d OFFSET %d", q.Limit, max(0, q.Offset))
	}
	// Without ctx's cancellation, as Fleet (the driver would step rows on another goroutine).
	rows, err := s.read(context.WithoutCancel(ctx)).Raw(`SELECT `+fleetColumns+` FROM devices d
		LEFT JOIN certificates c ON c.device_id = d.id AND c.status = 'active'`+where+order+limit, args...).Rows()
	if err != nil {
		return nil, fmt.Errorf("read a page of the fleet: %w", err)
	}
	out, err := scanFleet(rows)
	if err != nil {
		return nil, fmt.Errorf("read a page of the fleet: %w", err)
	}
	return out, nil
}

// CountFleet returns the number of devices q selects (its order and page aside).
func (s *Store) CountFleet(ctx context.Context, q FleetQuery) (int, error) {
	where, args := q.where()
	var n int64
	err := s.read(ctx).Raw(`SELECT COUNT(*) FROM devices d
		LEFT JOIN certificates c ON c.device_id = d.id AND c.status = 'active'`+where, args...).Scan(&n).Error
	if err != nil {
		return 0, fmt.Errorf("count the fleet: %w", err)
	}
	return int(n), nil
}

// FleetChoices returns the distinct non-empty families and states of the devices, sorted:
// the device list's filter choices (its class choices are the policy's classes).
func (s *Store) FleetChoices(ctx context.Context) (families, states []string, err error) {
	for _, c := range []struct {
		col string
		out *[]string
	}{{"family", &families}, {"state", &states}} {
		if err := s.read(ctx).Raw(`SELECT DISTINCT ` + c.col + ` FROM devices WHERE ` + c.col + ` <> '' ORDER BY 1`).
			Scan(c.out).Error; err != nil {
			return nil, nil, fmt.Errorf("fleet choices: %w", err)
		}
	}
	return families, states, nil
}
