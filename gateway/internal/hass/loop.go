package hass

import (
	"context"
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

	published view                // what the broker acknowledged as retained
	stale     map[string]struct{} // Hearth configs seen on the broker, to clear unless wanted
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

// sync publishes what moves the broker to the latest snapshot (everything again if full). It
// reports false if some publication failed and a retry is due.
func (l *loop) sync(ctx context.Context, full bool) bool {
	l.p.mu.Lock()
	snap := l.p.latest
	for oid := range l.p.stale {
		if len(l.stale) < maxStale {
			l.stale[oid] = struct{}{}
		}
	}
	clear(l.p.stale)
	l.p.mu.Unlock()

	if !l.ready() || snap == nil {
		return true // nothing to publish to, or nothing to publish yet
	}
	full = full || l.needFull
	want := render(l.p.t, *snap)
	msgs := plan(l.p.t, l.published, want, l.stale, full)
	for oid := range l.stale {
		if _, ok := want[oid]; ok {
			delete(l.stale, oid)
		}
	}
	if len(msgs) == 0 {
		l.needFull = false
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
	for _, m := range msgs {
		if len(m.payload) == 0 && !failed[m.oid] {
			delete(l.stale, m.oid)
		}
	}
	if firstErr != nil {
		l.p.log.Warn("some publications to home assistant failed; retrying", "failed", len(failed), "err", firstErr)
		l.needFull = l.needFull || full
		return false
	}
	l.needFull = false
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
