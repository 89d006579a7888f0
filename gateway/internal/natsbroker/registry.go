package natsbroker

import (
	"cmp"
	"slices"
	"sync"

	"github.com/hearth-pki/hearth/gateway/internal/broker"
)

// where is the node and the server's client id of a session: what a kick names.
type where struct {
	server string // the NATS server's id
	cid    uint64
}

// live is a session the server reported connected.
type live struct {
	s          session
	at         where
	subscribed bool
}

// registry holds the sessions the cluster reported, by device and by node, for Online,
// Disconnect, attribution of messages and the Sessions observer. Every replica keeps its
// own, fed by the same connect and disconnect events. The observer is called with mu held,
// so the calls for one device are made in the order the events arrived.
type registry struct {
	obs broker.Sessions // nil: nobody to tell

	mu       sync.Mutex
	byDevice map[string]map[uint64]*live // device id → conn → session
	byServer map[string]map[uint64]*live // server id → conn → session
	admins   map[uint64]*live
}

func newRegistry(obs broker.Sessions) *registry {
	return &registry{obs: obs, byDevice: map[string]map[uint64]*live{}, byServer: map[string]map[uint64]*live{},
		admins: map[uint64]*live{}}
}

// up records a session the server reported connected and tells the observer of a device
// session. It returns false for one it already knew.
func (r *registry) up(s session, at where) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.id.Role == broker.RoleAdmin {
		if _, ok := r.admins[s.id.Conn]; ok {
			return false
		}
		l := &live{s: s, at: at}
		r.admins[s.id.Conn] = l
		r.index(r.byServer, at.server, l)
		return true
	}
	if l, ok := r.byDevice[s.id.DeviceID][s.id.Conn]; ok {
		if l.at.server == "" && at.server != "" { // promoted by a message; now we know where
			unindex(r.byServer, "", s.id.Conn)
			l.at = at
			r.index(r.byServer, at.server, l)
		}
		return false
	}
	l := &live{s: s, at: at}
	r.index(r.byDevice, s.id.DeviceID, l)
	r.index(r.byServer, at.server, l)
	if r.device(l) && r.obs != nil {
		r.obs.SessionUp(s.id)
	}
	return true
}

func (r *registry) index(m map[string]map[uint64]*live, key string, l *live) {
	set := m[key]
	if set == nil {
		set = map[uint64]*live{}
		m[key] = set
	}
	set[l.s.id.Conn] = l
}

func unindex(m map[string]map[uint64]*live, key string, conn uint64) {
	delete(m[key], conn)
	if len(m[key]) == 0 {
		delete(m, key)
	}
}

// device reports whether l is a device session the observer hears of (not a recovery one).
func (r *registry) device(l *live) bool { return l.s.id.Role == broker.RoleDevice && !l.s.id.Expired }

// down records that a session closed and tells the observer of a device session.
func (r *registry) down(s session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.remove(s)
}

func (r *registry) remove(s session) {
	var l *live
	if s.id.Role == broker.RoleAdmin {
		l = r.admins[s.id.Conn]
		delete(r.admins, s.id.Conn)
	} else {
		l = r.byDevice[s.id.DeviceID][s.id.Conn]
		unindex(r.byDevice, s.id.DeviceID, s.id.Conn)
	}
	if l == nil {
		return
	}
	unindex(r.byServer, l.at.server, s.id.Conn)
	if r.device(l) && r.obs != nil {
		r.obs.SessionDown(l.s.id)
	}
}

// serverGone records that a node died: every session it held is down. The cost is one
// pass over that node's sessions, once.
func (r *registry) serverGone(server string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	set := r.byServer[server]
	gone := make([]*live, 0, len(set))
	for _, l := range set {
		gone = append(gone, l)
	}
	slices.SortFunc(gone, func(a, b *live) int { return cmp.Compare(a.s.id.Conn, b.s.id.Conn) })
	for _, l := range gone {
		r.remove(l.s)
	}
	return len(gone)
}

// servers returns the ids of the nodes that hold sessions.
func (r *registry) servers() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.byServer))
	for s := range r.byServer {
		out = append(out, s)
	}
	return out
}

// newest returns the device's newest session (the largest conn), which its messages are
// attributed to, and marks it subscribed when state is set; subscribedNow reports whether
// it was not before (the observer was then told).
func (r *registry) newest(deviceID string, state bool) (s session, subscribedNow, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var best *live
	for _, l := range r.byDevice[deviceID] {
		if best == nil || l.s.id.Conn > best.s.id.Conn {
			best = l
		}
	}
	if best == nil {
		return session{}, false, false
	}
	if state && !best.subscribed && r.device(best) {
		best.subscribed = true
		if r.obs != nil {
			r.obs.Subscribed(best.s.id)
		}
		return best.s, true, true
	}
	return best.s, false, true
}

// onlyAdmin returns the admin session when exactly one is online: a bridge request carries
// no sender, and with several admins online the hub cannot tell whose role applies.
func (r *registry) onlyAdmin() (session, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.admins) != 1 {
		return session{}, false
	}
	for _, l := range r.admins {
		return l.s, true
	}
	return session{}, false
}

// sessions returns where the device's sessions are, and excess those beyond max, oldest
// first.
func (r *registry) sessions(deviceID string, max int) (all, excess []where) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ls := make([]*live, 0, len(r.byDevice[deviceID]))
	for _, l := range r.byDevice[deviceID] {
		ls = append(ls, l)
	}
	slices.SortFunc(ls, func(a, b *live) int { return cmp.Compare(a.s.id.Conn, b.s.id.Conn) })
	for i, l := range ls {
		all = append(all, l.at)
		if max > 0 && i < len(ls)-max {
			excess = append(excess, l.at)
		}
	}
	return all, excess
}

// online reports whether deviceID has a device session (not a recovery one).
func (r *registry) online(deviceID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.byDevice[deviceID] {
		if r.device(l) {
			return true
		}
	}
	return false
}
