package web

import (
	"net/http"

	"github.com/hearth-pki/hearth/protocol"
)

// caView is the CA page's data: the hub's own certificates with their expiry, and the latest
// rotation with its progress (issue 12).
type caView struct {
	Certs    []caRow
	Rotation *protocol.CARotation
	// Moved and Remaining are the rotation's devices that left the previous intermediate and
	// those still on it; Total the campaign's.
	Moved, Remaining, Total int
}

// caRow is one certificate of the CA page.
type caRow struct {
	Role, Note string
	Cert       protocol.CACertificate
}

// caInfo is the CA as it is now (CAState), else as at the start (CA).
func (s *server) caInfo() CAInfo {
	if s.cfg.CAState != nil {
		return s.cfg.CAState()
	}
	return s.cfg.CA
}

// ca shows the hub's root, intermediates and broker certificate, and the rotation's
// progress. It reads the CA's state and one aggregate of the rotation: nothing per device.
func (s *server) ca(w http.ResponseWriter, r *http.Request) {
	info, err := s.cfg.Admin.CAStatus(r.Context())
	if err != nil {
		s.errorPage(w, r, http.StatusInternalServerError, "The CA could not be read: "+err.Error())
		return
	}
	v := caView{Rotation: info.Rotation}
	add := func(role, note string, c *protocol.CACertificate) {
		if c != nil {
			v.Certs = append(v.Certs, caRow{Role: role, Note: note, Cert: *c})
		}
	}
	add("Root CA", "devices pin its fingerprint", &info.Root)
	add("Previous root CA", "trusted until the root rotation retires it", info.PreviousRoot)
	add("Cross-certificate", "the previous root vouches for the new one", info.Cross)
	add("Intermediate CA", "signs every new certificate and the CRL", &info.Intermediate)
	add("Previous intermediate CA", "trusted while devices still use it", info.Previous)
	if b := s.caInfo(); !b.BrokerNotAfter.IsZero() {
		add("Broker certificate", "what agents see when they connect; renewed automatically",
			&protocol.CACertificate{Subject: b.BrokerSubject, Serial: b.BrokerSerial, NotAfter: b.BrokerNotAfter})
	}
	if rot := info.Rotation; rot != nil {
		v.Total, v.Remaining = rot.Devices, rot.Remaining
		v.Moved = max(rot.Devices-rot.Remaining, 0)
	}
	s.render(w, r, http.StatusOK, "ca.html", page{Title: "Certificate authority", Nav: "ca", Data: v})
}
