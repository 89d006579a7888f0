package inventory

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// The presence history (issue 14: certificate health against uptime): for each device the
// intervals during which it had a live session, so the dashboard can show the share of time
// devices were online rather than who is online this instant. An interval is written in the
// same transaction as the device's presence (SetOnline, on the state machine's one ordered
// path), so the history and the online flag never disagree; at start ResetPresence closes
// the intervals a stopped hub left open at their device's last sighting. (RecordHealth marks
// a device online too, but the state machine calls it only over a live session, whose
// SetOnline opened the interval.)
//
// The history is bounded per device, with no sweep over the fleet: a reconnection within
// PresenceMerge of the last disconnection reopens that interval instead of starting another
// (a flapping device adds at most one row a minute), and each disconnection deletes the
// device's intervals that ended more than PresenceRetention ago.

// PresenceRetention is how long an ended interval is kept: the longest period the dashboard
// shows (7 days), and a day more.
const PresenceRetention = 8 * 24 * time.Hour

// PresenceMerge is the gap below which a reconnection continues the previous interval.
const PresenceMerge = time.Minute

// SetOnline records whether the device has a live session; LastSeen becomes now either way
// (the moment it connected or was last known connected). Going online opens an interval of
// the presence history (or continues one that ended within PresenceMerge); going offline
// ends it at now and drops the device's intervals past PresenceRetention. An unknown device
// is ErrNotFound.
func (s *Store) SetOnline(ctx context.Context, id string, online bool, now time.Time) error {
	err := s.write(ctx, func(tx *gorm.DB) error {
		n, err := s.execN(ctx, tx, s.st.setOnline, online, unix(now), id)
		if err == nil && n == 0 {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		return s.recordPresence(ctx, tx, id, online, now)
	})
	if err != nil {
		return fmt.Errorf("set online of device %q: %w", id, err)
	}
	return nil
}

// recordPresence writes the presence change of device id at now into the history, inside
// tx, through the prepared statements (stmts).
func (s *Store) recordPresence(ctx context.Context, tx *gorm.DB, id string, online bool, now time.Time) error {
	at := unix(now)
	if !online {
		if err := s.exec(ctx, tx, s.st.presenceEnd, at, at, id); err != nil {
			return err
		}
		return s.exec(ctx, tx, s.st.presencePrune, id, unix(now.Add(-PresenceRetention)))
	}
	// Unless already online (a second session): continue the latest interval when it ended
	// within PresenceMerge, else start one. Two indexed statements at most.
	n, err := s.execN(ctx, tx, s.st.presenceReopen, id, id, unix(now.Add(-PresenceMerge)), at, id)
	if err != nil || n > 0 {
		return err
	}
	return s.exec(ctx, tx, s.st.presenceStart, id, at, id)
}

// closePresence ends every open interval when its device was last seen (never before the
// interval's start), inside tx: the hub stopped without seeing the sessions end.
func closePresence(tx *gorm.DB) error {
	return tx.Exec(`UPDATE presence SET end_at = COALESCE((SELECT CASE WHEN d.last_seen > presence.start_at THEN d.last_seen
			ELSE presence.start_at END FROM devices d WHERE d.id = presence.device_id), presence.start_at)
		WHERE end_at = 0`).Error
}

// OnlineTime returns, by device id, how long each device was online within [since, now): the
// overlap of its presence intervals with that period, an open interval counting up to now.
// Devices never online in the period are absent. One aggregate query over the intervals that
// overlap the period (at most PresenceRetention of history).
func (s *Store) OnlineTime(ctx context.Context, since, now time.Time) (map[string]time.Duration, error) {
	from, to := unix(since), unix(now)
	var rows []struct {
		DeviceID string
		Seconds  int64
	}
	err := s.read(ctx).Raw(`SELECT device_id, SUM(
			(CASE WHEN end_at = 0 OR end_at > ? THEN ? ELSE end_at END) -
			(CASE WHEN start_at < ? THEN ? ELSE start_at END)) AS seconds
		FROM presence WHERE (end_at = 0 OR end_at > ?) AND start_at < ?
		GROUP BY device_id`, to, to, from, from, from, to).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("online time since %s: %w", since.UTC().Format(time.RFC3339), err)
	}
	out := make(map[string]time.Duration, len(rows))
	for _, r := range rows {
		if r.Seconds > 0 {
			out[r.DeviceID] = time.Duration(r.Seconds) * time.Second
		}
	}
	return out, nil
}
