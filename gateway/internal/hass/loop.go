package hass

import (
	"context"
	"maps"
	"slices"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// loop is Run's state; only Run's goroutine touches it.
type loop struct {
	p      *Publisher
	client mqtt.Client

	online     bool   // the connection is up, as of the last connection change
	subscribed bool   // the subscriptions of the current connection are in place
	announced  bool   // "online" is published on the availability topic for this connection
	needFull   bool   // a full publication failed: the next sync is full too
	seen       uint64 // the Publisher's connects counter when last handled

	published ledger              // what the broker acknowledged as retained
	retry     map[string]struct{} // object ids to sync again (taken from dirty, or failed)
	version   string              // the hub version of the last complete publication
}

// connectionChanged reacts to the connection going up or down. On a new connection it
// subscribes, announces the hub online and publishes everything again. It reports false if
// that should be retried (with connectionChanged again while ready is false).
func (l *loop) connectionChanged(ctx context.Context) bool {
	if !l.client.IsConnectionOpen() {
		l.online, l.subscribed, l.announced = false, false, false
		return true
	}
	if n := l.p.connects.Load(); !l.online || n != l.seen {
		// A new connection: clean session, and the broker may have lost its retained store.
		l.online, l.subscribed, l.announced, l.seen = true, false, false, n
		l.needFull = true
	}
	if !l.subscribed {
		if err := l.subscribe(ctx); err != nil {
			l.p.log.Warn("cannot subscribe on home assistant's broker; retrying", "err", err)
			return false
		}
		l.subscribed = true
	}
	if !l.announced {
		tok := l.client.Publish(l.p.t.availability(), 1, true, []byte("online"))
		if err := waitTokens(ctx, time.Now().Add(publishTimeout), tok); err != nil {
			l.p.log.Warn("cannot publish the hub's availability; retrying", "err", err)
			return false
		}
		l.announced = true
	}
	return l.sync(ctx, false)
}

// ready reports whether the current connection is fully set up.
func (l *loop) ready() bool { return l.online && l.subscribed && l.announced }

// subscribe subscribes to Home Assistant's birth messages, the bridge requests and Hearth's
// own discovery configs. A subscription the broker refuses is logged and left out: the rest
// still works.
func (l *loop) subscribe(ctx context.Context) error {
	t := l.p.t
	subs := []struct {
		filter  string
		handler mqtt.MessageHandler
		loses   string
	}{
		{t.birth(), l.p.onBirth, "configs are not re-published when home assistant restarts"},
		{t.requestFilter(), l.p.onRequest, "bridge requests and the renew buttons do not work"},
		{t.configFilter(), l.p.onConfig, "entities of devices removed while the hub was down stay"},
	}
	toks := make([]mqtt.Token, len(subs))
	for i, s := range subs {
		toks[i] = l.client.Subscribe(s.filter, 1, s.handler)
	}
	if err := waitTokens(ctx, time.Now().Add(publishTimeout), toks...); err != nil {
		return err
	}
	for i, s := range subs {
		st, ok := toks[i].(*mqtt.SubscribeToken)
		if !ok {
			continue
		}
		if code, ok := st.Result()[s.filter]; !ok || code == 0x80 {
			l.p.log.Warn("home assistant's broker refused a subscription", "filter", s.filter, "consequence", s.loses)
		}
	}
	return nil
}

// sync publishes what changed since the last sync: the objects marked dirty (and those whose
// publication failed), and the stale configs to clear. With full set, or after a new
// connection, it publishes every object again: the broker may have lost its retained store,
// or Home Assistant asked. It reports false if some publication failed and a retry is due.
func (l *loop) sync(ctx context.Context, full bool) bool {
	l.p.mu.Lock()
	if !l.ready() || l.p.hub == nil {
		// Nothing to publish to, or the hub is not known yet: the dirty set waits.
		l.p.mu.Unlock()
		return true
	}
	hub := *l.p.hub
	full = full || l.needFull || hub.Version != l.version // device configs carry the version
	for oid := range l.p.dirty {
		l.retry[oid] = struct{}{}
	}
	clear(l.p.dirty)
	var devices []Device
	var gone []string
	if full {
		devices = slices.Collect(maps.Values(l.p.devices))
		for oid := range l.published {
			if _, ok := l.p.devices[oid]; !ok && oid != hubObjectID {
				gone = append(gone, oid)
			}
		}
	} else {
		for oid := range l.retry {
			if oid == hubObjectID {
				continue
			}
			if d, ok := l.p.devices[oid]; ok {
				devices = append(devices, d)
			} else {
				gone = append(gone, oid)
			}
		}
	}
	var staleGone []string
	for oid := range l.p.stale {
		if _, ok := l.p.devices[oid]; ok {
			delete(l.p.stale, oid)
		} else if l.p.complete {
			staleGone = append(staleGone, oid)
			delete(l.p.stale, oid)
		}
	}
	l.p.mu.Unlock()
	clear(l.retry)

	// The hub's state is rendered every time: it is one object, and plan skips it unchanged.
	want := render(l.p.t, &hub, hub.Version, devices)
	msgs := plan(l.p.t, l.published, want, append(gone, staleGone...), full)
	if len(msgs) == 0 {
		l.needFull, l.version = false, hub.Version
		return true
	}

	toks := make([]mqtt.Token, len(msgs))
	for i, m := range msgs {
		toks[i] = l.client.Publish(m.topic, 1, true, m.payload)
	}
	deadline := time.Now().Add(publishTimeout)
	failed := map[string]bool{}
	var firstErr error
	for i, tok := range toks {
		if err := waitTokens(ctx, deadline, tok); err != nil {
			failed[msgs[i].oid] = true
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		l.published.apply(msgs[i])
	}
	if firstErr != nil {
		// Failed objects are synced again; a failed stale clear is remembered again.
		l.p.mu.Lock()
		for oid := range failed {
			l.retry[oid] = struct{}{}
		}
		for _, oid := range staleGone {
			if failed[oid] {
				l.p.stale[oid] = struct{}{}
			}
		}
		l.p.mu.Unlock()
		l.p.log.Warn("some publications to home assistant failed; retrying", "failed", len(failed), "err", firstErr)
		l.needFull = l.needFull || full
		return false
	}
	l.needFull, l.version = false, hub.Version
	l.p.log.Debug("published to home assistant", "messages", len(msgs), "full", full)
	return true
}

// shutdown marks the hub offline (a clean disconnect sends no Will) and disconnects.
func (l *loop) shutdown() {
	if l.client.IsConnectionOpen() {
		tok := l.client.Publish(l.p.t.availability(), 1, true, []byte("offline"))
		if err := waitTokens(context.Background(), time.Now().Add(shutdownWait), tok); err != nil {
			l.p.log.Warn("cannot publish the hub's availability", "err", err)
		}
	}
	l.client.Disconnect(250)
}
