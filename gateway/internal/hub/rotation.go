package hub

import (
	"context"

	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/rotation"
)

// newRotation wires the intermediate rotation (issue 12): the passphrase is resolved again
// each time the root key must open, from the same sources as at start.
func (h *Hub) newRotation() (*rotation.Rotator, error) {
	cfg := h.cfg
	return rotation.New(rotation.Config{CA: h.ca, Dir: cfg.CADir(),
		Passphrase: func() ([]byte, error) {
			pass, _, err := ca.ResolvePassphrase(cfg.DataDir, ca.PassphraseOptions{File: cfg.CAPassphraseFile, Env: cfg.CAPassphrase,
				Store: cfg.CAPassphraseStore, GenerateBeside: cfg.Addon})
			return pass, err
		},
		Store: h.store, Campaigns: h.renewal, CRL: h.crl, Switched: h.caSwitched, Notify: h.notify, Now: h.now,
		Logger: h.log.With("part", "intermediate rotation")})
}

// caSwitched follows a change of the intermediates in force: the bundle retained on the CA
// topic first (so agents trust what signs the rest), the broker's certificate from the
// intermediate in force, the CRL, and the Home Assistant export.
func (h *Hub) caSwitched(ctx context.Context) {
	h.publish(h.topics.CA(), h.ca.ChainPEM(), true)
	if _, err := h.serverCert.Reissue(h.now()); err != nil {
		h.log.Error("broker certificate not reissued after the intermediate changed", "err", err)
	}
	h.regenerateCRL(ctx)
	if err := h.exportCA(); err != nil {
		h.log.Warn("CA bundle not exported", "err", err)
	}
}

// SetHostnames puts a broker certificate for hosts in service at once (a hostnames change
// without a restart): new connections get it, connected agents keep their sessions. On error
// the current certificate stays.
func (h *Hub) SetHostnames(hosts []string) error {
	leaf, err := h.serverCert.SetHosts(hosts, h.now())
	if err != nil {
		return err
	}
	h.log.Info("broker certificate reissued for new host names", "hosts", hosts, "serial", leaf.SerialNumber.Text(16))
	return nil
}
