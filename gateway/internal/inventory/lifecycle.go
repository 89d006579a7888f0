package inventory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/hearth-pki/hearth/protocol"
)

// Command is a renew command a device has not acted on yet. The zero Command is none.
type Command struct {
	ID       string
	Action   string
	Reason   string
	Deadline time.Time
}

// Lifecycle is what the device state machine needs of a device's stored state when it first
// meets the device (after a start, or after forgetting an idle device).
type Lifecycle struct {
	Active      string // the active certificate's serial; "" for none
	LastRequest string // the request that produced the active certificate
	Previous    string // the certificate the active one replaced
	// Pending is the request in flight: an attempt still "issued", with its certificate
	// pending. Nil when none.
	Pending *PendingRequest
	Command Command
}

// PendingRequest is a request whose certificate was issued and not yet committed.
type PendingRequest struct {
	RequestID string
	Serial    string
	StartedAt time.Time
}

// Lifecycle loads the device's lifecycle in three indexed reads (prepared: reads). An
// unknown device has the zero Lifecycle.
func (s *Store) Lifecycle(ctx context.Context, deviceID string) (Lifecycle, error) {
	var out Lifecycle
	var d deviceRow
	found, err := readOne(ctx, s.rd.lifeCommand, []any{deviceID},
		[]any{&d.CommandID, &d.CommandAction, &d.CommandReason, &d.CommandDeadline})
	if err != nil {
		return out, fmt.Errorf("lifecycle of %q: %w", deviceID, err)
	}
	if found && d.CommandID != "" {
		out.Command = Command{ID: d.CommandID, Action: d.CommandAction, Reason: d.CommandReason, Deadline: fromUnix(d.CommandDeadline)}
	}
	var cert certRow
	found, err = readOne(ctx, s.rd.lifeActive, []any{deviceID}, []any{&cert.Serial, &cert.RequestID, &cert.Replaces})
	if err != nil {
		return out, fmt.Errorf("lifecycle of %q: %w", deviceID, err)
	}
	if found {
		out.Active, out.LastRequest, out.Previous = cert.Serial, cert.RequestID, cert.Replaces
	}
	var att attemptRow
	found, err = readOne(ctx, s.rd.lifePending, []any{deviceID, OutcomeIssued}, []any{&att.RequestID, &att.Serial, &att.Started})
	if err != nil {
		return out, fmt.Errorf("lifecycle of %q: %w", deviceID, err)
	}
	if found && att.Serial != "" && att.Serial != out.Active {
		out.Pending = &PendingRequest{RequestID: att.RequestID, Serial: att.Serial, StartedAt: fromUnix(att.Started)}
	}
	return out, nil
}

// Commit records a commit in one transaction: serial becomes the device's active certificate
// (the previously active one, returned as previous, superseded; an enrolling device active),
// the attempt requestID ends committed, and an EventCertActivated event is appended. With
// rollback set the device went back to serial after the commit of requestID: the attempt
// ends rolled back, an protocol.EventRenewalRolledBack event is appended too, and the
// certificate given up (the one that was active) is revoked as superseded. A revoked
// certificate is refused with ErrRevoked, a certificate of another device with ErrNotFound.
func (s *Store) Commit(ctx context.Context, deviceID, requestID, serial string, rollback bool, now time.Time) (previous string, err error) {
	serial, err = normSerial(serial)
	if err != nil {
		return "", err
	}
	err = s.write(ctx, func(tx *gorm.DB) error {
		previous, _, err = s.activate(ctx, tx, deviceID, serial, now)
		if err != nil {
			return err
		}
		outcome := OutcomeCommitted
		if rollback {
			outcome = OutcomeRolledBack
		}
		if err := s.exec(ctx, tx, s.st.endAttempt, outcome, unix(now), deviceID, requestID); err != nil {
			return err
		}
		if rollback {
			_, err = s.appendEvent(ctx, tx, Event{Time: now, Kind: protocol.EventRenewalRolledBack, DeviceID: deviceID, Actor: actorFrom(ctx),
				Message: fmt.Sprintf("device went back to certificate %s after the commit of %s", serial, previous),
				Data:    map[string]string{"serial": serial, "failed": previous, "request_id": requestID}})
			if err != nil || previous == "" {
				return err
			}
			// The certificate given up never logs in again (issue 12: old keys die).
			r, err := findCert(tx, previous)
			if err != nil {
				return err
			}
			_, err = s.revoke(ctx, tx, r, Revocation{Reason: protocol.RevokeSuperseded,
				Note: "rolled back: the device went back to " + serial}, now)
			return err
		}
		return err
	})
	if err != nil {
		return "", fmt.Errorf("commit certificate %s of device %q: %w", serial, deviceID, err)
	}
	return previous, nil
}

// activate makes serial active inside tx (see Activate) and returns the serial it
// superseded. Activating the active certificate changes nothing (changed is false).
func (s *Store) activate(ctx context.Context, tx *gorm.DB, deviceID, serial string, now time.Time) (previous string, changed bool, err error) {
	// The statements are prepared (stmts): a commit is on every renewal's path (issue 11).
	var owner, status string
	switch err := queryRow(ctx, tx, s.st.certState, []any{serial}, &owner, &status); {
	case errors.Is(err, sql.ErrNoRows):
		return "", false, fmt.Errorf("certificate %s: %w", serial, ErrNotFound)
	case err != nil:
		return "", false, err
	}
	switch {
	case owner != deviceID:
		return "", false, fmt.Errorf("certificate %s belongs to device %q: %w", serial, owner, ErrNotFound)
	case status == string(StatusRevoked):
		return "", false, fmt.Errorf("certificate %s: %w", serial, ErrRevoked)
	case status == string(StatusAbandoned):
		return "", false, fmt.Errorf("certificate %s: %w", serial, ErrAbandoned)
	case status == string(StatusActive):
		return "", false, nil
	}
	switch err := queryRow(ctx, tx, s.st.activeCert, []any{deviceID}, &previous); {
	case errors.Is(err, sql.ErrNoRows):
		previous = ""
	case err != nil:
		return "", false, err
	default:
		if err := s.exec(ctx, tx, s.st.supersedeCert, string(StatusSuperseded), unix(now), previous); err != nil {
			return "", false, err
		}
	}
	if err := s.exec(ctx, tx, s.st.activateCert, string(StatusActive), unix(now), serial); err != nil {
		return "", false, err
	}
	// A device enrolling, or quarantined and enrolled again with a new token, is active.
	if err := s.exec(ctx, tx, s.st.activateDev, StateActive, deviceID, StateEnrolling, StateQuarantined); err != nil {
		return "", false, err
	}
	_, err = s.appendEvent(ctx, tx, Event{Time: now, Kind: protocol.EventCertActivated, DeviceID: deviceID, Actor: actorFrom(ctx),
		Data: map[string]string{"serial": serial, "previous": previous}})
	return previous, true, err
}

// EndRequest records, in one transaction, that the device's request ended without a commit:
// the attempt's outcome becomes outcome (OutcomeRolledBack or OutcomeExpired) with cause and
// detail (an empty cause is CauseUnknown, or CauseCommitTimeout for an expired request),
// its certificate serial (if one was issued and is still pending) becomes abandoned, and an
// event is appended: protocol.EventRenewalRolledBack with serial = current (the certificate
// the device stays on) and failed = serial, or protocol.EventRenewalExpired with serial. A
// request the store does not know is not an error: nothing was recorded for it.
func (s *Store) EndRequest(ctx context.Context, deviceID, requestID, serial, current, outcome string, cause protocol.Cause, detail string, now time.Time) error {
	kind := protocol.EventRenewalRolledBack
	switch outcome {
	case OutcomeRolledBack:
	case OutcomeExpired:
		kind = protocol.EventRenewalExpired
	default:
		return invalidf("request %q ends with outcome %q", requestID, outcome)
	}
	if err := checkText(detail); err != nil {
		return err
	}
	if err := protocol.ValidateCause(cause); err != nil {
		return invalidf("request %q: %v", requestID, err)
	}
	switch {
	case cause != "":
	case outcome == OutcomeExpired:
		cause = protocol.CauseCommitTimeout
	default:
		cause = protocol.CauseUnknown
	}
	err := s.write(ctx, func(tx *gorm.DB) error {
		res := tx.Model(&attemptRow{}).Where("device_id = ? AND request_id = ? AND outcome = ?", deviceID, requestID, OutcomeIssued).
			Updates(map[string]any{"outcome": outcome, "finished_at": unix(now), "cause": string(cause), "detail": detail})
		if res.Error != nil {
			return res.Error
		}
		if serial != "" {
			err := tx.Model(&certRow{}).Where("serial = ? AND device_id = ? AND status = ?", serial, deviceID, StatusPending).
				Updates(abandon(detail, now)).Error
			if err != nil {
				return err
			}
		}
		data := map[string]string{"serial": serial, "request_id": requestID, "cause": string(cause)}
		if outcome == OutcomeRolledBack {
			data = map[string]string{"serial": current, "failed": serial, "request_id": requestID, "cause": string(cause)}
		}
		_, err := s.appendEvent(ctx, tx, Event{Time: now, Kind: kind, DeviceID: deviceID, Actor: actorFrom(ctx), Message: detail,
			Data: data})
		return err
	})
	if err != nil {
		return fmt.Errorf("end request %q of device %q: %w", requestID, deviceID, err)
	}
	return nil
}

// AbandonStale ends every request still in flight that started before cutoff: its attempt
// ends expired and its pending certificate becomes abandoned, with one protocol.EventRenewalExpired
// event per request. The hub calls it at start with now minus the in-flight timeout, for the
// requests a crash interrupted. It returns how many requests it ended.
func (s *Store) AbandonStale(ctx context.Context, cutoff, now time.Time) (int, error) {
	n := 0
	err := s.write(ctx, func(tx *gorm.DB) error {
		n = 0
		var atts []attemptRow
		if err := tx.Where("outcome = ? AND started_at < ?", OutcomeIssued, unix(cutoff)).Find(&atts).Error; err != nil {
			return err
		}
		for _, a := range atts {
			if err := tx.Model(&attemptRow{}).Where("device_id = ? AND request_id = ?", a.DeviceID, a.RequestID).
				Updates(map[string]any{"outcome": OutcomeExpired, "finished_at": unix(now), "cause": string(protocol.CauseCommitTimeout)}).Error; err != nil {
				return err
			}
			if a.Serial != "" {
				if err := tx.Model(&certRow{}).Where("serial = ? AND status = ?", a.Serial, StatusPending).
					Updates(abandon("the request was in flight when the hub stopped", now)).Error; err != nil {
					return err
				}
			}
			if _, err := s.appendEvent(ctx, tx, Event{Time: now, Kind: protocol.EventRenewalExpired, DeviceID: a.DeviceID, Actor: actorFrom(ctx),
				Message: "no commit before the in-flight timeout (the request was in flight when the hub stopped)",
				Data:    map[string]string{"serial": a.Serial, "request_id": a.RequestID}}); err != nil {
				return err
			}
			n++
		}
		// Pending certificates without an attempt in flight (an older hub's leftovers).
		res := tx.Model(&certRow{}).Where("status = ? AND created_at < ? AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.device_id = certificates.device_id AND a.request_id = certificates.request_id AND a.outcome = ?)",
			StatusPending, unix(cutoff), OutcomeIssued).Updates(abandon("left pending by an older hub", now))
		return res.Error
	})
	if err != nil {
		return 0, fmt.Errorf("abandon stale requests: %w", err)
	}
	return n, nil
}

// abandon is the change that abandons a pending certificate: it is never accepted again and
// the CRL lists it as superseded (issue 12: pending certificates that end unused are revoked).
func abandon(detail string, now time.Time) map[string]any {
	return map[string]any{"status": StatusAbandoned, "revoked_at": unix(now), "revoke_code": protocol.RevokeSuperseded.Code(),
		"revoke_reason": protocol.ClipText("abandoned: " + detail)}
}

// ResetPresence marks every device offline, in one statement: at start no session is live,
// and presence is rebuilt from the sessions that connect. The presence history's open
// intervals end when their device was last seen (closePresence). It returns how many
// devices it changed.
func (s *Store) ResetPresence(ctx context.Context) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *gorm.DB) error {
		res := tx.Model(&deviceRow{}).Where("online = ?", true).Update("online", false)
		n = res.RowsAffected
		if res.Error != nil {
			return res.Error
		}
		return closePresence(tx)
	})
	if err != nil {
		return 0, fmt.Errorf("reset presence: %w", err)
	}
	return int(n), nil
}

// ClearCommand clears the device's stored command if it is still commandID: a newer command
// stored meanwhile (by RecordCommand) is kept.
func (s *Store) ClearCommand(ctx context.Context, deviceID, commandID string) error {
	err := s.write(ctx, func(tx *gorm.DB) error {
		return s.exec(ctx, tx, s.st.clearCommand, deviceID, commandID)
	})
	if err != nil {
		return fmt.Errorf("clear command of device %q: %w", deviceID, err)
	}
	return nil
}

// SetCommand stores the renew command the device has not acted on; the zero Command clears
// it. An unknown device is ErrNotFound.
func (s *Store) SetCommand(ctx context.Context, deviceID string, c Command) error {
	if err := checkText(c.ID, c.Action, c.Reason); err != nil {
		return err
	}
	return s.updateDevice(ctx, deviceID, "set command", map[string]any{"command_id": c.ID, "command_action": c.Action,
		"command_reason": c.Reason, "command_deadline": unix(c.Deadline)})
}
