package inventory

import (
	"context"
	"fmt"
	"slices"
	"time"

	"gorm.io/gorm"

	"github.com/hearth-pki/hearth/protocol"
)

// Attempt outcomes.
const (
	OutcomeIssued     = "issued"      // a certificate was signed and recorded pending
	OutcomeCommitted  = "committed"   // the agent installed it and proved it
	OutcomeRolledBack = "rolled_back" // the agent went back to its previous certificate
	OutcomeFailed     = "failed"      // refused or failed before a certificate existed
	OutcomeExpired    = "expired"     // no commit before the in-flight timeout
)

var outcomes = []string{OutcomeIssued, OutcomeCommitted, OutcomeRolledBack, OutcomeFailed, OutcomeExpired}

// Attempt is one certificate request of a device, keyed by (DeviceID, RequestID) so that a
// resubmitted request can be answered from the record.
type Attempt struct {
	RequestID  string
	DeviceID   string
	Reason     string // enroll, window, command, rekey, recovery (the protocol's words)
	Serial     string // the certificate issued, if any
	StartedAt  time.Time
	FinishedAt time.Time     // when the outcome was last set
	Outcome    string        // one of the Outcome* constants
	ErrorCode  string        // the protocol error code of a failure or rollback
	Latency    time.Duration // time to issue (or to fail); FinishAttempt keeps it
	// Cause is why a failed, rolled-back or expired attempt did not succeed (protocol/README.md,
	// "Causes"); a failed attempt without one gets the cause of its ErrorCode.
	Cause  protocol.Cause
	Detail string // the refusal's or the agent's explanation, for people
}

func checkAttemptKey(a Attempt) error {
	if a.DeviceID == "" || a.RequestID == "" {
		return invalidf("attempt needs a device id and a request id")
	}
	if err := protocol.ValidateCause(a.Cause); err != nil {
		return invalidf("attempt %q: %v", a.RequestID, err)
	}
	return checkText(a.DeviceID, a.RequestID, a.Reason, a.ErrorCode, a.Detail)
}

// insertAttempt inserts a inside tx; a stored (device, request id) is ErrDuplicate.
func (s *Store) insertAttempt(ctx context.Context, tx *gorm.DB, a Attempt) error {
	r := attemptRowOf(a)
	err := s.exec(ctx, tx, s.st.insertAtt, r.DeviceID, r.RequestID, r.Reason, r.Serial, r.Started, r.Finished,
		r.Outcome, r.ErrorCode, r.LatencyNS, r.Cause, r.Detail)
	if err != nil {
		return fmt.Errorf("attempt %q of device %q: %w", a.RequestID, a.DeviceID, err)
	}
	return nil
}

// Attempt returns the device's attempt with the given request id, or ErrNotFound.
func (s *Store) Attempt(ctx context.Context, deviceID, requestID string) (Attempt, error) {
	var row attemptRow
	found, err := readOne(ctx, s.rd.attempt, []any{deviceID, requestID}, row.fields())
	if err != nil {
		return Attempt{}, fmt.Errorf("attempt %q of device %q: %w", requestID, deviceID, err)
	}
	if !found {
		return Attempt{}, fmt.Errorf("attempt %q of device %q: %w", requestID, deviceID, ErrNotFound)
	}
	return row.attempt(), nil
}

// FinishAttempt sets the attempt's outcome and error code, and FinishedAt to now: the
// commit or rollback of an issued certificate. Latency keeps the issuance latency.
func (s *Store) FinishAttempt(ctx context.Context, deviceID, requestID, outcome, code string, now time.Time) error {
	if !slices.Contains(outcomes, outcome) {
		return invalidf("unknown attempt outcome %q", outcome)
	}
	if err := checkText(code); err != nil {
		return err
	}
	err := s.write(ctx, func(tx *gorm.DB) error {
		res := tx.Model(&attemptRow{}).Where("device_id = ? AND request_id = ?", deviceID, requestID).
			Updates(map[string]any{"outcome": outcome, "error_code": code, "finished_at": unix(now)})
		if res.Error == nil && res.RowsAffected == 0 {
			return ErrNotFound
		}
		return res.Error
	})
	if err != nil {
		return fmt.Errorf("finish attempt %q of device %q: %w", requestID, deviceID, err)
	}
	return nil
}

// RecordFailedAttempt stores an attempt that produced no certificate. Outcome must be
// OutcomeFailed or empty (stored as OutcomeFailed). An attempt already stored under the same
// device and request id is refused with ErrDuplicate.
func (s *Store) RecordFailedAttempt(ctx context.Context, a Attempt) error {
	if err := checkAttemptKey(a); err != nil {
		return err
	}
	if a.Outcome == "" {
		a.Outcome = OutcomeFailed
	}
	if a.Outcome != OutcomeFailed {
		return invalidf("failed attempt with outcome %q", a.Outcome)
	}
	if a.Cause == "" {
		a.Cause = protocol.CauseOf(protocol.Code(a.ErrorCode))
	}
	if err := s.write(ctx, func(tx *gorm.DB) error { return s.insertAttempt(ctx, tx, a) }); err != nil {
		return fmt.Errorf("record failed attempt: %w", err)
	}
	return nil
}

// Attempts returns the device's attempts, newest first, at most limit (<= 0: all).
func (s *Store) Attempts(ctx context.Context, deviceID string, limit int) ([]Attempt, error) {
	q := s.read(ctx).Where("device_id = ?", deviceID).Order("started_at DESC, rowid DESC")
	if limit > 0 {
		q = q.Limit(limit)
	}
	var rows []attemptRow
	if err := q.Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("attempts of device %q: %w", deviceID, err)
	}
	out := make([]Attempt, len(rows))
	for i, r := range rows {
		out[i] = r.attempt()
	}
	return out, nil
}

// LatestAttempts returns the latest attempt (the first Attempts would return) of each device
// among ids that has one, by device id, in one query per MaxBatch ids: the renewal
// scheduler checks it for every device it has commanded, on every pass.
func (s *Store) LatestAttempts(ctx context.Context, ids []string) (map[string]Attempt, error) {
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	out := make(map[string]Attempt, len(ids))
	for chunk := range slices.Chunk(ids, MaxBatch) {
		var rows []attemptRow
		err := s.read(ctx).Raw(`SELECT * FROM attempts WHERE rowid IN (
				SELECT (SELECT a.rowid FROM attempts a WHERE a.device_id = d.id ORDER BY a.started_at DESC, a.rowid DESC LIMIT 1)
				FROM devices d WHERE d.id IN ?)`, chunk).Scan(&rows).Error
		if err != nil {
			return nil, fmt.Errorf("latest attempts of %d devices: %w", len(chunk), err)
		}
		for _, r := range rows {
			out[r.DeviceID] = r.attempt()
		}
	}
	return out, nil
}

// RecordReportedFailure stores a failed attempt the agent reported in a health report
// (protocol.Health's last_request_id and last_cause): a failure the hub did not see, such as
// a hub it could not reach, a reply that never came or a key it could not make. It is
// idempotent: an attempt already stored under the device and request id — the hub's own
// record of the request, or the same report received before — is left as it is, and
// recorded is false. Outcome is always OutcomeFailed; Cause is required.
func (s *Store) RecordReportedFailure(ctx context.Context, a Attempt) (recorded bool, err error) {
	a.Outcome = OutcomeFailed
	if err := checkAttemptKey(a); err != nil {
		return false, err
	}
	if a.Cause == "" {
		return false, invalidf("reported failure %q without a cause", a.RequestID)
	}
	r := attemptRowOf(a)
	err = s.write(ctx, func(tx *gorm.DB) error {
		res := tx.Exec(`INSERT INTO attempts (device_id, request_id, reason, serial, started_at, finished_at,
				outcome, error_code, latency_ns, cause, detail)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device_id, request_id) DO NOTHING`,
			r.DeviceID, r.RequestID, r.Reason, r.Serial, r.Started, r.Finished, r.Outcome, r.ErrorCode, r.LatencyNS, r.Cause, r.Detail)
		recorded = res.Error == nil && res.RowsAffected > 0
		return res.Error
	})
	if err != nil {
		return false, fmt.Errorf("record reported failure: %w", err)
	}
	return recorded, nil
}
