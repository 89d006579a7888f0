package broker

import (
	"cmp"
	"slices"
	"sync"
)

// registry tracks the sessions that belong to a device (RoleDevice and RoleEnrolling), for
// Disconnect, Online and the Sessions observer.
//
// Sessions are counted on the connections themselves, not on mochi's OnDisconnect: a session
// is counted from its successful authentication until its socket closes, and mochi closes
// the old socket of a takeover (same client id) only after the new session authenticated.
// Sessions whose CONNACK write fails, which mochi ends without OnDisconnect, are counted out
// too, since their socket closes. The observer is called with mu held, so the calls for one
// device are made in the order the registry saw them.
type registry struct {
	obs         Sessions // nil: nobody to tell
	maxSessions int      // sessions per device kept by excess

	mu       sync.Mutex
	byDevice map[string]map[*conn]struct{}
}

func newRegistry(obs Sessions, maxSessions int) *registry {
	return &registry{obs: obs, maxSessions: maxSessions, byDevice: map[string]map[*conn]struct{}{}}
}

// excess returns the oldest sessions of deviceID beyond maxSessions, never keep, for
// the caller to close: a new session of a device wins over its old ones, so a device that
// lost its connection reconnects at once, and one that opens sessions in a loop holds at
// most maxSessions. The cost is one pass over the device's own sessions.
func (r *registry) excess(deviceID string, keep *conn) []*conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	set := r.byDevice[deviceID]
	if len(set) <= r.maxSessions {
		return nil
	}
	others := make([]*conn, 0, len(set))
	for c := range set {
		if c != keep {
			others = append(others, c)
		}
	}
	slices.SortFunc(others, func(a, b *conn) int { return cmp.Compare(a.id, b.id) })
	return others[:len(set)-r.maxSessions]
}

// add registers c as a session of deviceID before its credentials are checked, so that a
// Disconnect racing a revocation closes it. It returns false if c already closed.
func (r *registry) add(c *conn, deviceID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.ended {
		return false
	}
	set := r.byDevice[deviceID]
	if set == nil {
		set = map[*conn]struct{}{}
		r.byDevice[deviceID] = set
	}
	set[c] = struct{}{}
	c.deviceID = deviceID
	c.registered = true
	return true
}

// remove unregisters c (its CONNECT was refused).
func (r *registry) remove(c *conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unregister(c)
}

func (r *registry) unregister(c *conn) {
	if !c.registered {
		return
	}
	c.registered = false
	set := r.byDevice[c.deviceID]
	delete(set, c)
	if len(set) == 0 {
		delete(r.byDevice, c.deviceID)
	}
}

// online counts c as an online session of its device and tells the observer. It returns
// false if c already closed.
func (r *registry) online(c *conn, id Identity) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.ended || !c.registered {
		return false
	}
	c.online = true
	if r.obs != nil {
		r.obs.SessionUp(id)
	}
	return true
}

// subscribed tells the observer that c, an online device session, subscribed to its command
// topic.
func (r *registry) subscribed(c *conn, id Identity) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.online && r.obs != nil {
		r.obs.Subscribed(id)
	}
}

// closed records that c's socket closed and, if it was an online session, tells the
// observer.
func (r *registry) closed(c *conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c.ended = true
	if !c.registered {
		return
	}
	r.unregister(c)
	if !c.online {
		return
	}
	c.online = false
	if g := c.grant.Load(); g != nil && r.obs != nil {
		r.obs.SessionDown(g.id)
	}
}

// isOnline reports whether deviceID has an online session; r.mu must be held.
func (r *registry) isOnline(deviceID string) bool {
	for c := range r.byDevice[deviceID] {
		if c.online {
			return true
		}
	}
	return false
}

// onlineBesides reports whether deviceID has an online session other than c.
func (r *registry) onlineBesides(deviceID string, c *conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for o := range r.byDevice[deviceID] {
		if o != c && o.online {
			return true
		}
	}
	return false
}

// Online reports whether deviceID has an online device session.
func (r *registry) Online(deviceID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.isOnline(deviceID)
}

// sessions returns the open sessions of deviceID, authenticated or authenticating.
func (r *registry) sessions(deviceID string) []*conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*conn, 0, len(r.byDevice[deviceID]))
	for c := range r.byDevice[deviceID] {
		out = append(out, c)
	}
	return out
}
