package device

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/atomicfile"
	"github.com/hearth-pki/hearth/protocol"
)

// crlName is the file where the agent keeps the hub's CRLs it verified, one PEM block per
// issuer.
const crlName = "crl.pem"

// maxCRLBytes bounds crl.pem as read back.
const maxCRLBytes = 256 << 10

// maxCRLs bounds how many issuers' CRLs the agent keeps: the current intermediate's, the
// previous one's during a rotation, the root's (protocol/README.md, "Raw payloads"), and
// room for a root rotation's.
const maxCRLs = 6

// ErrHubRevoked is a hub whose broker certificate, or an intermediate of its chain, is on the
// hub's own CRLs: the agent refuses it (a stolen broker or intermediate key must not
// impersonate the hub).
var ErrHubRevoked = errors.New("the hub's certificate is revoked")

// Revocation is a CRL entry naming a certificate.
type Revocation struct {
	At     time.Time
	Reason protocol.RevocationReason // "" for a reason code the protocol does not name
}

// crlSet is the CRLs the agent holds, at most one per issuer; it is never changed once
// built (the agent swaps in a new one).
type crlSet struct {
	lists []*x509.RevocationList
}

// parseCRLs decodes the crl topic's payload (or crl.pem): one or more PEM "X509 CRL" blocks.
// It returns those signed by one of signers (the pinned CA's roots and intermediates, and the
// agent's own issuer); a block signed by nobody it knows is left out and named in err. A
// payload that is not PEM CRLs at all is an error with nothing returned.
func parseCRLs(raw []byte, signers []*x509.Certificate) ([]*x509.RevocationList, error) {
	var (
		out   []*x509.RevocationList
		first error
		n     int
	)
	rest := raw
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		n++
		if b.Type != "X509 CRL" {
			return nil, fmt.Errorf("block %d is %q, not an X509 CRL", n, b.Type)
		}
		l, err := x509.ParseRevocationList(b.Bytes)
		if err == nil && signerOf(l, signers) == nil {
			err = fmt.Errorf("issuer %s is not the pinned CA's", l.Issuer)
		}
		if err != nil {
			if first == nil {
				first = fmt.Errorf("CRL %d: %w", n, err)
			}
			continue
		}
		out = append(out, l)
	}
	if n == 0 {
		return nil, errors.New("not a PEM X509 CRL")
	}
	return out, first
}

// signerOf returns the certificate of signers that signed l, or nil.
func signerOf(l *x509.RevocationList, signers []*x509.Certificate) *x509.Certificate {
	for _, c := range signers {
		if bytes.Equal(l.RawIssuer, c.RawSubject) && l.CheckSignatureFrom(c) == nil {
			return c
		}
	}
	return nil
}

// sameIssuer reports whether a and b are CRLs of one issuer: its name and key.
func sameIssuer(a, b *x509.RevocationList) bool {
	return bytes.Equal(a.RawIssuer, b.RawIssuer) && bytes.Equal(a.AuthorityKeyId, b.AuthorityKeyId)
}

// issues reports whether l is the CRL of the issuer of c.
func issues(l *x509.RevocationList, c *x509.Certificate) bool {
	return bytes.Equal(l.RawIssuer, c.RawIssuer) &&
		(len(l.AuthorityKeyId) == 0 || len(c.AuthorityKeyId) == 0 || bytes.Equal(l.AuthorityKeyId, c.AuthorityKeyId))
}

// revoked returns the entry naming c on the CRL of c's issuer, if the set holds one that
// lists it.
func (s *crlSet) revoked(c *x509.Certificate) (Revocation, bool) {
	if s == nil {
		return Revocation{}, false
	}
	for _, l := range s.lists {
		if !issues(l, c) {
			continue
		}
		for _, e := range l.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(c.SerialNumber) == 0 {
				r, _ := protocol.RevocationReasonOf(e.ReasonCode)
				return Revocation{At: e.RevocationTime, Reason: r}, true
			}
		}
	}
	return Revocation{}, false
}

// merge returns the set with the CRLs of in taken where they replace what s holds: per
// issuer, a higher CRL number (RFC 5280 section 5.2.3), not past its nextUpdate at now (a
// lower bound of the true time), not signed by a revoked intermediate. changed reports
// whether anything was taken; err names the first CRL refused (the one held is kept). A CRL
// equal to the one held is neither.
func (s *crlSet) merge(in []*x509.RevocationList, signers []*x509.Certificate, now time.Time) (next *crlSet, changed bool, err error) {
	next = &crlSet{}
	if s != nil {
		next.lists = append(next.lists, s.lists...)
	}
	// The roots' CRLs in a first pass: an intermediate they revoke signs nothing taken from
	// the same message.
	for pass := range 2 {
		for _, l := range in {
			c := signerOf(l, signers)
			if (c != nil && selfSigned(c)) != (pass == 0) {
				continue
			}
			took, refused := next.take(l, c, now)
			changed = changed || took
			if err == nil {
				err = refused
			}
		}
	}
	return next, changed, err
}

// take puts l, signed by c (nil for nobody trusted), in the set when it replaces the one
// held of its issuer, and reports whether it did; err says why a CRL is refused (a CRL equal
// to the one held is neither taken nor refused).
func (s *crlSet) take(l *x509.RevocationList, c *x509.Certificate, now time.Time) (bool, error) {
	i := -1
	for j, h := range s.lists {
		if sameIssuer(h, l) {
			i = j
		}
	}
	var why string
	switch {
	case l.Number == nil || l.Number.Sign() <= 0:
		why = "has no CRL number"
	case i >= 0 && l.Number.Cmp(s.lists[i].Number) == 0:
		return false, nil
	case i >= 0 && l.Number.Cmp(s.lists[i].Number) < 0:
		why = "is older than the one held"
	case !l.NextUpdate.IsZero() && !now.Before(l.NextUpdate):
		why = "is past its next update"
	case c == nil:
		why = "is not signed by the pinned CA"
	default:
		if _, bad := s.revoked(c); bad {
			why = "is signed by a revoked intermediate"
		}
	}
	if why != "" {
		return false, fmt.Errorf("CRL of %s %s", l.Issuer, why)
	}
	if i >= 0 {
		s.lists[i] = l
	} else {
		s.lists = append(s.lists[max(len(s.lists)-maxCRLs+1, 0):], l)
	}
	return true, nil
}

// encode returns the set as crl.pem holds it.
func (s *crlSet) encode() []byte {
	var b []byte
	for _, l := range s.lists {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: l.Raw})...)
	}
	return b
}

// readCRLs reads crl.pem from dir, verified against signers. What was kept is taken whatever
// its nextUpdate: a revocation it lists stays true.
func readCRLs(dir string, signers []*x509.Certificate) *crlSet {
	raw, err := readSmall(filepath.Join(dir, crlName), maxCRLBytes)
	if err != nil {
		return nil
	}
	ls, _ := parseCRLs(raw, signers)
	s, _, _ := (*crlSet)(nil).merge(ls, signers, time.Time{})
	return s
}

// crlSigners is who may sign a CRL the agent takes: the pinned CA chain, and the issuer of
// the agent's own certificate (verified when it was installed; after a rotation retires
// that intermediate it is no longer in the pinned chain).
func (a *Agent) crlSigners() []*x509.Certificate {
	signers := append([]*x509.Certificate(nil), a.ca...)
	if p := a.pair.Load(); p != nil && len(p.Chain) > 1 {
		signers = append(signers, p.Chain[1:]...)
	}
	return signers
}

// updateCRL takes the hub's published CRLs: each verified against the pinned CA, kept (and
// written to crl.pem) when newer than the one held of its issuer, and checked for the
// agent's own certificate and its issuer. Anything refused is logged and changes nothing.
func (a *Agent) updateCRL(raw string) {
	signers := a.crlSigners()
	ls, err := parseCRLs([]byte(raw), signers)
	if err != nil {
		a.log.Warn("ignoring CRLs of the CRL message", "err", err)
	}
	next, changed, err := a.crls.Load().merge(ls, signers, a.clk.Read().Now)
	if err != nil {
		a.log.Warn("refusing CRLs of the CRL message", "err", err)
	}
	if !changed {
		return
	}
	a.crls.Store(next)
	if a.ks != nil && a.cfg.Memory == nil {
		if err := atomicfile.WriteFile(a.cfg.Dir, crlName, next.encode()); err != nil {
			a.log.Warn("cannot keep the CRL", "err", err)
		}
	}
	detail := ""
	chain := a.current().Chain
	if r, ok := next.revoked(chain[0]); ok {
		detail = "revoked"
		a.log.Error("the hub revoked this device's certificate: enroll again with a new token",
			"serial", a.current().Serial(), "reason", r.Reason, "revoked_at", r.At)
	} else if c, r, ok := next.revokedIssuer(chain); ok {
		detail = "issuer_revoked"
		a.log.Error("this certificate's issuer is revoked: renew, or enroll again with a new token",
			"issuer", c.Subject.String(), "reason", r.Reason, "revoked_at", r.At)
	}
	a.emit(Event{Kind: EventCRLUpdated, Detail: detail})
}

// revokedIssuer returns the first CA certificate of chain (leaf first) that the set lists.
func (s *crlSet) revokedIssuer(chain []*x509.Certificate) (*x509.Certificate, Revocation, bool) {
	for _, c := range chain[1:] {
		if r, ok := s.revoked(c); ok {
			return c, r, true
		}
	}
	return nil, Revocation{}, false
}

// loadCRL reads crl.pem from the state directory, if it holds valid CRLs.
func (a *Agent) loadCRL() {
	if a.cfg.Memory != nil {
		return
	}
	if s := readCRLs(a.cfg.Dir, a.crlSigners()); s != nil {
		a.crls.Store(s)
	}
}

// hubRevoked refuses a hub whose verified chain (leaf first, no root) holds a certificate
// listed on the CRLs the agent holds: its broker certificate on the intermediate's, or its
// intermediate on the root's.
func (a *Agent) hubRevoked(path []*x509.Certificate) error {
	s := a.crls.Load()
	for _, c := range path {
		if r, ok := s.revoked(c); ok {
			return fmt.Errorf("%w: %s, serial %x (%s)", ErrHubRevoked, c.Subject, c.SerialNumber, r.Reason)
		}
	}
	return nil
}
