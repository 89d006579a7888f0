package broker

import (
	"sync"
)

// presenceEvent is one OnPresence call waiting to be made.
type presenceEvent struct {
	id     Identity
	online bool
}

// registry tracks the sessions that belong to a device (RoleDevice and RoleEnrolling), for
// Disconnect, Online and presence.
//
// Presence is counted on the connections themselves, not on mochi's OnDisconnect: a session
// is counted from its successful authentication until its socket closes, and mochi closes
// the old socket of a takeover (same client id) only after the new session authenticated.
// So a takeover never reports the device offline, whatever the order in which mochi's
// goroutines run (its IsTakenOver flag is set after the old connection is already closing).
// Sessions whose CONNACK write fails, which mochi ends without OnDisconnect, are counted out
// too, since their socket closes.
type registry struct {
	notify bool // queue presence events (Config.OnPresence is set)

	mu       sync.Mutex
	byDevice map[string]map[*conn]struct{}
	events   []presenceEvent
	wake     chan struct{} // capacity 1: events are waiting
}

func newRegistry(notify bool) *registry {
	return &registry{notify: notify, byDevice: map[string]map[*conn]struct{}{}, wake: make(chan struct{}, 1)}
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

// online counts c as an online session of its device and queues an online event. It returns
// false if c already closed.
func (r *registry) online(c *conn, id Identity) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.ended || !c.registered {
		return false
	}
	c.online = true
	r.queue(presenceEvent{id: id, online: true})
	return true
}

// closed records that c's socket closed; if it was the device's last online session, it
// queues an offline event.
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
	if r.isOnline(c.deviceID) {
		return
	}
	if g := c.grant.Load(); g != nil {
		r.queue(presenceEvent{id: g.id, online: false})
	}
}

func (r *registry) queue(e presenceEvent) {
	if !r.notify {
		return
	}
	r.events = append(r.events, e)
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// take returns and clears the queued events.
func (r *registry) take() []presenceEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.events
	r.events = nil
	return e
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

// onlineSerials returns the serials of deviceID's online device sessions.
func (r *registry) onlineSerials(deviceID string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for c := range r.byDevice[deviceID] {
		if g := c.grant.Load(); c.online && g != nil && g.id.Role == RoleDevice {
			out = append(out, g.id.Serial)
		}
	}
	return out
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

// deliver calls fn for queued events, in order, until stop is closed; then it delivers what
// is left and returns.
func (r *registry) deliver(fn func(Identity, bool), stop <-chan struct{}) {
	for {
		select {
		case <-r.wake:
		case <-stop:
			for _, e := range r.take() {
				fn(e.id, e.online)
			}
			return
		}
		for _, e := range r.take() {
			fn(e.id, e.online)
		}
	}
}
