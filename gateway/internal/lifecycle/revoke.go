package lifecycle

import (
	"context"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
)

// RevokeRequested is an administrator's revocation of the device (Serial "": its identity,
// every certificate it holds, its request in flight) or of one of its certificates. Being an
// event of the device, it is ordered with the device's requests: a certificate the issuer is
// signing when the revocation arrives is recorded first, and revoked with the rest.
type RevokeRequested struct {
	Serial     string
	Revocation inventory.Revocation
}

func (RevokeRequested) event() {}

// RevokeCertificates revokes, durably, the device's identity (Serial "") or one certificate.
// The request in flight, if the revocation ends it, was RequestID.
type RevokeCertificates struct {
	Serial     string
	Revocation inventory.Revocation
	RequestID  string
}

func (RevokeCertificates) effect() {}

// Revoked is a revocation the machine recorded.
type Revoked struct {
	DeviceID string
	Serials  []string // the certificates revoked now (none when all already were)
	Identity bool     // the whole device: it is quarantined until enrolled again
	At       time.Time
}

// revoke decides a revocation: the state forgets what it revokes, so no commit, rollback or
// command can bring a revoked certificate back.
func (r Rules) revoke(s *State, e RevokeRequested, out []Effect) []Effect {
	eff := RevokeCertificates{Serial: e.Serial, Revocation: e.Revocation}
	if p := s.Pending; p != nil && (e.Serial == "" || e.Serial == p.Serial) {
		eff.RequestID = p.RequestID
		s.Pending = nil
	}
	if e.Serial == "" {
		if c := s.Command; c != nil {
			out = append(out, CommandSeen{ID: c.ID, Expired: true})
			s.Command = nil
		}
		s.Active, s.Previous, s.LastRequest, s.Proven = "", "", "", 0
		return append(out, eff)
	}
	switch e.Serial {
	case s.Active:
		s.Active, s.LastRequest, s.Proven = "", "", 0
	case s.Previous:
		s.Previous = ""
	}
	return append(out, eff)
}

// Revoke revokes the device's identity (serial "") or one of its certificates, in order with
// the device's other events, and returns once the revocation is durable. Sessions are the
// caller's to drop (the broker refuses the revoked certificates from now on).
func (m *Machine) Revoke(ctx context.Context, device, serial string, rv inventory.Revocation) (Revoked, error) {
	done := make(chan revokeResult, 1)
	if !m.submit(item{device: device, ev: RevokeRequested{Serial: serial, Revocation: rv}, revoked: done}) {
		return Revoked{}, ErrStopped
	}
	select {
	case res := <-done:
		return res.Revoked, res.err
	case <-ctx.Done():
		return Revoked{}, ctx.Err()
	}
}

type revokeResult struct {
	Revoked
	err error
}

// revokeNow carries out a RevokeCertificates effect and answers the caller.
func (m *Machine) revokeNow(ctx context.Context, sh *shard, it item, st *State, e RevokeCertificates, now time.Time) {
	res := revokeResult{Revoked: Revoked{DeviceID: it.device, Identity: e.Serial == "", At: now}}
	if e.Serial == "" {
		res.Serials, res.err = m.cfg.Store.RevokeIdentity(ctx, it.device, e.Revocation, now)
	} else {
		var was inventory.Certificate
		was, res.err = m.cfg.Store.RevokeCertificate(ctx, it.device, e.Serial, e.Revocation, now)
		if res.err == nil && was.Status != inventory.StatusRevoked {
			res.Serials = []string{was.Serial}
		}
	}
	if res.err != nil {
		m.cfg.Logger.Error("record revocation", "device", it.device, "serial", e.Serial, "err", res.err)
		m.reload(ctx, sh, it.device, st)
	} else {
		m.cfg.Logger.Info("certificates revoked", "device", it.device, "serials", res.Serials, "identity", res.Identity,
			"reason", e.Revocation.Reason, "request", e.RequestID)
		if m.cfg.Hooks.Revoked != nil {
			m.cfg.Hooks.Revoked(res.Revoked)
		}
		m.changed(it.device)
	}
	if it.revoked != nil {
		it.revoked <- res
	}
}
