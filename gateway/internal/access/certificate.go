package access

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
)

// DefaultSupersededOverlap is how long a superseded certificate still logs in after its
// successor was committed: long enough for an agent whose commit's acknowledgement was lost
// to reconnect with either pair, short enough that a key renewed after a suspected theft
// stops working within minutes (issue 12, "old keys die at commit").
const DefaultSupersededOverlap = 2 * time.Minute

// SetSupersededOverlap sets how long a superseded certificate still logs in after its
// successor was committed; 0 refuses it at once. Call it before the broker serves.
func (c *Checker) SetSupersededOverlap(d time.Duration) { c.overlap = max(d, 0) }

// Certificate allows a verified client certificate when the inventory holds it for that
// device and Admit allows it at the hub's now. Expiry was already checked by TLS.
func (c *Checker) Certificate(ctx context.Context, deviceID, serial string) error {
	l, err := c.store.LoginOf(ctx, serial)
	if errors.Is(err, inventory.ErrNotFound) {
		return fmt.Errorf("%w: %s of %s", ErrUnknownCertificate, serial, deviceID)
	}
	if err != nil {
		return fmt.Errorf("look up certificate: %w", err)
	}
	return Admit(l, deviceID, c.overlap, c.now())
}

// Admit decides whether certificate l.Certificate may log in as deviceID at now: it must
// be the device's, pending or active, or superseded less than overlap ago; never revoked or
// abandoned, never created before the device's identity epoch (a certificate issued before
// the device was revoked, even if recorded after), and while the device is quarantined
// only one enrolled since (with a new token). The error says why, for the broker's log.
func Admit(l inventory.Login, deviceID string, overlap time.Duration, now time.Time) error {
	cert := l.Certificate
	switch {
	case cert.DeviceID != deviceID:
		return fmt.Errorf("%w: %s of %s", ErrUnknownCertificate, cert.Serial, deviceID)
	case cert.Status == inventory.StatusRevoked:
		return fmt.Errorf("%w: %s since %s (%s)", ErrRevoked, cert.Serial, cert.RevokedAt.UTC().Format(time.RFC3339), cert.RevokeReason)
	case cert.Status == inventory.StatusAbandoned:
		return fmt.Errorf("%w: %s", ErrAbandoned, cert.Serial)
	case l.DeviceState == "" || l.DeviceState == inventory.StateRemoved:
		return fmt.Errorf("%w: %s of %s (the device was removed)", ErrUnknownCertificate, cert.Serial, deviceID)
	case l.DeviceState == inventory.StateQuarantined && (l.Epoch.IsZero() || cert.CreatedAt.Before(l.Epoch)):
		// Only a certificate enrolled with a new token since the quarantine logs in: the
		// session that commits it makes the device active again.
		return fmt.Errorf("%w: %s", ErrQuarantined, deviceID)
	case !l.Epoch.IsZero() && cert.CreatedAt.Before(l.Epoch):
		return fmt.Errorf("%w: %s was issued before the device's certificates were revoked at %s", ErrRevoked, cert.Serial,
			l.Epoch.UTC().Format(time.RFC3339))
	case cert.Status == inventory.StatusSuperseded && !now.Before(cert.SupersededAt.Add(overlap)):
		return fmt.Errorf("%w: %s since %s (the overlap of %s has passed)", ErrSuperseded, cert.Serial,
			cert.SupersededAt.UTC().Format(time.RFC3339), overlap)
	}
	return nil
}
