package device

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/atomicfile"
	"github.com/hearth-pki/hearth/protocol"
)

// crlName is the file where the agent keeps the hub's last CRL it verified.
const crlName = "crl.pem"

// maxCRLBytes bounds crl.pem as read back.
const maxCRLBytes = 256 << 10

// ErrHubRevoked is a hub whose broker certificate is on the hub's own CRL: the agent refuses
// it (a stolen broker key must not impersonate the hub).
var ErrHubRevoked = errors.New("the hub's certificate is revoked")

// Revocation is a CRL entry naming a certificate.
type Revocation struct {
	At     time.Time
	Reason protocol.RevocationReason // "" for a reason code the protocol does not name
}

// parseCRL decodes a PEM CRL and checks that an intermediate of the pinned CA chain signed
// it; anything else is an error and changes nothing.
func parseCRL(raw []byte, ca []*x509.Certificate) (*x509.RevocationList, error) {
	b, _ := pem.Decode(raw)
	if b == nil || b.Type != "X509 CRL" {
		return nil, errors.New("not a PEM X509 CRL")
	}
	l, err := x509.ParseRevocationList(b.Bytes)
	if err != nil {
		return nil, err
	}
	for _, c := range ca {
		if !selfSigned(c) && l.CheckSignatureFrom(c) == nil {
			return l, nil
		}
	}
	return nil, errors.New("the CRL is not signed by the pinned CA's intermediate")
}

// revokedIn returns the entry of l naming serial (lowercase hex), if any.
func revokedIn(l *x509.RevocationList, serial string) (Revocation, bool) {
	if l == nil {
		return Revocation{}, false
	}
	for _, e := range l.RevokedCertificateEntries {
		if e.SerialNumber.Text(16) == serial {
			r, _ := protocol.RevocationReasonOf(e.ReasonCode)
			return Revocation{At: e.RevocationTime, Reason: r}, true
		}
	}
	return Revocation{}, false
}

// newer reports whether l replaces cur: a higher CRL number (RFC 5280 5.2.3), or none held.
func newer(l, cur *x509.RevocationList) bool {
	return cur == nil || (l.Number != nil && cur.Number != nil && l.Number.Cmp(cur.Number) > 0)
}

// updateCRL takes the hub's published CRL: verified against the pinned CA, kept (and
// written to crl.pem) when newer than the one held, and checked for the agent's own
// certificate. An invalid CRL is logged and ignored.
func (a *Agent) updateCRL(raw string) {
	l, err := parseCRL([]byte(raw), a.ca)
	if err != nil {
		a.log.Warn("ignoring a CRL message", "err", err)
		return
	}
	if !newer(l, a.crl.Load()) {
		return
	}
	a.crl.Store(l)
	if a.ks != nil && a.cfg.Memory == nil {
		if err := atomicfile.WriteFile(a.cfg.Dir, crlName, []byte(raw)); err != nil {
			a.log.Warn("cannot keep the CRL", "err", err)
		}
	}
	detail := ""
	if r, ok := revokedIn(l, a.current().Serial()); ok {
		detail = "revoked"
		a.log.Error("the hub revoked this device's certificate: enroll again with a new token",
			"serial", a.current().Serial(), "reason", r.Reason, "revoked_at", r.At)
	}
	a.emit(Event{Kind: EventCRLUpdated, Detail: detail})
}

// loadCRL reads crl.pem from the state directory, if it holds a valid one.
func (a *Agent) loadCRL() {
	if a.cfg.Memory != nil {
		return
	}
	raw, err := readSmall(filepath.Join(a.cfg.Dir, crlName), maxCRLBytes)
	if err != nil {
		return
	}
	if l, err := parseCRL(raw, a.ca); err == nil {
		a.crl.Store(l)
	}
}

// hubRevoked refuses a hub certificate listed on the CRL the agent holds.
func (a *Agent) hubRevoked(cert *x509.Certificate) error {
	if r, ok := revokedIn(a.crl.Load(), cert.SerialNumber.Text(16)); ok {
		return fmt.Errorf("%w: serial %s since %s (%s)", ErrHubRevoked, cert.SerialNumber.Text(16),
			r.At.UTC().Format(time.RFC3339), r.Reason)
	}
	return nil
}
