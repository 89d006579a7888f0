package inventory

import (
	"context"
	"fmt"
	"slices"
	"time"

	"gorm.io/gorm"

	"github.com/hearth-pki/hearth/protocol"
)

// Issuance is everything one signed certificate changes, recorded atomically by
// RecordIssuance.
type Issuance struct {
	// Device is created if missing (enrollment) or has its descriptive fields updated as
	// UpsertDevice does; a renewal may give only the ID.
	Device Device
	// Cert is stored pending. Empty DeviceID, RequestID and CreatedAt default to Device.ID,
	// Attempt.RequestID and Attempt.FinishedAt.
	Cert Certificate
	// Attempt is stored with outcome issued. Empty DeviceID and Serial default to Device.ID
	// and Cert.Serial; FinishedAt is required and is the moment of the issuance.
	Attempt Attempt
	// TokenHash, when set, is the enrollment token consumed by this issuance: it must be an
	// unused token of Device.ID unexpired at Attempt.FinishedAt.
	TokenHash string
}

// normalize validates in and fills its defaults.
func (in Issuance) normalize() (Issuance, error) {
	if err := checkDevice(in.Device); err != nil {
		return in, err
	}
	id := in.Device.ID
	serial, err := normSerial(in.Cert.Serial)
	if err != nil {
		return in, err
	}
	in.Cert.Serial = serial
	if in.Cert.Replaces != "" {
		if in.Cert.Replaces, err = normSerial(in.Cert.Replaces); err != nil {
			return in, err
		}
	}
	a := &in.Attempt
	if a.DeviceID == "" {
		a.DeviceID = id
	}
	if a.Serial == "" {
		a.Serial = serial
	}
	if a.Outcome == "" {
		a.Outcome = OutcomeIssued
	}
	c := &in.Cert
	if c.DeviceID == "" {
		c.DeviceID = id
	}
	if c.RequestID == "" {
		c.RequestID = a.RequestID
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = a.FinishedAt
	}
	if c.Status == "" {
		c.Status = StatusPending
	}
	switch {
	case a.DeviceID != id || c.DeviceID != id:
		return in, invalidf("issuance for device %q names device %q/%q", id, c.DeviceID, a.DeviceID)
	case a.Serial != serial:
		return in, invalidf("issuance of %s names serial %q in its attempt", serial, a.Serial)
	case a.Outcome != OutcomeIssued:
		return in, invalidf("issuance with attempt outcome %q", a.Outcome)
	case c.Status != StatusPending:
		return in, invalidf("issuance of a %s certificate, want pending", c.Status)
	case a.FinishedAt.IsZero():
		return in, invalidf("issuance without a finish time")
	case c.NotBefore.IsZero() || c.NotAfter.Unix() <= c.NotBefore.Unix():
		return in, invalidf("certificate %s: validity %v to %v", serial, c.NotBefore, c.NotAfter)
	}
	if err := checkAttemptKey(*a); err != nil {
		return in, err
	}
	return in, checkText(c.Issuer, string(c.KeyAlgorithm), c.Fingerprint, c.PEM, c.RequestID, in.TokenHash)
}

// RecordIssuance records one issuance in one transaction: it consumes the token (if
// TokenHash is set), creates or updates the device, stores the pending certificate and the
// issued attempt, and appends protocol.EventCertIssued (and protocol.EventTokenUsed). Either
// all of it is written or nothing: a bad token returns ErrTokenInvalid, ErrTokenUsed or
// ErrTokenExpired; a serial or (device, request id) already stored returns ErrDuplicate.
func (s *Store) RecordIssuance(ctx context.Context, in Issuance) error {
	in, err := in.normalize()
	if err != nil {
		return fmt.Errorf("record issuance: %w", err)
	}
	if err := s.write(ctx, func(tx *gorm.DB) error { return s.recordIssuance(ctx, tx, in) }); err != nil {
		return fmt.Errorf("record issuance of %s for device %q: %w", in.Cert.Serial, in.Device.ID, err)
	}
	return nil
}

// RecordIssuances records a batch of issuances in one transaction, each inside its own
// SAVEPOINT: an item that fails is rolled back alone and the others commit together. The
// result has one entry per item, nil for those committed. If the transaction itself fails
// (commit error, cancelled context), every item not already failed gets that error: none
// was written. One commit for many items is what makes a renewal storm cheap.
func (s *Store) RecordIssuances(ctx context.Context, items []Issuance) []error {
	errs := make([]error, len(items))
	if len(items) == 0 {
		return errs
	}
	items = slices.Clone(items) // normalize fills defaults; the caller's slice stays as given
	for i := range items {
		var err error
		if items[i], err = items[i].normalize(); err != nil {
			errs[i] = fmt.Errorf("record issuance: %w", err)
		}
	}
	err := s.write(ctx, func(tx *gorm.DB) error {
		for i, in := range items {
			if errs[i] != nil {
				continue
			}
			if err := tx.Exec("SAVEPOINT issuance").Error; err != nil {
				return err
			}
			if err := s.recordIssuance(ctx, tx, in); err != nil {
				errs[i] = fmt.Errorf("record issuance of %s for device %q: %w", in.Cert.Serial, in.Device.ID, err)
				if err := tx.Exec("ROLLBACK TO issuance").Error; err != nil {
					return err
				}
			}
			if err := tx.Exec("RELEASE issuance").Error; err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		err = fmt.Errorf("record issuances: %w", err)
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
	}
	return errs
}

// recordIssuance writes a normalized issuance inside tx.
func (s *Store) recordIssuance(ctx context.Context, tx *gorm.DB, in Issuance) error {
	at := in.Attempt.FinishedAt
	if in.TokenHash != "" {
		if _, err := checkToken(tx, in.Device.ID, in.TokenHash, at); err != nil {
			return err
		}
		if err := tx.Model(&tokenRow{}).Where("hash = ?", in.TokenHash).Update("used_at", unix(at)).Error; err != nil {
			return err
		}
	}
	if err := s.upsertDevice(ctx, tx, in.Device, at); err != nil {
		return err
	}
	if err := s.insertAttempt(ctx, tx, in.Attempt); err != nil {
		return err
	}
	r := certRowOf(in.Cert)
	err := s.exec(ctx, tx, s.st.insertCert, r.Serial, r.DeviceID, r.NotBefore, r.NotAfter, r.Issuer, r.KeyAlgorithm,
		r.Fingerprint, r.Status, r.PEM, r.RequestID, r.Replaces, r.Created, r.Activated, r.Revoked, r.RevokeReason)
	if err != nil {
		return fmt.Errorf("certificate %s: %w", in.Cert.Serial, err)
	}
	actor := actorFrom(ctx)
	_, err = s.appendEvent(ctx, tx, Event{Time: at, Kind: protocol.EventCertIssued, DeviceID: in.Device.ID, Actor: actor,
		Data: map[string]string{
			"serial":      in.Cert.Serial,
			"request_id":  in.Attempt.RequestID,
			"reason":      in.Attempt.Reason,
			"not_after":   in.Cert.NotAfter.UTC().Format(time.RFC3339),
			"replaces":    in.Cert.Replaces,
			"fingerprint": in.Cert.Fingerprint,
		}})
	if err != nil || in.TokenHash == "" {
		return err
	}
	_, err = s.appendEvent(ctx, tx, Event{Time: at, Kind: protocol.EventTokenUsed, DeviceID: in.Device.ID, Actor: actor,
		Data: map[string]string{"request_id": in.Attempt.RequestID}})
	return err
}
