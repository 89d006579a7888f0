package inventory

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/hearth-pki/hearth/protocol"
)

// Status is a certificate's place in its lifecycle.
type Status string

// Certificate statuses. A certificate is issued pending, becomes active when the device
// proves it on a TLS session (Activate), superseded when another one of the device becomes
// active (SupersededAt records when), and revoked by RevokeCertificate or RevokeIdentity.
// Pending and active certificates are accepted by the broker until they expire, superseded
// ones only for a short overlap after SupersededAt, revoked ones never. A pending
// certificate whose request ended without a commit (rolled back, or past the in-flight
// timeout) becomes abandoned: never accepted again, and listed on the CRL as superseded.
const (
	StatusPending    Status = "pending"
	StatusActive     Status = "active"
	StatusSuperseded Status = "superseded"
	StatusRevoked    Status = "revoked"
	StatusAbandoned  Status = "abandoned"
)

// activeOfDevice matches the active certificate of the device bound to its one ?. The status
// is written into the text, not bound: only a literal 'active' lets SQLite (and PostgreSQL)
// use the partial unique index certificates_one_active (device_id WHERE status = 'active').
// With a bound status SQLite chose certificates_status_created (status=?) and stepped
// through every active certificate of the fleet to find one device's (issue 11: with
// 100,000 idle devices, 100,000 index rows read by every enrollment's commit).
const activeOfDevice = "device_id = ? AND status = '" + string(StatusActive) + "'"

// activeOfDevicesSQL reads the active certificates (certColumns) of the devices in the list
// bound to its one ?. Without statistics SQLite takes an equality on an indexed column for
// about ten rows, so for a list of more than a few devices it preferred stepping through
// certificates_status_created (status=?), every active certificate of the fleet, to a
// lookup per device. The CROSS JOIN makes the devices the outer loop in SQLite (its
// documented way to fix a join's order; PostgreSQL plans it as an inner join): each id
// is looked up in devices, then its certificate in certificates_one_active.
const activeOfDevicesSQL = `SELECT c.serial, c.device_id, c.not_before, c.not_after, c.issuer, c.key_algorithm,
		c.fingerprint, c.status, c.request_id, c.replaces, c.created_at, c.activated_at, c.revoked_at,
		c.revoke_reason, c.revoke_code, c.superseded_at
	FROM devices d CROSS JOIN certificates c
	WHERE d.id IN ? AND c.device_id = d.id AND c.status = '` + string(StatusActive) + `'`

// Certificate is one issued leaf certificate.
type Certificate struct {
	Serial       string // lowercase hex, the store's key
	DeviceID     string
	NotBefore    time.Time
	NotAfter     time.Time
	Issuer       string
	KeyAlgorithm protocol.KeyAlgorithm
	Fingerprint  string // protocol.Fingerprint.Hex: the SHA-256 of the DER, lowercase hex
	Status       Status
	PEM          string
	RequestID    string // the attempt that produced it
	Replaces     string // serial of the certificate it renews, if any
	CreatedAt    time.Time
	ActivatedAt  time.Time
	RevokedAt    time.Time
	RevokeReason string // free text for people: who and why
	// RevokeCode is the RFC 5280 CRLReason of the revocation (protocol.RevocationReason's
	// Code): 0 unspecified, 1 keyCompromise, 4 superseded, ...
	RevokeCode int
	// SupersededAt is when another certificate of the device became active in its place
	// (zero while it was never superseded).
	SupersededAt time.Time
}

// normSerial returns serial in lowercase, or ErrInvalid if it is not hexadecimal.
func normSerial(serial string) (string, error) {
	s := strings.ToLower(serial)
	if s == "" || strings.Trim(s, "0123456789abcdef") != "" {
		return "", invalidf("certificate serial %q is not hexadecimal", serial)
	}
	return s, nil
}

func findCert(db *gorm.DB, serial string) (certRow, error) {
	row, found, err := one[certRow](db.Where("serial = ?", serial))
	if err != nil {
		return certRow{}, err
	}
	if !found {
		return certRow{}, fmt.Errorf("certificate %s: %w", serial, ErrNotFound)
	}
	return row, nil
}

func certs(db *gorm.DB, what string) ([]Certificate, error) {
	var rows []certRow
	if err := db.Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	out := make([]Certificate, len(rows))
	for i, r := range rows {
		out[i] = r.certificate()
	}
	return out, nil
}

// Certificate returns the certificate with the given serial (any case), or ErrNotFound.
func (s *Store) Certificate(ctx context.Context, serial string) (Certificate, error) {
	serial, err := normSerial(serial)
	if err != nil {
		return Certificate{}, err
	}
	var r certRow
	switch found, err := readOne(ctx, s.rd.cert, []any{serial}, r.fields()); {
	case err != nil:
		return Certificate{}, fmt.Errorf("certificate %s: %w", serial, err)
	case !found:
		return Certificate{}, fmt.Errorf("certificate %s: %w", serial, ErrNotFound)
	}
	return r.certificate(), nil
}

// Certificates returns the device's certificates, newest first.
func (s *Store) Certificates(ctx context.Context, deviceID string) ([]Certificate, error) {
	return certs(s.read(ctx).Where("device_id = ?", deviceID).Order("created_at DESC, not_before DESC, rowid DESC"),
		fmt.Sprintf("certificates of device %q", deviceID))
}

// ActiveCertificate returns the device's active certificate, or ErrNotFound.
func (s *Store) ActiveCertificate(ctx context.Context, deviceID string) (Certificate, error) {
	row, found, err := one[certRow](s.read(ctx).Where(activeOfDevice, deviceID))
	if err != nil {
		return Certificate{}, fmt.Errorf("active certificate of device %q: %w", deviceID, err)
	}
	if !found {
		return Certificate{}, fmt.Errorf("active certificate of device %q: %w", deviceID, ErrNotFound)
	}
	return row.certificate(), nil
}

// Activate makes serial the device's active certificate, in one transaction: the device's
// previously active certificate (returned as previous, "" if none) becomes superseded, a
// device still enrolling becomes active, and a protocol.EventCertActivated event is appended. A
// pending or superseded certificate may be activated (a device that rolled back proves its
// previous certificate again). Activating the active certificate changes nothing and
// returns changed == false. A revoked certificate is refused with ErrRevoked, and a
// certificate of another device with ErrNotFound.
func (s *Store) Activate(ctx context.Context, deviceID, serial string, now time.Time) (previous string, changed bool, err error) {
	serial, err = normSerial(serial)
	if err != nil {
		return "", false, err
	}
	err = s.write(ctx, func(tx *gorm.DB) error {
		previous, changed, err = s.activate(ctx, tx, deviceID, serial, now)
		return err
	})
	if err != nil {
		return "", false, fmt.Errorf("activate certificate %s of device %q: %w", serial, deviceID, err)
	}
	return previous, changed, nil
}

// Revoke marks the certificate revoked with reason (free text, RFC 5280 reason
// unspecified) at now and appends a protocol.EventCertRevoked event, in one transaction.
// Revoking a revoked certificate changes nothing (the first time and reason stay). See
// RevokeCertificate for a revocation with its RFC 5280 reason.
func (s *Store) Revoke(ctx context.Context, serial, reason string, now time.Time) error {
	_, err := s.RevokeCertificate(ctx, "", serial, Revocation{Reason: protocol.RevokeUnspecified, Note: reason}, now)
	return err
}

// revoke marks r revoked inside tx with rv's code and text and appends its event; a revoked
// certificate stays as it is. It reports whether it changed r.
func (s *Store) revoke(ctx context.Context, tx *gorm.DB, r certRow, rv Revocation, now time.Time) (bool, error) {
	if r.Status == string(StatusRevoked) {
		return false, nil
	}
	err := tx.Model(&certRow{}).Where("serial = ?", r.Serial).
		Updates(map[string]any{"status": StatusRevoked, "revoked_at": unix(now), "revoke_reason": rv.text(), "revoke_code": rv.code()}).Error
	if err != nil {
		return false, err
	}
	_, err = s.appendEvent(ctx, tx, Event{Time: now, Kind: protocol.EventCertRevoked, DeviceID: r.DeviceID, Actor: actorFrom(ctx),
		Data: map[string]string{"serial": r.Serial, "reason": rv.text(), "code": string(cmp.Or(rv.Reason, protocol.RevokeUnspecified)), "status": r.Status}})
	return err == nil, err
}

// RevokeDevice revokes every certificate of the device not yet revoked with reason (free
// text, RFC 5280 reason unspecified), in one transaction with one protocol.EventCertRevoked
// event per certificate. It returns how many it revoked; a device without certificates is
// not an error. It leaves the device's state alone: RevokeIdentity also quarantines it.
func (s *Store) RevokeDevice(ctx context.Context, deviceID, reason string, now time.Time) (int, error) {
	if err := checkText(reason); err != nil {
		return 0, err
	}
	n := 0
	err := s.write(ctx, func(tx *gorm.DB) error {
		revoked, err := s.revokeAll(ctx, tx, deviceID, Revocation{Reason: protocol.RevokeUnspecified, Note: reason}, now)
		n = len(revoked)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("revoke certificates of device %q: %w", deviceID, err)
	}
	return n, nil
}

// ExpiringBefore returns the active certificates whose NotAfter is before t, soonest first.
// Pending and superseded certificates are left out: only what devices use matters.
func (s *Store) ExpiringBefore(ctx context.Context, t time.Time) ([]Certificate, error) {
	return certs(s.read(ctx).Where("status = ? AND not_after < ?", StatusActive, unix(t)).Order("not_after, serial"),
		"certificates expiring before "+t.UTC().Format(time.RFC3339))
}
