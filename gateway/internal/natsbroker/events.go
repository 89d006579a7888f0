package natsbroker

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/hearth-pki/hearth/gateway/internal/broker"
)

// callout answers one authorization request of the server. A refusal is an answer too
// (with the reason, which the server logs), so the client is refused at once, not after the
// server's timeout.
func (b *Broker) callout(ctx context.Context, m *nats.Msg) {
	req, err := jwt.DecodeAuthorizationRequestClaims(string(m.Data))
	if err != nil {
		b.log.Warn("auth callout: undecodable request", "err", err)
		return // the server times the client out
	}
	conn := b.nextConn()
	actx, cancel := context.WithTimeout(ctx, b.cfg.ConnectTimeout)
	defer cancel()
	d, err := b.authorize(actx, &req.AuthorizationRequest, conn)
	resp := jwt.NewAuthorizationResponseClaims(req.UserNkey)
	resp.Audience = req.Server.ID
	info := req.ClientInformation
	if err != nil {
		b.log.Info("mqtt connection refused", "remote", info.Host, "client", info.MQTT, "username", req.ConnectOptions.Username,
			"server", req.Server.Name, "error", err)
		resp.Error = err.Error()
	} else {
		uc := jwt.NewUserClaims(req.UserNkey)
		uc.Audience = b.cfg.Account
		uc.Name = formatName(d.s)
		uc.Pub.Allow.Add(d.pub...)
		uc.Sub.Allow.Add(d.sub...)
		if d.expires > 0 {
			uc.Expires = b.cfg.Now().Add(d.expires).Unix()
		}
		if resp.Jwt, err = uc.Encode(b.cfg.Issuer); err != nil {
			b.log.Error("auth callout: sign the user", "err", err)
			resp.Jwt, resp.Error = "", "the hub could not sign the session"
		} else {
			b.log.Debug("mqtt client authenticated", "remote", info.Host, "client", info.MQTT, "role", d.s.id.Role,
				"device", d.s.id.DeviceID, "serial", d.s.id.Serial, "server", req.Server.Name)
			if d.s.id.DeviceID != "" {
				b.mu.Lock()
				b.pending[d.s.id.DeviceID] = pending{s: d.s, at: b.cfg.Now()}
				b.mu.Unlock()
			}
		}
	}
	token, err := resp.Encode(b.cfg.Issuer)
	if err != nil {
		b.log.Error("auth callout: sign the answer", "err", err)
		return
	}
	if err := m.Respond([]byte(token)); err != nil {
		b.log.Warn("auth callout: answer", "err", err)
	}
}

// clientEvent is the part of the server's connect and disconnect events the hub reads.
type clientEvent struct {
	Server struct {
		ID string `json:"id"`
	} `json:"server"`
	Client struct {
		ID   uint64 `json:"id"`
		User string `json:"user"`
	} `json:"client"`
}

// event follows one presence event: a session connected or disconnected, or a node shut
// down.
func (b *Broker) event(m *nats.Msg) {
	if strings.HasSuffix(m.Subject, ".SHUTDOWN") {
		id := strings.TrimSuffix(strings.TrimPrefix(m.Subject, "$SYS.SERVER."), ".SHUTDOWN")
		if n := b.reg.serverGone(id); n > 0 {
			b.log.Info("nats node shut down; its sessions are down", "server", id, "sessions", n)
		}
		return
	}
	var e clientEvent
	if err := json.Unmarshal(m.Data, &e); err != nil {
		b.log.Warn("nats event undecodable", "subject", m.Subject, "err", err)
		return
	}
	s, err := parseName(e.Client.User)
	if err != nil {
		return // the hub's own connections, or a user the callout did not name
	}
	at := where{server: e.Server.ID, cid: e.Client.ID}
	if strings.HasSuffix(m.Subject, ".DISCONNECT") {
		b.reg.down(s)
		return
	}
	b.mu.Lock()
	if p, ok := b.pending[s.id.DeviceID]; ok && p.s.id.Conn <= s.id.Conn {
		delete(b.pending, s.id.DeviceID)
	}
	c, dropped := b.dropped[s.id.DeviceID]
	b.mu.Unlock()
	b.reg.up(s, at)
	if dropped && s.id.Conn <= c.conn {
		b.log.Info("mqtt session of a disconnected device kicked on arrival", "device", s.id.DeviceID)
		b.kick(at)
		return
	}
	if s.id.Role == broker.RoleAdmin {
		return
	}
	b.markLate(s.id.DeviceID)
	_, excess := b.reg.sessions(s.id.DeviceID, b.cfg.MaxSessionsPerDevice)
	for _, w := range excess {
		b.log.Info("mqtt session closed: too many sessions of the device", "device", s.id.DeviceID, "limit", b.cfg.MaxSessionsPerDevice)
		b.kick(w)
	}
}

// watchNodes asks every second which nodes are alive; a node that holds sessions and did
// not answer missesToGone times in a row died (SIGKILL, power, network), and its sessions
// are counted down: its clients reconnect to another node.
func (b *Broker) watchNodes(ctx context.Context, sys *nats.Conn) {
	misses := map[string]int{}
	tick := time.NewTicker(pingInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		alive, ok := b.ping(ctx, sys)
		if !ok {
			continue // our own connection is down: that says nothing about the nodes
		}
		for _, id := range b.reg.servers() {
			if id == "" || alive[id] {
				delete(misses, id)
				continue
			}
			if misses[id]++; misses[id] >= missesToGone {
				delete(misses, id)
				n := b.reg.serverGone(id)
				b.log.Warn("nats node stopped answering; its sessions are down", "server", id, "sessions", n)
			}
		}
	}
}

// ping returns the ids of the nodes that answered $SYS.REQ.SERVER.PING within pingWait.
func (b *Broker) ping(ctx context.Context, sys *nats.Conn) (map[string]bool, bool) {
	if !sys.IsConnected() {
		return nil, false
	}
	inbox := nats.NewInbox()
	replies := make(chan *nats.Msg, 64)
	sub, err := sys.ChanSubscribe(inbox, replies)
	if err != nil {
		return nil, false
	}
	defer sub.Unsubscribe()
	if err := sys.PublishRequest("$SYS.REQ.SERVER.PING", inbox, nil); err != nil {
		return nil, false
	}
	alive := map[string]bool{}
	wait := time.NewTimer(pingWait)
	defer wait.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, false
		case <-wait.C:
			return alive, len(alive) > 0
		case m := <-replies:
			var e clientEvent // a statsz reply has the same "server" object
			if json.Unmarshal(m.Data, &e) == nil && e.Server.ID != "" {
				alive[e.Server.ID] = true
			}
		}
	}
}
