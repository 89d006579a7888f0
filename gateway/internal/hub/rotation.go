package hub

import (
	"context"
	"crypto/x509"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/rotation"
	"github.com/hearth-pki/hearth/gateway/internal/web"
	"github.com/hearth-pki/hearth/protocol"
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
	h.caChanged(nil)
}

// caChanged follows a change of the hub's own certificates (a rotation's step, a broker
// certificate renewed or reissued, new host names): bridge/info with the root's expiry,
// and the hub's Home Assistant state with the CA dates, published again at once. The
// dashboard reads them at each page (webCA). It is servercert.Config.Changed.
func (h *Hub) caChanged(*x509.Certificate) {
	h.publishInfo()
	if h.view != nil {
		h.view.RefreshSummary()
	}
}

// publishInfo publishes the retained bridge/info.
func (h *Hub) publishInfo() {
	info := protocol.BridgeInfo{V: protocol.Version, Version: h.version, Protocol: protocol.Version,
		CAFingerprint: h.ca.Fingerprint(), Broker: "mqtts://" + h.cfg.Advertise, CAExpires: h.ca.Root().NotAfter, Started: h.started}
	if b, err := protocol.Encode(&info); err == nil {
		h.publish(h.topics.Bridge(protocol.KindBridgeInfo), b, true)
	}
}

// caDates is the expiry of the intermediate in force, the root and the broker's certificate
// now, for Home Assistant.
func (h *Hub) caDates() (intermediate, root, broker time.Time) {
	return h.ca.Intermediate().NotAfter, h.ca.Root().NotAfter, h.serverCert.Current().NotAfter
}

// webCA is the dashboard's CA as it is now.
func (h *Hub) webCA() web.CAInfo {
	b := h.serverCert.Current()
	return web.CAInfo{RootNotAfter: h.ca.Root().NotAfter, IntermediateNotAfter: h.ca.Intermediate().NotAfter, Fingerprint: h.ca.Fingerprint(),
		BrokerSubject: b.Subject.String(), BrokerSerial: b.SerialNumber.Text(16), BrokerNotAfter: b.NotAfter}
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
