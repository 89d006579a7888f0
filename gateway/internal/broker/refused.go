package broker

import (
	"math"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/hearth-pki/hearth/protocol"
)

// refusal is what a refused session (RoleRefused) is told, set once at CONNECT.
type refusal struct {
	code    protocol.Code
	retry   time.Duration
	message string
}

// refuse turns c, an enrollment login Auth refused with r, into a refused session: it
// authenticates (CONNACK 0) with the rights of an enrolling session, stays pending (it counts
// against the pending limits and is shed like any), is never registered as a session of
// its device, and is closed ConnectTimeout after its CONNECT whatever it does. Its CSR is
// answered by answerRefused and reaches nobody else.
func (b *Broker) refuse(c *conn, id Identity, r Refusal) {
	code, retry := r.Reason()
	info, _ := code.Info()
	msg := info.Description
	if retry > 0 {
		msg += "; retry in " + retry.Round(time.Second).String()
	}
	c.refusal = &refusal{code: code, retry: retry, message: protocol.Clip(msg, protocol.MaxTextLen)}
	id.Role = RoleRefused
	c.grant.Store(newGrant(b.cfg.Topics, id))
	c.expire.Store(time.AfterFunc(b.cfg.ConnectTimeout, func() { _ = c.Close() }))
	b.log.Info("mqtt enrollment refused; the agent is told why", "remote", id.Remote, "device", id.DeviceID,
		"code", code, "error", r)
	if b.cfg.Logins != nil {
		b.cfg.Logins(Login{DeviceID: id.DeviceID, Source: c.src.String(), Refused: code, Err: r})
	}
}

// answerRefused answers the CSR of a refused session on its cert topic, to this client
// alone, with the refusal's code.
func (b *Broker) answerRefused(cl *mqtt.Client, c *conn, id Identity, payload []byte) {
	var csr protocol.CSR
	if c.refusal == nil || protocol.Decode(payload, &csr) != nil {
		return
	}
	reply := protocol.Cert{V: protocol.Version, RequestID: csr.RequestID, HubTime: b.cfg.Now().UTC(),
		Error: &protocol.Error{Code: c.refusal.code, Message: c.refusal.message, RetryAfter: int(math.Ceil(c.refusal.retry.Seconds()))}}
	body, err := protocol.Encode(&reply)
	if err != nil {
		b.log.Error("encode a refusal", "device", id.DeviceID, "error", err)
		return
	}
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: b.cfg.Topics.Device(id.DeviceID, protocol.KindCert), Payload: body}
	if err := cl.WritePacket(pk); err != nil {
		b.log.Debug("mqtt refusal not delivered", "device", id.DeviceID, "error", err)
	}
}
