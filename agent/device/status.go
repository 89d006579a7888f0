package device

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/atomicfile"
	"github.com/hearth-pki/hearth/agent/internal/clock"
	"github.com/hearth-pki/hearth/protocol"
	"github.com/hearth-pki/hearth/protocol/jsoncodec"
)

// runtimeName is the file where a running agent records what only it knows (connection,
// clock, next renewal), for Status. It is informative: nothing reads it back as truth.
const runtimeName = "status.json"

// runtimeState is status.json. Its field names are a file format: never rename them.
type runtimeState struct {
	V                 int               `json:"v"`
	PID               int               `json:"pid"`
	AgentVersion      string            `json:"agent_version"`
	Connected         bool              `json:"connected"`
	Since             time.Time         `json:"since,omitzero"`
	LastConnected     time.Time         `json:"last_connected,omitzero"`
	ConnectError      string            `json:"connect_error,omitempty"`
	ClockTrusted      bool              `json:"clock_trusted"`
	HubSeen           bool              `json:"hub_seen"`
	SkewSeconds       int64             `json:"skew_seconds"`
	NextRenewal       time.Time         `json:"next_renewal,omitzero"`
	NextRenewalReason string            `json:"next_renewal_reason,omitempty"`
	Hook              *protocol.HookRun `json:"hook,omitempty"`
	Updated           time.Time         `json:"updated"`
}

// saveRuntime writes status.json.
func (a *Agent) saveRuntime() {
	if a.ks == nil || a.cfg.Memory != nil {
		return
	}
	p := a.nextRenewal()
	a.rt.V, a.rt.PID, a.rt.AgentVersion = 1, os.Getpid(), a.cfg.Version
	a.rt.NextRenewal, a.rt.NextRenewalReason, a.rt.Updated = p.At, p.Reason, time.Time{}
	// Rewrite only what changed: the agent calls this after every event, and a device's flash
	// wears with every write. Updated is the time of the last change.
	same, _ := jsoncodec.Marshal(a.rt)
	if bytes.Equal(same, a.lastRuntime) {
		return
	}
	a.lastRuntime = same
	a.rt.Updated = a.now()
	b, err := jsoncodec.MarshalIndent(a.rt, "", "  ")
	if err == nil {
		// Without fsyncs, sparing the flash: a power loss may leave status.json empty, which
		// ReadStatus reports as unknown.
		err = atomicfile.WriteFileNoSync(a.cfg.Dir, runtimeName, append(b, '\n'))
	}
	if err != nil {
		a.log.Warn("cannot write the runtime status", "err", err)
	}
}

// Status is what ReadStatus reports about an agent's state directory.
type Status struct {
	_        [0]func() // not comparable: no equality function in the binary (its size budget)
	Dir      string    `json:"dir"`
	DeviceID string    `json:"device_id,omitempty"`
	Hub      string    `json:"hub,omitempty"`
	// Enrolled reports whether the directory holds a certificate.
	Enrolled     bool                  `json:"enrolled"`
	Serial       string                `json:"serial,omitempty"`
	Subject      string                `json:"subject,omitempty"`
	Issuer       string                `json:"issuer,omitempty"`
	KeyAlgorithm protocol.KeyAlgorithm `json:"key_algorithm,omitempty"`
	NotBefore    time.Time             `json:"not_before,omitzero"`
	NotAfter     time.Time             `json:"not_after,omitzero"`
	// TimeLeft is NotAfter minus the best known time (negative once expired).
	TimeLeft Duration `json:"time_left"`
	// Expired is true only when expiry is proven: by a trusted clock, or by a lower bound of
	// the time (last known good, build time) already past NotAfter. A clock stuck in 1970
	// never makes a certificate look expired.
	Expired bool `json:"expired"`
	// ClockTrusted reports whether the device clock looks right now.
	ClockTrusted bool `json:"clock_trusted"`
	// ChainOK reports whether the chain verifies against the pinned CA (ChainError says why
	// not).
	ChainOK    bool   `json:"chain_ok"`
	ChainError string `json:"chain_error,omitempty"`
	// Revoked reports that the hub's CRL (the last one the agent received and verified,
	// crl.pem) lists the certificate, since RevokedAt for RevocationReason: the device must
	// enroll again with a new token.
	Revoked          bool                      `json:"revoked"`
	RevokedAt        time.Time                 `json:"revoked_at,omitzero"`
	RevocationReason protocol.RevocationReason `json:"revocation_reason,omitempty"`
	// IssuerRevoked, when not empty, names the intermediate of the certificate's chain that
	// the root's CRL lists (revoked after a compromise) since IssuerRevokedAt: the
	// certificate is no longer trusted; the device must renew, or enroll again.
	IssuerRevoked   string    `json:"issuer_revoked,omitempty"`
	IssuerRevokedAt time.Time `json:"issuer_revoked_at,omitzero"`
	// NextRenewal and its reason are as the running agent last computed them (or the default
	// plan when no agent has run).
	NextRenewal       time.Time `json:"next_renewal,omitzero"`
	NextRenewalReason string    `json:"next_renewal_reason,omitempty"`
	LastRenewal       time.Time `json:"last_renewal,omitzero"`
	LastError         string    `json:"last_error,omitempty"`
	LastCause         string    `json:"last_cause,omitempty"` // LastError's cause (protocol/README.md, "Causes")
	// LastRequestID is the renewal attempt LastError ended, the request id under which the
	// hub records the failure once a health report reaches it.
	LastRequestID  string `json:"last_request_id,omitempty"`
	PendingRequest string `json:"pending_request,omitempty"`
	// Connected is the hub connection as the agent last recorded it, at ConnectionSince;
	// AgentPID is that agent's process id.
	Connected       bool      `json:"connected"`
	ConnectionSince time.Time `json:"connection_since,omitzero"`
	LastConnected   time.Time `json:"last_connected,omitzero"`
	// ConnectError is why the agent's last connection attempt failed, while it has not
	// connected since.
	ConnectError  string            `json:"connect_error,omitempty"`
	SkewSeconds   int64             `json:"skew_seconds,omitempty"`
	AgentPID      int               `json:"agent_pid,omitempty"`
	AgentVersion  string            `json:"agent_version,omitempty"`
	Hook          *protocol.HookRun `json:"hook,omitempty"`
	StatusUpdated time.Time         `json:"status_updated,omitzero"`
	LastKnownGood time.Time         `json:"last_known_good,omitzero"`
}

// Duration is a time.Duration that encodes in JSON as whole seconds.
type Duration time.Duration

// MarshalJSON encodes d as a number of seconds.
func (d Duration) MarshalJSON() ([]byte, error) {
	return jsoncodec.Marshal(int64(time.Duration(d) / time.Second))
}

// UnmarshalJSON decodes a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s int64
	if err := jsoncodec.Unmarshal(b, &s); err != nil {
		return err
	}
	*d = Duration(time.Duration(s) * time.Second)
	return nil
}

// stateView is the part of the keystore's state.json that Status shows. ReadStatus reads the
// files directly, never opening the keystore: that would tidy the directory (remove *.tmp
// files, exports) under a running agent's feet.
type stateView struct {
	LastKnownGood time.Time `json:"last_known_good"`
	LastError     string    `json:"last_error"`
	LastCause     string    `json:"last_cause"`
	LastRequestID string    `json:"last_request_id"`
	LastRenewal   time.Time `json:"last_renewal"`
	Pending       *struct {
		RequestID string `json:"request_id"`
	} `json:"pending"`
}

// ReadStatus reports the state of cfg.Dir without changing anything in it; it is safe while
// an agent runs there. A directory without a certificate gives Enrolled false and no error.
// Only Dir, Now and BuildTime of cfg are used, plus HubURL/DeviceID as fallbacks.
func ReadStatus(cfg Config) (Status, error) {
	if cfg.Dir == "" {
		cfg.Dir = DefaultDir
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := Status{Dir: cfg.Dir, DeviceID: cfg.DeviceID, Hub: cfg.HubURL}
	set, err := loadSettings(cfg.Dir)
	if err != nil {
		return s, fmt.Errorf("device: status: %w", err)
	}
	if set.DeviceID != "" {
		s.DeviceID, s.Hub = set.DeviceID, set.Hub
	}
	var sv stateView
	if err := readJSON(filepath.Join(cfg.Dir, "state.json"), &sv); err != nil {
		return s, fmt.Errorf("device: status: %w", err)
	}
	s.LastError, s.LastCause, s.LastRenewal, s.LastKnownGood = sv.LastError, sv.LastCause, sv.LastRenewal, sv.LastKnownGood
	s.LastRequestID = sv.LastRequestID
	if sv.Pending != nil {
		s.PendingRequest = sv.Pending.RequestID
	}
	var rt runtimeState
	if err := readJSON(filepath.Join(cfg.Dir, runtimeName), &rt); err != nil {
		return s, fmt.Errorf("device: status: %w", err)
	}
	s.Connected, s.ConnectionSince, s.LastConnected, s.ConnectError = rt.Connected, rt.Since, rt.LastConnected, rt.ConnectError
	s.SkewSeconds, s.AgentPID, s.AgentVersion, s.Hook, s.StatusUpdated = rt.SkewSeconds, rt.PID, rt.AgentVersion, rt.Hook, rt.Updated
	s.NextRenewal, s.NextRenewalReason = rt.NextRenewal, rt.NextRenewalReason

	chain, err := readCerts(filepath.Join(cfg.Dir, "current.pem"))
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("device: status: %w", err)
	}
	leaf := chain[0]
	s.Enrolled = true
	s.Serial, s.Subject, s.Issuer = leaf.SerialNumber.Text(16), leaf.Subject.CommonName, leaf.Issuer.String()
	s.KeyAlgorithm, s.NotBefore, s.NotAfter = protocol.KeyAlgorithmOf(leaf.PublicKey), leaf.NotBefore, leaf.NotAfter

	clk := clock.New(cfg.Now, cfg.floor(sv.LastKnownGood))
	clk.AtLeast(leaf.NotBefore)
	r := clk.Read()
	s.ClockTrusted = r.Trusted
	s.TimeLeft = Duration(leaf.NotAfter.Sub(r.Now))
	s.Expired = r.Now.After(leaf.NotAfter)
	if s.NextRenewal.IsZero() || rt.NextRenewal.Before(leaf.NotBefore) {
		p := renewalPlan(leaf, s.Serial, nil, 0.5)
		s.NextRenewal, s.NextRenewalReason = p.At, p.Reason
	}
	ca, err := readCerts(filepath.Join(cfg.Dir, "ca.pem"))
	if err != nil {
		s.ChainError = "no pinned CA: " + err.Error()
		return s, nil
	}
	path, err := verifyChain(chain, ca, verifyAt(r, leaf), x509.ExtKeyUsageClientAuth, "")
	if err != nil {
		s.ChainError = err.Error()
		path = chain
	} else {
		s.ChainOK = true
	}
	crls := readCRLs(cfg.Dir, append(append([]*x509.Certificate(nil), ca...), chain[1:]...))
	if rv, ok := crls.revoked(leaf); ok {
		s.Revoked, s.RevokedAt, s.RevocationReason = true, rv.At, rv.Reason
	}
	if c, rv, ok := crls.revokedIssuer(path); ok {
		s.IssuerRevoked, s.IssuerRevokedAt = c.Subject.String()+" ("+string(rv.Reason)+")", rv.At
	}
	return s, nil
}

// readJSON decodes a small JSON file; a missing file leaves v untouched.
func readJSON(path string, v any) error {
	data, err := readSmall(path, maxConfigBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := jsoncodec.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return nil
}

// readCerts reads the certificates of a PEM file, skipping any private key block.
func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := readSmall(path, 256<<10)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no certificate", filepath.Base(path))
	}
	return certs, nil
}
