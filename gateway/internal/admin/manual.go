package admin

// Devices without an agent — a camera holding a certificate from its vendor's cloud, a
// printer whose web page makes a CSR — are kept by a person. device/import records the
// certificate a person found on such a device; device/sign signs the CSR a person uploaded.
// Both mark the device MechanismManual, so the renewal scheduler sends reminders at the
// policy's thresholds instead of commands, and both leave the certificate active at once:
// there is no agent to commit it, the person installs it.
//
// device/sign is a front end of the issuer's pipeline (issuer.Issue with
// issuer.AuthAdmin): the same checks, the same policy, the same rate limit and the same
// wire codes as a CSR over MQTT. device/import signs nothing; it shares the pipeline's
// rule for who may be given a certificate by a person (issuer.ManualTarget) and its
// inventory record of a certificate (issuer.CertificateOf).
//
// A refused request writes nothing. An accepted one is two inventory transactions (record
// pending, then activate): a crash between them leaves a pending certificate, which the
// same import run again activates.

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/issuer"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

// ReasonImport is the attempt reason of an imported certificate; signed CSRs use the
// protocol's reasons (enroll, command).
const ReasonImport = "import"

// Import decodes a device/import payload and runs ImportChain.
func (s *Service) Import(ctx context.Context, payload []byte) (any, error) {
	var r protocol.ImportRequest
	if err := protocol.Decode(payload, &r); err != nil {
		return nil, fmt.Errorf("device/import: %w", err)
	}
	return s.ImportChain(ctx, r)
}

// SignCSR decodes a device/sign payload and runs Sign.
func (s *Service) SignCSR(ctx context.Context, payload []byte) (any, error) {
	var r protocol.SignRequest
	if err := protocol.Decode(payload, &r); err != nil {
		return nil, fmt.Errorf("device/sign: %w", err)
	}
	return s.Sign(ctx, r)
}

// ImportChain records the certificate of a device without an agent, from its chain (leaf
// first, 1 to protocol.MaxImportChain certificates, each issued by the next). The leaf must
// not be a CA certificate and must not name another Hearth device. The device is created or updated
// as manual and the certificate becomes its active one, superseding an older one; a
// certificate older than the active one is refused. Importing a certificate the inventory
// already has answers its record and changes nothing.
func (s *Service) ImportChain(ctx context.Context, r protocol.ImportRequest) (protocol.DeviceImported, error) {
	if err := r.Validate(); err != nil {
		return protocol.DeviceImported{}, err
	}
	chain, err := parseChain(r.PEM)
	if err != nil {
		return protocol.DeviceImported{}, err
	}
	if err := checkImportedLeaf(chain, r.ID); err != nil {
		return protocol.DeviceImported{}, err
	}
	leaf := chain[0]
	now := s.cfg.Now().UTC().Truncate(time.Second)
	cert := issuer.CertificateOf(leaf, r.ID)
	cert.RequestID = "import-" + cert.Serial[:min(len(cert.Serial), protocol.MaxRequestIDLen-len("import-"))]

	old, found, err := s.knownCert(ctx, r.ID, cert)
	if err != nil {
		return protocol.DeviceImported{}, err
	}
	if found && old.Status != inventory.StatusPending {
		return imported(old, "", true), nil
	}
	dev, err := s.manualTarget(ctx, r.ManualDevice)
	if err != nil {
		return protocol.DeviceImported{}, err
	}
	if err := s.checkNotOlder(ctx, cert); err != nil {
		return protocol.DeviceImported{}, err
	}
	if found {
		cert.RequestID = old.RequestID // an earlier import stopped before activating
	} else {
		err = s.cfg.Store.RecordIssuance(ctx, inventory.Issuance{Device: dev, Cert: cert,
			Attempt: inventory.Attempt{RequestID: cert.RequestID, Reason: ReasonImport, StartedAt: now, FinishedAt: now}})
		if errors.Is(err, inventory.ErrDuplicate) {
			// The same certificate imported at the same moment by someone else.
			if old, found, err := s.knownCert(ctx, r.ID, cert); err != nil || found && old.Status != inventory.StatusPending {
				return imported(old, "", true), err
			}
		} else if err != nil {
			return protocol.DeviceImported{}, storeError(err)
		}
	}
	prev, err := s.activateManual(ctx, cert, now)
	if err != nil {
		return protocol.DeviceImported{}, err
	}
	cert.Status = inventory.StatusActive
	s.cfg.Logger.Info("certificate imported", "device", r.ID, "serial", cert.Serial, "issuer", cert.Issuer)
	s.cfg.Notify(protocol.Event{V: protocol.Version, Type: protocol.EventCertActivated, Time: now, DeviceID: r.ID,
		Message: protocol.ClipText(fmt.Sprintf("certificate %s imported (issuer %s, expires %s)%s", cert.Serial, cert.Issuer,
			cert.NotAfter.Format(time.RFC3339), supersededText(prev))),
		Data: map[string]string{"serial": cert.Serial, "previous": prev, "reason": ReasonImport}})
	s.cfg.DeviceChanged(r.ID) // its bridge state, and the scheduler's reminders (renewal.Touch)
	s.cfg.Changed()
	return imported(cert, prev, false), nil
}

// Sign signs a CSR made on a device without an agent and uploaded by a person, through
// the issuer's pipeline (issuer.Issue with issuer.AuthAdmin). The CSR must verify (proof of
// possession), name no other device (CN empty or the id; URI SANs only
// protocol.DeviceURN(id)) and carry a key the CA and the policy accept. Policy sees a new
// device, or one whose certificate expired (a person's upload stands in for an enrollment
// token), as an enrollment; otherwise as a command renewal of the active certificate, so
// a class that requires a new key refuses the current one. A refusal is an
// *issuer.Refusal carrying the same wire code a CSR over MQTT gets. The certificate is
// recorded and activated at once.
func (s *Service) Sign(ctx context.Context, r protocol.SignRequest) (protocol.DeviceSigned, error) {
	if err := r.Validate(); err != nil {
		return protocol.DeviceSigned{}, err
	}
	if s.cfg.Issuer == nil {
		return protocol.DeviceSigned{}, errors.New("device/sign needs the issuer")
	}
	res, err := s.cfg.Issuer.Issue(ctx, issuer.Request{DeviceID: r.ID, RequestID: newID("sign"), CSR: r.CSR,
		Auth: issuer.AuthAdmin, Describe: describe(r.ManualDevice)})
	var refused *issuer.Refusal
	switch {
	case errors.As(err, &refused):
		return protocol.DeviceSigned{}, err
	case err != nil:
		return protocol.DeviceSigned{}, internal(err)
	}
	now := s.cfg.Now().UTC()
	cert := res.Cert
	prev, err := s.activateManual(ctx, cert, now)
	if err != nil {
		return protocol.DeviceSigned{}, err
	}
	s.cfg.Logger.Info("CSR signed", "device", r.ID, "serial", cert.Serial, "class", res.Class, "reason", res.Reason)
	s.cfg.Notify(protocol.Event{V: protocol.Version, Type: protocol.EventCertActivated, Time: now.Truncate(time.Second), DeviceID: r.ID,
		Message: fmt.Sprintf("certificate %s is active%s", cert.Serial, supersededText(prev)),
		Data:    map[string]string{"serial": cert.Serial, "previous": prev}})
	s.cfg.DeviceChanged(r.ID) // its bridge state, and the scheduler's reminders (renewal.Touch)
	s.cfg.Changed()
	return protocol.DeviceSigned{ID: r.ID, Serial: cert.Serial, NotAfter: cert.NotAfter, Class: res.Class, Chain: res.Chain, Superseded: prev}, nil
}

// describe is what the person said of the device.
func describe(m protocol.ManualDevice) issuer.Description {
	return issuer.Description{Name: m.Name, Family: m.Family, Vendor: m.Vendor, Model: m.Model}
}

// policy returns the policy in force.
func (s *Service) policy() *policy.Policy { return s.cfg.Policy() }

// manualTarget returns the device record to write for m, with its class under the policy
// in force, or the *issuer.Refusal of a device a person may not give a certificate to (run
// by an agent, quarantined or removed): the rule device/sign applies too.
func (s *Service) manualTarget(ctx context.Context, m protocol.ManualDevice) (inventory.Device, error) {
	cur, err := s.cfg.Store.Device(ctx, m.ID)
	if err != nil && !errors.Is(err, inventory.ErrNotFound) {
		return inventory.Device{}, internal(err)
	}
	dev, subject, err := issuer.ManualTarget(m.ID, cur, err == nil, describe(m))
	if err != nil {
		return inventory.Device{}, err
	}
	pol := s.policy()
	class, _ := pol.ClassFor(subject)
	dev.Class, dev.ClassHash = class.Name, pol.ClassHash()
	return dev, nil
}

// knownCert looks up the certificate with cert's serial. A record of another certificate, of
// another device, or revoked is an error; found reports a record of this very certificate.
func (s *Service) knownCert(ctx context.Context, id string, cert inventory.Certificate) (old inventory.Certificate, found bool, err error) {
	old, err = s.cfg.Store.Certificate(ctx, cert.Serial)
	switch {
	case errors.Is(err, inventory.ErrNotFound):
		return old, false, nil
	case err != nil:
		return old, false, internal(err)
	case old.Fingerprint != cert.Fingerprint:
		return old, false, fmt.Errorf("serial %s is already recorded for another certificate (device %q, issuer %q): "+
			"the inventory keys certificates by serial, so this one cannot be imported", cert.Serial, old.DeviceID, old.Issuer)
	case old.DeviceID != id:
		return old, false, fmt.Errorf("certificate %s is already recorded for device %q", cert.Serial, old.DeviceID)
	case old.Status == inventory.StatusRevoked:
		return old, false, &issuer.Refusal{Code: protocol.CodeRevoked,
			Reason: fmt.Sprintf("certificate %s of %q was revoked (%s); it cannot be imported again", cert.Serial, id, old.RevokeReason)}
	}
	return old, true, nil
}

// checkNotOlder refuses cert when the device's active certificate is newer: activating it
// would supersede a certificate the device received later.
func (s *Service) checkNotOlder(ctx context.Context, cert inventory.Certificate) error {
	cur, err := s.cfg.Store.ActiveCertificate(ctx, cert.DeviceID)
	if errors.Is(err, inventory.ErrNotFound) {
		return nil
	}
	if err != nil {
		return internal(err)
	}
	newer := cert.NotBefore.After(cur.NotBefore) || cert.NotBefore.Equal(cur.NotBefore) && cert.NotAfter.After(cur.NotAfter)
	if cur.Serial != cert.Serial && !newer {
		return fmt.Errorf("device %q already has a newer certificate %s (valid %s to %s); this one (valid %s to %s) is older",
			cert.DeviceID, cur.Serial, stamp(cur.NotBefore), stamp(cur.NotAfter), stamp(cert.NotBefore), stamp(cert.NotAfter))
	}
	return nil
}

// activateManual makes the recorded cert the device's active certificate (the person
// installed it) and closes its attempt as committed. It returns the superseded serial.
func (s *Service) activateManual(ctx context.Context, cert inventory.Certificate, now time.Time) (string, error) {
	prev, _, err := s.cfg.Store.Activate(ctx, cert.DeviceID, cert.Serial, now)
	if errors.Is(err, inventory.ErrRevoked) {
		return "", fmt.Errorf("certificate %s was revoked meanwhile", cert.Serial)
	}
	if err != nil {
		return "", internal(fmt.Errorf("certificate %s recorded pending: %w", cert.Serial, err))
	}
	if err := s.cfg.Store.FinishAttempt(ctx, cert.DeviceID, cert.RequestID, inventory.OutcomeCommitted, "", now); err != nil {
		s.cfg.Logger.Warn("finish attempt", "device", cert.DeviceID, "request", cert.RequestID, "err", err)
	}
	return prev, nil
}

// parseChain decodes 1 to protocol.MaxImportChain PEM CERTIFICATE blocks. Text around the blocks (as
// openssl prints it) is ignored; any other block type is refused, a private key by name.
func parseChain(text string) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	rest := []byte(text)
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		n := len(chain) + 1
		switch {
		case strings.Contains(b.Type, "PRIVATE KEY"):
			return nil, fmt.Errorf("pem block %d is a private key: give only the certificate chain (the hub never needs the key)", n)
		case b.Type != "CERTIFICATE":
			return nil, fmt.Errorf("pem block %d is %q, want CERTIFICATE", n, b.Type)
		case n > protocol.MaxImportChain:
			return nil, fmt.Errorf("the chain has more than %d certificates", protocol.MaxImportChain)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d of the chain does not parse: %w", n, err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return nil, errors.New("pem holds no CERTIFICATE block: give the device's certificate in PEM, leaf first " +
			"(convert DER with openssl x509 -inform der)")
	}
	return chain, nil
}

// checkImportedLeaf checks that chain[0] is an end-entity certificate of device id, of a
// validity inventory can store, and that each certificate is issued by the next one.
func checkImportedLeaf(chain []*x509.Certificate, id string) error {
	leaf := chain[0]
	if leaf.IsCA || leaf.KeyUsage&x509.KeyUsageCertSign != 0 {
		return fmt.Errorf("the first certificate (%s) is a CA certificate: import the device's own certificate, leaf first", leaf.Subject)
	}
	if leaf.SerialNumber.Sign() < 0 {
		return fmt.Errorf("the certificate's serial %s is negative", leaf.SerialNumber)
	}
	if leaf.NotBefore.Unix() >= leaf.NotAfter.Unix() {
		return fmt.Errorf("the certificate's validity %s to %s is empty", stamp(leaf.NotBefore), stamp(leaf.NotAfter))
	}
	for _, u := range leaf.URIs {
		if named, ok := protocol.DeviceIDFromURN(u.String()); ok && named != id {
			return fmt.Errorf("the certificate names %s, not device %q", u, id)
		}
	}
	for i := 0; i+1 < len(chain); i++ {
		err := chain[i].CheckSignatureFrom(chain[i+1])
		var weak x509.InsecureAlgorithmError
		if err != nil && !errors.As(err, &weak) { // old vendor chains (SHA-1) are tracked, not judged
			return fmt.Errorf("certificate %d (%s) is not issued by certificate %d (%s): give the chain leaf first: %w",
				i+1, chain[i].Subject, i+2, chain[i+1].Subject, err)
		}
	}
	return nil
}

func imported(c inventory.Certificate, prev string, already bool) protocol.DeviceImported {
	return protocol.DeviceImported{ID: c.DeviceID, Serial: c.Serial, NotAfter: c.NotAfter, Issuer: c.Issuer, Status: string(c.Status),
		Superseded: prev, AlreadyImported: already}
}

// storeError maps a refusal of the inventory (bad text, duplicate) to a request error and
// anything else to an internal one.
func storeError(err error) error {
	if errors.Is(err, inventory.ErrInvalid) || errors.Is(err, inventory.ErrDuplicate) {
		return err
	}
	return internal(err)
}

func supersededText(prev string) string {
	if prev == "" {
		return ""
	}
	return "; " + prev + " superseded"
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
