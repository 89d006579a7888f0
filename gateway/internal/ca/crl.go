package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// Revoked is one entry of a CRL.
type Revoked struct {
	// Serial is the revoked certificate's serial number.
	Serial *big.Int
	// At is when it was revoked.
	At time.Time
	// Reason is the RFC 5280 section 5.3.1 CRLReason code (0 unspecified,
	// 1 keyCompromise, 4 superseded, 5 cessationOfOperation, ...); 7 is
	// unused by the RFC and refused.
	Reason int
}

// maxCRLNumberBytes is RFC 5280 section 5.2.3's bound on the CRL number.
const maxCRLNumberBytes = 20

// CRL returns a PEM "X509 CRL" signed by the intermediate, listing entries,
// with CRL number number, thisUpdate now and nextUpdate now + validity
// (times UTC, truncated to the second). number must be positive and grow
// with every CRL published.
func (c *CA) CRL(entries []Revoked, number *big.Int, now time.Time, validity time.Duration) ([]byte, error) {
	s := c.state()
	return signCRL(s.inter, s.interKey, entries, number, now, validity)
}

// PreviousCRL is CRL signed by the previous intermediate, for the certificates it
// issued, during a rotation (Previous). Outside one it fails with ErrNoRotation.
func (c *CA) PreviousCRL(entries []Revoked, number *big.Int, now time.Time, validity time.Duration) ([]byte, error) {
	s := c.state()
	if s.prev == nil {
		return nil, ErrNoRotation
	}
	return signCRL(s.prev, s.prevKey, entries, number, now, validity)
}

// signCRL signs a CRL as issuer with key.
func signCRL(issuer *x509.Certificate, key crypto.Signer, entries []Revoked, number *big.Int, now time.Time, validity time.Duration) ([]byte, error) {
	if number == nil || number.Sign() <= 0 || len(number.Bytes()) > maxCRLNumberBytes {
		return nil, errors.New("crl: number must be positive and at most 20 octets")
	}
	if validity <= 0 {
		return nil, fmt.Errorf("crl: validity %v must be positive", validity)
	}
	list := make([]x509.RevocationListEntry, 0, len(entries))
	for i, e := range entries {
		if e.Serial == nil || e.Serial.Sign() <= 0 {
			return nil, fmt.Errorf("crl: entry %d: serial must be positive", i)
		}
		if e.At.IsZero() {
			return nil, fmt.Errorf("crl: entry %d (serial %x): no revocation time", i, e.Serial)
		}
		if e.Reason < 0 || e.Reason > 10 || e.Reason == 7 {
			return nil, fmt.Errorf("crl: entry %d (serial %x): reason %d is not an RFC 5280 CRLReason", i, e.Serial, e.Reason)
		}
		list = append(list, x509.RevocationListEntry{
			SerialNumber:   e.Serial,
			RevocationTime: e.At.UTC().Truncate(time.Second),
			ReasonCode:     e.Reason,
		})
	}
	thisUpdate := now.UTC().Truncate(time.Second)
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    number,
		ThisUpdate:                thisUpdate,
		NextUpdate:                thisUpdate.Add(validity),
		RevokedCertificateEntries: list,
	}, issuer, key)
	if err != nil {
		return nil, fmt.Errorf("crl: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), nil
}
