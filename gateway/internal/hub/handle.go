package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/atomicfile"
	"github.com/hearth-pki/hearth/gateway/internal/broker"
	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/issuer"
	"github.com/hearth-pki/hearth/protocol"
)

// EventFindingDuplicateSession is the finding raised when one certificate is presented on
// two connections at once.
const EventFindingDuplicateSession = "finding.duplicate_session"

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// handle receives every message the broker accepted on a hub-bound topic.
func (h *Hub) handle(ctx context.Context, from broker.Identity, t protocol.Topic, payload []byte) {
	switch t.Kind {
	case protocol.KindCSR, protocol.KindCommit:
		s := issuer.Sender{DeviceID: from.DeviceID, Serial: from.Serial}
		if from.Role == broker.RoleEnrolling {
			s.Serial, s.TokenHash = "", h.checker.TokenHash(from.DeviceID)
		}
		if t.Kind == protocol.KindCSR {
			h.issuer.HandleCSR(ctx, s, payload)
		} else {
			h.issuer.HandleCommit(ctx, s, payload)
		}
		h.deviceChanged(from.DeviceID)
	case protocol.KindHealth:
		h.health(ctx, from.DeviceID, payload)
	case protocol.KindBridgeRequest:
		actor := "mqtt:" + from.Username
		resp := h.admin.Do(ctx, actor, t.Op, payload)
		b, err := json.Marshal(resp)
		if err == nil {
			h.publish(h.topics.BridgeResponse(t.Op), b, false)
		}
	}
}

// presence records a device session coming or going. The active certificate is the one the
// device last proved on a TLS session: a device back on a superseded certificate rolled back,
// and the inventory follows it.
func (h *Hub) presence(id broker.Identity, online bool) {
	if id.Role != broker.RoleDevice {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	now := h.now()
	if err := h.store.SetOnline(ctx, id.DeviceID, online, now); err != nil {
		h.log.Warn("record presence", "device", id.DeviceID, "err", err)
		return
	}
	defer h.deviceChanged(id.DeviceID)
	if !online || id.Serial == "" {
		return
	}
	h.renewal.DeviceOnline(id.DeviceID)
	if n := countOf(h.broker.OnlineSerials(id.DeviceID), id.Serial); n > 1 {
		h.notify(protocol.Event{V: protocol.Version, Type: EventFindingDuplicateSession, Time: now.UTC(), DeviceID: id.DeviceID,
			Message: fmt.Sprintf("certificate %s is presented on %d connections at once: a cloned device or a leaked key", id.Serial, n),
			Data:    map[string]string{"serial": id.Serial}})
		if _, err := h.store.AppendEvent(ctx, inventory.Event{Time: now, Kind: EventFindingDuplicateSession, DeviceID: id.DeviceID,
			Message: fmt.Sprintf("certificate %s on %d connections at once", id.Serial, n), Data: map[string]string{"serial": id.Serial}}); err != nil {
			h.log.Warn("record finding", "err", err)
		}
	}
	cert, err := h.store.Certificate(ctx, id.Serial)
	if err != nil || cert.Status != inventory.StatusSuperseded {
		return
	}
	prev, changed, err := h.store.Activate(ctx, id.DeviceID, id.Serial, now)
	if err != nil || !changed {
		return
	}
	h.notify(protocol.Event{V: protocol.Version, Type: "renewal.rolled_back", Time: now.UTC(), DeviceID: id.DeviceID,
		Message: fmt.Sprintf("device came back with its previous certificate %s; %s recorded as rolled back", id.Serial, prev),
		Data:    map[string]string{"serial": id.Serial, "previous": prev}})
	h.issuer.PublishRenewal(ctx, cert, now)
}

// health records a health report and raises a finding when it contradicts the inventory.
func (h *Hub) health(ctx context.Context, device string, payload []byte) {
	var r protocol.Health
	if err := protocol.Decode(payload, &r); err != nil {
		h.log.Info("health report refused", "device", device, "err", err)
		return
	}
	now := h.now()
	skew := r.DeviceTime.Sub(now).Round(time.Second)
	if r.DeviceTime.IsZero() {
		skew = 0
	}
	err := h.store.UpdateHealth(ctx, device, inventory.Health{ReportedSerial: r.Serial, ReportedNotAfter: r.NotAfter,
		ChainOK: r.ChainOK, ClockSkew: skew, AgentVersion: r.AgentVersion, LastError: r.LastError, At: now})
	if err != nil {
		h.log.Warn("record health", "device", device, "err", err)
		return
	}
	// A report arrives over a live session: the device was seen now.
	if err := h.store.SetOnline(ctx, device, true, now); err != nil {
		h.log.Warn("record last seen", "device", device, "err", err)
	}
	if active, err := h.store.ActiveCertificate(ctx, device); err == nil && r.Serial != "" && r.Serial != active.Serial {
		h.notify(protocol.Event{V: protocol.Version, Type: "finding.unexpected_serial", Time: now.UTC(), DeviceID: device,
			Message: fmt.Sprintf("device reports serial %s, the active certificate is %s", r.Serial, active.Serial)})
	}
	if r.Issuer != "" && r.Issuer != h.ca.Intermediate().Subject.String() {
		h.notify(protocol.Event{V: protocol.Version, Type: "finding.unexpected_issuer", Time: now.UTC(), DeviceID: device,
			Message: fmt.Sprintf("device reports issuer %q, not the hub's intermediate", r.Issuer)})
	}
	h.deviceChanged(device)
}

// notify publishes an event on bridge/event, and tells the renewal scheduler of commits and
// rollbacks.
func (h *Hub) notify(e protocol.Event) {
	switch e.Type {
	case inventory.EventCertActivated:
		h.renewal.Committed(e.DeviceID)
	case "renewal.rolled_back":
		h.renewal.Failed(e.DeviceID, "rolled_back")
	}
	b, err := protocol.Encode(&e)
	if err != nil {
		h.log.Error("encode event", "err", err)
		return
	}
	h.publish(h.topics.Bridge(protocol.KindBridgeEvent), b, false)
}

func (h *Hub) publish(topic string, payload []byte, retain bool) {
	if err := h.broker.Publish(topic, payload, retain); err != nil {
		h.log.Warn("publish", "topic", topic, "err", err)
	}
}

// publishStatic publishes the retained hub topics that change only with the hub: state, info,
// the CA chain and the CRL.
func (h *Hub) publishStatic(ctx context.Context) {
	h.publish(h.topics.Bridge(protocol.KindBridgeState), []byte(protocol.Online), true)
	info := protocol.BridgeInfo{V: protocol.Version, Version: h.version, Protocol: protocol.Version,
		CAFingerprint: h.ca.Fingerprint(), Broker: "mqtts://" + h.cfg.Advertise, CAExpires: h.ca.Root().NotAfter, Started: h.started}
	if b, err := protocol.Encode(&info); err == nil {
		h.publish(h.topics.Bridge(protocol.KindBridgeInfo), b, true)
	}
	h.publish(h.topics.CA(), h.ca.ChainPEM(), true)
	h.publishCRL(ctx)
}

// publishCRL regenerates the CRL from the inventory's revoked certificates, with a CRL
// number one above the last, and publishes it retained and as DataDir/crl.pem.
func (h *Hub) publishCRL(ctx context.Context) {
	h.crlMu.Lock()
	defer h.crlMu.Unlock()
	revoked, err := h.store.Revoked(ctx)
	if err != nil {
		h.log.Error("list revoked certificates", "err", err)
		return
	}
	entries := make([]ca.Revoked, 0, len(revoked))
	for _, c := range revoked {
		n, ok := new(big.Int).SetString(c.Serial, 16)
		if !ok {
			continue
		}
		entries = append(entries, ca.Revoked{Serial: n, At: c.RevokedAt})
	}
	number := big.NewInt(1)
	if s, err := h.store.Setting(ctx, "crl_number"); err == nil {
		if n, ok := new(big.Int).SetString(s, 10); ok {
			number.Add(n, big.NewInt(1))
		}
	} else if !errors.Is(err, inventory.ErrNotFound) {
		h.log.Error("read CRL number", "err", err)
		return
	}
	crl, err := h.ca.CRL(entries, number, h.now(), 7*24*time.Hour)
	if err != nil {
		h.log.Error("generate CRL", "err", err)
		return
	}
	if err := h.store.SetSetting(ctx, "crl_number", number.String()); err != nil {
		h.log.Error("store CRL number", "err", err)
		return
	}
	if err := atomicfile.WriteFile(filepath.Join(h.cfg.DataDir, "crl.pem"), crl, 0o644); err != nil {
		h.log.Warn("write crl.pem", "err", err)
	}
	h.publish(h.topics.CRL(), crl, true)
}

// publishLoop republishes the CRL daily so it never goes stale. (The fleet's topics are the
// fleet view's.)
func (h *Hub) publishLoop(ctx context.Context) error {
	crl := time.NewTicker(24 * time.Hour)
	defer crl.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-crl.C:
			h.publishCRL(ctx)
		}
	}
}
