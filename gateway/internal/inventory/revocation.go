package inventory

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/hearth-pki/hearth/protocol"
)

// Revocation is why certificates are revoked: an RFC 5280 reason (written into the CRL) and
// free text for people.
type Revocation struct {
	Reason protocol.RevocationReason
	Note   string
}

// text is what the revoke_reason column and the audit record say: the note, else the reason.
func (rv Revocation) text() string {
	if rv.Note != "" {
		return rv.Note
	}
	return string(rv.Reason)
}

// code is the reason's RFC 5280 number; no reason is unspecified.
func (rv Revocation) code() int {
	if rv.Reason == "" {
		return 0
	}
	return rv.Reason.Code()
}

func (rv Revocation) check() error {
	if rv.code() < 0 {
		return invalidf("revocation reason %q is not an RFC 5280 reason the hub gives", rv.Reason)
	}
	return checkText(rv.Note)
}

// RevokeIdentity revokes the device's identity in one transaction: every certificate it
// holds that is not revoked yet (pending, active, superseded and abandoned ones alike), its
// request in flight (the attempt ends failed with code revoked), and its identity epoch is
// set to now, so that no certificate created before now logs in even if it was recorded
// later. A device that is not removed becomes quarantined. One protocol.EventCertRevoked
// event is appended per certificate, and a protocol.EventDeviceState event for the
// quarantine. It returns the serials it revoked; an unknown device is ErrNotFound.
func (s *Store) RevokeIdentity(ctx context.Context, deviceID string, rv Revocation, now time.Time) ([]string, error) {
	if err := rv.check(); err != nil {
		return nil, err
	}
	var revoked []string
	err := s.write(ctx, func(tx *gorm.DB) error {
		var devs []deviceRow
		if err := tx.Select("id, state").Where("id = ?", deviceID).Limit(1).Find(&devs).Error; err != nil {
			return err
		}
		if len(devs) == 0 {
			return ErrNotFound
		}
		var err error
		if revoked, err = s.revokeAll(ctx, tx, deviceID, rv, now); err != nil {
			return err
		}
		if err := tx.Model(&attemptRow{}).Where("device_id = ? AND outcome = ?", deviceID, OutcomeIssued).
			Updates(map[string]any{"outcome": OutcomeFailed, "finished_at": unix(now), "error_code": string(protocol.CodeRevoked)}).Error; err != nil {
			return err
		}
		set := map[string]any{"epoch": unix(now)}
		from := devs[0].State
		quarantine := from != StateQuarantined && from != StateRemoved
		if quarantine {
			set["state"] = StateQuarantined
		}
		if err := tx.Model(&deviceRow{}).Where("id = ?", deviceID).Updates(set).Error; err != nil {
			return err
		}
		if quarantine {
			_, err = s.appendEvent(ctx, tx, Event{Time: now, Kind: protocol.EventDeviceState, DeviceID: deviceID, Actor: actorFrom(ctx),
				Message: "quarantined: its certificates are revoked (" + rv.text() + ")", Data: map[string]string{"from": from, "to": StateQuarantined}})
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("revoke the identity of device %q: %w", deviceID, err)
	}
	return revoked, nil
}

// revokeAll revokes inside tx every certificate of the device not revoked yet, oldest first,
// and returns their serials.
func (s *Store) revokeAll(ctx context.Context, tx *gorm.DB, deviceID string, rv Revocation, now time.Time) ([]string, error) {
	var rows []certRow
	err := tx.Where("device_id = ? AND status <> ?", deviceID, StatusRevoked).Order("created_at, rowid").Find(&rows).Error
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		if _, err := s.revoke(ctx, tx, r, rv, now); err != nil {
			return nil, err
		}
		out = append(out, r.Serial)
	}
	return out, nil
}

// RevokeCertificate revokes one certificate of deviceID ("": of any device) with rv at now, in one transaction with its
// protocol.EventCertRevoked event; a request in flight that issued it ends failed with code
// revoked. It returns the certificate as it was before (its Status tells what was revoked:
// the active one, a pending one, ...). Revoking a revoked certificate changes nothing. An
// unknown serial, or one of another device, is ErrNotFound.
func (s *Store) RevokeCertificate(ctx context.Context, deviceID, serial string, rv Revocation, now time.Time) (Certificate, error) {
	serial, err := normSerial(serial)
	if err != nil {
		return Certificate{}, err
	}
	if err := rv.check(); err != nil {
		return Certificate{}, err
	}
	var was certRow
	err = s.write(ctx, func(tx *gorm.DB) error {
		if was, err = findCert(tx, serial); err != nil {
			return err
		}
		if deviceID != "" && was.DeviceID != deviceID {
			return fmt.Errorf("certificate %s belongs to device %q: %w", serial, was.DeviceID, ErrNotFound)
		}
		changed, err := s.revoke(ctx, tx, was, rv, now)
		if err != nil || !changed {
			return err
		}
		return tx.Model(&attemptRow{}).Where("device_id = ? AND serial = ? AND outcome = ?", was.DeviceID, serial, OutcomeIssued).
			Updates(map[string]any{"outcome": OutcomeFailed, "finished_at": unix(now), "error_code": string(protocol.CodeRevoked)}).Error
	})
	if err != nil {
		return Certificate{}, fmt.Errorf("revoke certificate %s: %w", serial, err)
	}
	return was.certificate(), nil
}

// Login is what the broker's authentication needs to decide a client certificate at
// CONNECT, read in one query.
type Login struct {
	Certificate Certificate // without PEM
	DeviceState string      // "" when the device is not in the inventory (removed)
	// Epoch is the device's identity epoch: certificates created before it are refused.
	// Zero when the device was never revoked as a whole.
	Epoch time.Time
}

// loginRow is a row of loginSQL.
type loginRow struct {
	Cert        certRow
	DeviceState string
	Epoch       int64
}

// LoginOf returns the certificate with the given serial and the state and identity epoch of
// its device, in one indexed read (prepared: reads), or ErrNotFound for a serial the hub does not know.
func (s *Store) LoginOf(ctx context.Context, serial string) (Login, error) {
	serial, err := normSerial(serial)
	if err != nil {
		return Login{}, err
	}
	var row loginRow
	found, err := readOne(ctx, s.rd.login, []any{serial}, row.fields())
	if err != nil {
		return Login{}, fmt.Errorf("login of certificate %s: %w", serial, err)
	}
	if !found {
		return Login{}, fmt.Errorf("certificate %s: %w", serial, ErrNotFound)
	}
	return Login{Certificate: row.Cert.certificate(), DeviceState: row.DeviceState, Epoch: fromUnix(row.Epoch)}, nil
}

// CRLEntries returns the certificates a CRL of issuer lists at now, oldest revocation first:
// those revoked and those abandoned (issued, never committed; listed as superseded), issued
// by issuer (the subject of the hub's intermediate, as stored: imported certificates of
// other issuers are left out) and not expired at now (RFC 5280 lets a CRL drop a
// certificate once it expired).
func (s *Store) CRLEntries(ctx context.Context, issuer string, now time.Time) ([]Certificate, error) {
	return certs(s.read(ctx).Omit("pem").Select(certColumns).
		Where("revoked_at > 0 AND status IN ? AND issuer = ? AND not_after > ?", []Status{StatusRevoked, StatusAbandoned}, issuer, unix(now)).
		Order("revoked_at, serial"), "certificates for the CRL")
}
