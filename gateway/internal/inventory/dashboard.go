package inventory

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// The dashboard's read queries. Each page of the dashboard costs a fixed number of queries,
// whatever the size of the fleet: never one per device (issue 14).

// fleetColumns are what Fleet reads of a device and of its active certificate.
const fleetColumns = `d.id, d.name, d.family, d.class, d.tags, d.mechanism, d.last_seen, d.state, d.online,
	d.health_serial, d.health_chain_ok, d.health_clock_skew_ns, d.health_at,
	d.renewal_state, d.renewal_failures, d.renewal_last_cause,
	COALESCE(c.serial, ''), COALESCE(c.not_before, 0), COALESCE(c.not_after, 0), COALESCE(c.activated_at, 0)`

// Fleet returns every device with its active certificate, in id order, in one query (the
// devices joined with the partial index certificates_one_active, which SQLite uses only
// when the status is a literal in the query, not a parameter), scanned without
// reflection: the dashboard judges, filters, sorts and pages the fleet in memory, and at
// 10,000 devices the read is most of a page's time.
//
// The records hold what judging a device (monitor.Judge) and listing it need: of the
// device, its id, name, family, class, tags, mechanism, last seen, state, online, the
// health report's serial, chain, clock skew and time, and its renewal state, failures and
// last cause; of the certificate, its serial, validity and activation. Device and
// DeviceRecords read the rest.
func (s *Store) Fleet(ctx context.Context) ([]DeviceRecord, error) {
	// Without ctx's cancellation: with a cancellable context the SQLite driver steps every
	// row on another goroutine (to watch ctx), which triples the read's time; the read is
	// bounded by the fleet's size and takes tens of milliseconds at 10,000 devices.
	rows, err := s.read(context.WithoutCancel(ctx)).Raw(`SELECT ` + fleetColumns + ` FROM devices d
		LEFT JOIN certificates c ON c.device_id = d.id AND c.status = 'active'
		ORDER BY d.id`).Rows()
	if err != nil {
		return nil, fmt.Errorf("load the fleet: %w", err)
	}
	out, err := scanFleet(rows)
	if err != nil {
		return nil, fmt.Errorf("load the fleet: %w", err)
	}
	return out, nil
}

// scanFleet reads rows of fleetColumns into records, and closes rows.
func scanFleet(rows *sql.Rows) ([]DeviceRecord, error) {
	defer rows.Close()
	// Scanned into interface values and converted here: database/sql's conversion into typed
	// destinations costs more than the read itself at this size.
	vals := make([]any, 20)
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var out []DeviceRecord
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		v := fleetValues(vals)
		d := deviceRow{ID: v.str(0), Name: v.str(1), Family: v.str(2), Class: v.str(3), Tags: v.str(4), Mechanism: v.str(5),
			LastSeen: v.int(6), State: v.str(7), Online: v.int(8) != 0,
			HealthSerial: v.str(9), HealthChainOK: v.int(10) != 0, HealthClockSkewNS: v.int(11), HealthAt: v.int(12),
			RenewalState: v.str(13), RenewalFailures: int(v.int(14)), RenewalLastCause: v.str(15)}
		c := certRow{Serial: v.str(16), DeviceID: d.ID, NotBefore: v.int(17), NotAfter: v.int(18), Status: string(StatusActive),
			Activated: v.int(19)}
		dev, err := d.device()
		if err != nil {
			return nil, err
		}
		rec := DeviceRecord{Device: dev}
		if c.Serial != "" {
			cert := c.certificate()
			rec.Active = &cert
		}
		out = append(out, rec)
	}
	return out, rows.Err()
}

// fleetValues are the columns of one row of Fleet's query as the SQLite driver returns them.
type fleetValues []any

// str returns column i as a string: the driver gives TEXT as string or []byte.
func (v fleetValues) str(i int) string {
	switch x := v[i].(type) {
	case string:
		return x
	case []byte:
		return string(x)
	}
	return ""
}

// int returns column i as an int64: INTEGER columns, booleans included.
func (v fleetValues) int(i int) int64 {
	switch x := v[i].(type) {
	case int64:
		return x
	case bool:
		if x {
			return 1
		}
	}
	return 0
}

// AttemptBucket counts the attempts started in [Start, Start+width) of an AttemptHistory.
// Successes are issued or committed; failures failed, rolled back or expired.
type AttemptBucket struct {
	Start     time.Time
	Successes int
	Failures  int
}

// AttemptHistory counts the attempts started in [since, since+n×width) in n buckets of width,
// oldest first, in one aggregate query. Empty buckets are present with zero counts.
func (s *Store) AttemptHistory(ctx context.Context, since time.Time, width time.Duration, n int) ([]AttemptBucket, error) {
	sec := int64(width / time.Second)
	if sec <= 0 || n <= 0 {
		return nil, fmt.Errorf("attempt history: bucket width %s and count %d must be positive", width, n)
	}
	var rows []struct {
		B         int64
		Successes int
		Failures  int
	}
	from := since.Unix()
	err := s.read(ctx).Raw(`SELECT (started_at - ?) / ? AS b,
			SUM(CASE WHEN outcome IN (?, ?) THEN 1 ELSE 0 END) AS successes,
			SUM(CASE WHEN outcome IN (?, ?, ?) THEN 1 ELSE 0 END) AS failures
		FROM attempts WHERE started_at >= ? AND started_at < ? GROUP BY b`,
		from, sec, OutcomeIssued, OutcomeCommitted, OutcomeFailed, OutcomeRolledBack, OutcomeExpired,
		from, from+sec*int64(n)).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("attempt history: %w", err)
	}
	out := make([]AttemptBucket, n)
	for i := range out {
		out[i].Start = since.Add(time.Duration(i) * width).UTC()
	}
	for _, r := range rows {
		if r.B >= 0 && r.B < int64(n) {
			out[r.B].Successes, out[r.B].Failures = r.Successes, r.Failures
		}
	}
	return out, nil
}

// FailureCount is the number of failed attempts of one family with one cause.
type FailureCount struct {
	Family string // the device's family; "" when it has none or was removed
	Cause  string // the protocol error code; "" when none was recorded
	N      int
}

// Failures counts the failed, rolled back and expired attempts started at or after since, by
// the device's family and the error code, largest first, in one query.
func (s *Store) Failures(ctx context.Context, since time.Time) ([]FailureCount, error) {
	var out []FailureCount
	err := s.read(ctx).Raw(`SELECT COALESCE(d.family, '') AS family, a.error_code AS cause, COUNT(*) AS n
		FROM attempts a LEFT JOIN devices d ON d.id = a.device_id
		WHERE a.started_at >= ? AND a.outcome IN (?, ?, ?)
		GROUP BY 1, 2 ORDER BY n DESC, family, cause`,
		unix(since), OutcomeFailed, OutcomeRolledBack, OutcomeExpired).Scan(&out).Error
	if err != nil {
		return nil, fmt.Errorf("failures by family and cause: %w", err)
	}
	return out, nil
}

// EventQuery selects one page of the audit log, newest first.
type EventQuery struct {
	DeviceID string // only this device's events
	Actor    string // only events by this actor
	Before   int64  // only events with a Seq below Before; <= 0: from the newest
	Limit    int    // page size, 1..MaxBatch
}

// EventPage returns the events q selects, newest first (Seq descending), in one query. The
// next page is the query with Before set to the last event's Seq; a page shorter than
// q.Limit is the last.
func (s *Store) EventPage(ctx context.Context, q EventQuery) ([]Event, error) {
	db := s.read(ctx)
	if q.DeviceID != "" {
		db = db.Where("device_id = ?", q.DeviceID)
	}
	if q.Actor != "" {
		db = db.Where("actor = ?", q.Actor)
	}
	if q.Before > 0 {
		db = db.Where("seq < ?", q.Before)
	}
	var rows []eventRow
	if err := db.Order("seq DESC").Limit(max(1, min(q.Limit, MaxBatch))).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("event page: %w", err)
	}
	out := make([]Event, 0, len(rows))
	for _, r := range rows {
		e, err := r.event()
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// Actors lists the distinct actors of the audit log, sorted, in one query (the audit page's
// filter).
func (s *Store) Actors(ctx context.Context) ([]string, error) {
	var out []string
	if err := s.read(ctx).Raw(`SELECT DISTINCT actor FROM events WHERE actor != '' ORDER BY actor`).Scan(&out).Error; err != nil {
		return nil, fmt.Errorf("audit actors: %w", err)
	}
	return out, nil
}

// CanaryCount is the number of a campaign's canaries at one stage.
type CanaryCount struct {
	CampaignID string
	Stage      string
	N          int
}

// CampaignCanaries counts every campaign's canary devices by stage, in one query.
func (s *Store) CampaignCanaries(ctx context.Context) ([]CanaryCount, error) {
	var out []CanaryCount
	err := s.read(ctx).Raw(`SELECT campaign_id, stage, COUNT(*) AS n FROM campaign_devices WHERE canary
		GROUP BY campaign_id, stage ORDER BY campaign_id, stage`).Scan(&out).Error
	if err != nil {
		return nil, fmt.Errorf("campaign canaries: %w", err)
	}
	return out, nil
}
