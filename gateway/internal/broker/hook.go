package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/hearth-pki/hearth/protocol"
)

// hook is the broker's only mochi hook. mochi ORs the answers of all auth and ACL hooks,
// so no other hook (least of all mochi's allow-all) may ever be added beside it.
type hook struct {
	mqtt.HookBase
	b *Broker
}

// ID names the hook in mochi's logs.
func (h *hook) ID() string { return "hearth" }

// Provides lists the hook methods mochi should call.
func (h *hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPublish, mqtt.OnWill, mqtt.OnSubscribed:
		return true
	}
	return false
}

// connOf returns the hearth connection behind a mochi client; false for the inline client.
func connOf(cl *mqtt.Client) (*conn, bool) {
	c, ok := cl.Net.Conn.(*conn)
	return c, ok
}

// OnConnectAuthenticate decides a CONNECT. A refusal makes mochi answer "bad username or
// password" (3.1.1: "not authorized") and close the connection.
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	c, ok := connOf(cl)
	if !ok {
		return false
	}
	id, err := h.b.authenticate(c, cl, pk)
	if err != nil {
		h.b.log.Info("mqtt connection refused", "remote", cl.Net.Remote, "client", cl.ID,
			"username", string(pk.Connect.Username), "error", err)
		return false
	}
	h.b.log.Debug("mqtt client authenticated", "remote", cl.Net.Remote, "client", cl.ID,
		"role", id.Role, "device", id.DeviceID, "serial", id.Serial)
	return true
}

// authenticate resolves and checks the identity of a CONNECT, and on success attaches the
// session's grant to c.
func (b *Broker) authenticate(c *conn, cl *mqtt.Client, pk packets.Packet) (Identity, error) {
	username, password := string(pk.Connect.Username), string(pk.Connect.Password)
	id := Identity{Username: username, Remote: cl.Net.Remote, Conn: c.id}
	ctx, cancel := context.WithTimeout(WithSource(b.ctx, c.src.String()), b.cfg.ConnectTimeout)
	defer cancel()
	switch {
	case c.leaf != nil:
		dev, err := protocol.DeviceIDFromCert(c.leaf)
		if err != nil {
			return id, fmt.Errorf("%w: %w", ErrRefused, err)
		}
		if username != "" && username != dev {
			return id, fmt.Errorf("%w: username %q differs from the certificate's device %q", ErrRefused, username, dev)
		}
		id.Role, id.DeviceID, id.Serial = RoleDevice, dev, serialOf(c.leaf)
		id.Expired = b.cfg.Now().After(c.leaf.NotAfter)
	case username == "" || password == "":
		return id, fmt.Errorf("%w: no client certificate and no username and password", ErrRefused)
	case b.auth.Admin(ctx, username, password):
		id.Role = RoleAdmin
	default:
		if err := protocol.ValidateDeviceID(username); err != nil {
			return id, fmt.Errorf("%w: username is neither an admin nor a device id: %w", ErrRefused, err)
		}
		id.Role, id.DeviceID = RoleEnrolling, username
	}
	if err := checkClientID(id, cl.ID, cl.Properties.Props.AssignedClientID != ""); err != nil {
		return id, err
	}
	if err := checkWill(b.cfg.Topics, id, pk.Connect.WillFlag, pk.Connect.WillTopic, pk.Connect.WillPayload); err != nil {
		return id, err
	}
	if id.Role == RoleAdmin {
		if err := b.adm.establish(c); err != nil {
			return id, err
		}
		c.grant.Store(newGrant(b.cfg.Topics, id))
		return id, nil
	}

	// Register before asking Auth, so that a Disconnect that follows a revocation either
	// finds this session or happens before Auth answers (and Auth refuses).
	if !b.reg.add(c, id.DeviceID) {
		return id, fmt.Errorf("%w: connection closed during CONNECT", ErrRefused)
	}
	var err error
	if id.Role == RoleDevice {
		err = b.auth.Certificate(ctx, id.DeviceID, id.Serial)
	} else {
		err = b.auth.Token(ctx, id.DeviceID, password)
	}
	var refusal Refusal
	if err != nil && id.Role == RoleEnrolling && errors.As(err, &refusal) {
		b.reg.remove(c)
		b.refuse(c, id, refusal)
		return id, nil
	}
	if err != nil {
		b.reg.remove(c)
		return id, fmt.Errorf("%w: %s %q: %w", ErrRefused, id.Role, id.DeviceID, err)
	}
	if id.Role == RoleEnrolling && b.cfg.Logins != nil {
		b.cfg.Logins(Login{DeviceID: id.DeviceID, Source: c.src.String()})
	}
	if err := b.adm.establish(c); err != nil {
		b.reg.remove(c)
		return id, err
	}
	// The device's oldest sessions beyond MaxSessionsPerDevice give way to this one.
	for _, old := range b.reg.excess(id.DeviceID, c) {
		b.log.Info("mqtt session closed: too many sessions of the device", "device", id.DeviceID,
			"closed", old.id, "limit", b.cfg.Limits.MaxSessionsPerDevice)
		_ = old.Close()
	}
	c.grant.Store(newGrant(b.cfg.Topics, id))
	if id.Role == RoleDevice && !id.Expired && !b.reg.online(c, id) {
		return id, fmt.Errorf("%w: connection closed during CONNECT", ErrRefused)
	}
	return id, nil
}

// OnACLCheck answers mochi's read checks (SUBSCRIBE filters and every delivered message)
// from the session's grant in memory. Write checks always pass here: mochi disconnects a
// 3.1.1 client whose QoS 1 publish fails this check, and paho then re-sends it after
// reconnecting, forever; OnPublish refuses such publishes instead.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	c, ok := connOf(cl)
	if !ok {
		return false
	}
	if write {
		return true
	}
	g := c.grant.Load()
	return g != nil && g.mayRead(topic)
}

// OnPublish decides every publish: the inline client (the hub) may publish anything;
// others are rate-limited and checked against their grant. A refused publish returns
// packets.CodeSuccessIgnore: mochi acknowledges it and drops it (no retain, no delivery).
// An allowed publish to the hub is handed to the Handler, and its retain flag is cleared
// unless it is a device's state.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	b := h.b
	c, ok := connOf(cl)
	if !ok {
		return pk, packets.CodeSuccessIgnore
	}
	g := c.grant.Load()
	if g == nil {
		return pk, packets.CodeSuccessIgnore
	}
	if !c.bucket.allow(b.cfg.Now(), b.cfg.PublishRate, b.cfg.PublishBurst) {
		b.log.Debug("mqtt publish dropped: rate limit", "client", cl.ID, "role", g.id.Role,
			"device", g.id.DeviceID, "topic", pk.TopicName)
		return pk, packets.CodeSuccessIgnore
	}
	t, err := b.cfg.Topics.Parse(pk.TopicName)
	if err != nil || !g.mayPublish(t) {
		b.log.Info("mqtt publish denied", "client", cl.ID, "role", g.id.Role,
			"device", g.id.DeviceID, "topic", pk.TopicName)
		return pk, packets.CodeSuccessIgnore
	}
	if g.id.Role == RoleRefused {
		b.answerRefused(cl, c, g.id, pk.Payload)
		return pk, packets.CodeSuccessIgnore
	}
	if pk.FixedHeader.Retain && !mayRetain(t) {
		pk.FixedHeader.Retain = false
	}
	if err := checkPayload(t.Kind, pk.Payload); err != nil {
		// Nothing that breaks its topic's schema is delivered or retained. A request is
		// still handed to the hub, which answers it with the error's code when it can read
		// a request id from it; a state is only dropped.
		b.log.Info("mqtt publish refused: invalid payload", "client", cl.ID, "role", g.id.Role,
			"device", g.id.DeviceID, "topic", pk.TopicName, "bytes", len(pk.Payload), "error", err)
		if t.Kind != protocol.KindState {
			b.handle(b.ctx, g.id, t, bytes.Clone(pk.Payload))
		}
		return pk, packets.CodeSuccessIgnore
	}
	b.handle(b.ctx, g.id, t, bytes.Clone(pk.Payload))
	return pk, nil
}

// OnSubscribed tells the Sessions observer when a device session subscribed to its command
// topic: mochi calls it once the subscription is in place, so a command published from then
// on reaches the device. (Device subscriptions name exact topics: no wildcard can match.)
func (h *hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, reasonCodes []byte) {
	c, ok := connOf(cl)
	if !ok {
		return
	}
	g := c.grant.Load()
	if g == nil || g.id.Role != RoleDevice {
		return
	}
	cmd := h.b.cfg.Topics.Device(g.id.DeviceID, protocol.KindCmd)
	for i, f := range pk.Filters {
		if f.Filter == cmd && i < len(reasonCodes) && reasonCodes[i] < packets.ErrUnspecifiedError.Code {
			h.b.reg.subscribed(c, g.id)
			return
		}
	}
}

// OnWill keeps a dying session's Will (the device's "offline" state) from overwriting the
// retained state while the device has another session online: after a takeover by the same
// client id, or a reconnect with a new certificate while the old connection was still
// timing out. The Will is then still delivered, but not retained.
func (h *hook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	c, ok := connOf(cl)
	if !ok {
		return will, nil
	}
	if g := c.grant.Load(); g != nil && g.id.Role == RoleDevice && (g.id.Expired || h.b.reg.onlineBesides(g.id.DeviceID, c)) {
		will.Retain = false // a recovery session never went online
	}
	return will, nil
}
