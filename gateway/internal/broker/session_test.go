package broker

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// TestDisconnectAndPresence checks Disconnect (revocation) against a live device session:
// the session drops at once, its Will (offline, retained) is published, and the Sessions
// observer hears of each connection once up and once down, with its own connection number.
func TestDisconnectAndPresence(t *testing.T) {
	e := start(t, nil)
	state := e.topic.Device("dev-a", protocol.KindState)
	lost := make(chan error, 1)
	opts := e.clientOpts("dev-a", &e.a.cert).
		SetWill(state, `{"v":1,"state":"offline"}`, 1, true).
		SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
	mustConnect(t, opts)

	first := e.pres.next(t)
	if !first.online || first.id.DeviceID != "dev-a" || first.id.Serial != e.a.serial || first.id.Role != RoleDevice || first.id.Conn == 0 {
		t.Errorf("first session event = %+v, want dev-a up with serial %s and a connection number", first, e.a.serial)
	}
	if !e.b.Online("dev-a") {
		t.Errorf("Online(dev-a) = false after connecting, want true")
	}
	if e.b.Online("dev-b") {
		t.Errorf("Online(dev-b) = true, want false")
	}
	// A second connection with the same certificate (another client id): a newer
	// connection, up and then down on its own.
	second := mustConnect(t, e.clientOpts("dev-a:clone", &e.a.cert))
	clone := e.pres.next(t)
	if !clone.online || clone.id.Conn <= first.id.Conn || clone.id.Serial != e.a.serial {
		t.Errorf("clone session event = %+v, want up on a connection after %d", clone, first.id.Conn)
	}
	second.Disconnect(0)
	if ev := e.pres.next(t); ev.online || ev.id.Conn != clone.id.Conn {
		t.Fatalf("session event after the clone left = %+v, want connection %d down", ev, clone.id.Conn)
	}
	if !e.b.Online("dev-a") {
		t.Errorf("Online(dev-a) = false with the first session still up")
	}

	e.auth.revoke(e.a.serial)
	if n := e.b.Disconnect("dev-a"); n != 1 {
		t.Errorf("Disconnect(dev-a) = %d, want 1", n)
	}
	select {
	case <-lost:
	case <-time.After(waitFor):
		t.Fatal("the client was not disconnected")
	}
	if ev := e.pres.next(t); ev.online || ev.id.DeviceID != "dev-a" || ev.id.Conn != first.id.Conn {
		t.Errorf("session event after Disconnect = %+v, want connection %d down", ev, first.id.Conn)
	}
	if e.b.Online("dev-a") {
		t.Errorf("Online(dev-a) = true after Disconnect, want false")
	}
	if n := e.b.Disconnect("dev-a"); n != 0 {
		t.Errorf("second Disconnect(dev-a) = %d, want 0", n)
	}
	// mochi publishes the Will after closing: wait for it.
	testkit.Eventually(t, waitFor, func() bool { return slices.Equal(e.retained(state), []string{`{"v":1,"state":"offline"}`}) },
		"retained on %s = %q, want the Will", state, testkit.Lazy(func() string { return fmt.Sprint(e.retained(state)) }))
	// Revoked now: reconnecting is refused.
	if _, err := connect(t, e.clientOpts("dev-a", &e.a.cert)); err == nil {
		t.Errorf("Connect with the revoked certificate succeeded, want refused")
	}
	select {
	case ev := <-e.pres.ch:
		t.Errorf("session event %+v after a refused CONNECT, want none", ev)
	default:
	}
}

// TestTakeover checks a second session with the same client id, which makes mochi close
// the first: the device is not reported offline, and the first session's Will does not
// overwrite the retained state.
func TestTakeover(t *testing.T) {
	e := start(t, nil)
	state := e.topic.Device("dev-a", protocol.KindState)
	will := `{"v":1,"state":"offline"}`
	const online1 = `{"v":1,"state":"online","agent_version":"1"}`
	admin := mustConnect(t, e.clientOpts("console", nil).SetUsername("admin").SetPassword("admin-secret"))
	states := make(chan string, 10)
	wait(t, "admin Subscribe", admin.Subscribe(state, 1, func(_ paho.Client, m paho.Message) { states <- string(m.Payload()) }))

	lost := make(chan struct{})
	first := mustConnect(t, e.clientOpts("dev-a", &e.a.cert).SetWill(state, will, 1, true).
		SetConnectionLostHandler(func(paho.Client, error) { close(lost) }))
	ev1 := e.pres.next(t)
	wait(t, "Publish state", first.Publish(state, 1, true, online1))
	if got := <-states; got != online1 {
		t.Fatalf("state = %q, want %s", got, online1)
	}

	second := mustConnect(t, e.clientOpts("dev-a", &e.a.cert).SetWill(state, will, 1, true))
	// mochi closes the first socket before it sends the second CONNACK, so the registry
	// already saw the close.
	if !e.b.Online("dev-a") {
		t.Errorf("Online(dev-a) = false after a takeover, want true")
	}
	select {
	case <-lost:
	case <-time.After(waitFor):
		t.Fatal("the first session was not taken over")
	}
	// The first session's Will is delivered (mochi sends it on a takeover) but not retained.
	// (A QoS 1 redelivery of online1 may come first.)
	got := <-states
	for got == online1 {
		got = <-states
	}
	if got != will {
		t.Errorf("state after the takeover = %q, want the first session's Will %q", got, will)
	}
	if got := e.retained(state); !slices.Equal(got, []string{online1}) {
		t.Errorf("retained state after the takeover = %q, want %q", got, online1)
	}
	second.Disconnect(0)

	// Events: up (first), up (second), down (first, taken over), down (second).
	ev2, ev3, ev4 := e.pres.next(t), e.pres.next(t), e.pres.next(t)
	evs := []sessionEvent{ev1, ev2, ev3, ev4}
	if !ev1.online || !ev2.online || ev3.online || ev4.online || ev2.id.Conn <= ev1.id.Conn ||
		ev3.id.Conn != ev1.id.Conn || ev4.id.Conn != ev2.id.Conn {
		t.Errorf("session events = %+v, want up (first), up (second), down (first), down (second)", evs)
	}
}

// TestSubscribed checks the Subscribed call: only for the device's own command topic, once
// the subscription is in place, on the session's own connection.
func TestSubscribed(t *testing.T) {
	e := start(t, nil)
	c := mustConnect(t, e.clientOpts("dev-a", &e.a.cert))
	up := e.pres.next(t)
	wait(t, "Subscribe renewal", c.Subscribe(e.topic.Device("dev-a", protocol.KindRenewal), 1, nil))
	wait(t, "Subscribe cmd", c.Subscribe(e.topic.Device("dev-a", protocol.KindCmd), 1, nil))
	// The observer is called before the SUBACK: the event is there once Subscribe returns.
	select {
	case ev := <-e.pres.ch:
		if !ev.sub || ev.id.Conn != up.id.Conn || ev.id.DeviceID != "dev-a" {
			t.Errorf("event after the cmd subscription = %+v, want Subscribed on connection %d", ev, up.id.Conn)
		}
	default:
		t.Fatal("no Subscribed call once the SUBACK arrived")
	}
	// Another device's command topic is refused by the ACL: no call.
	tok := c.Subscribe(e.topic.Device("dev-b", protocol.KindCmd), 1, nil)
	tok.Wait()
	select {
	case ev := <-e.pres.ch:
		t.Errorf("event %+v for a refused subscription, want none", ev)
	default:
	}
}

// TestDeniedPublishNoLoop checks the CodeSuccessIgnore path with paho: a QoS 1 publish on
// a forbidden topic is acknowledged, the client stays connected, and nothing re-sends it.
func TestDeniedPublishNoLoop(t *testing.T) {
	e := start(t, nil)
	lost := make(chan error, 1)
	c := mustConnect(t, e.clientOpts("dev-a", &e.a.cert).
		SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err }))
	e.pres.next(t)
	wait(t, "Publish on another device's csr", c.Publish(e.topic.Device("dev-b", protocol.KindCSR), 1, false, "forged"))

	// Barrier: a publish on the device's own health topic, sent once the forged one was
	// acknowledged, reaches the handler over the same session. A refusal that closed the
	// session instead would show as a lost connection, a presence event, and (paho resending
	// the unacknowledged publish) more PUBLISH packets than these two.
	wait(t, "Publish on own health", c.Publish(e.topic.Device("dev-a", protocol.KindHealth), 1, false, "ok"))
	if m := e.rec.next(t); m.topic.Kind != protocol.KindHealth {
		t.Errorf("handler got %+v, want own health", m)
	}
	if got := atomic.LoadInt64(&e.b.srv.Info.MessagesReceived); got != 2 {
		t.Errorf("PUBLISH packets received = %d, want 2 (the forged one once, then the health report)", got)
	}
	select {
	case err := <-lost:
		t.Fatalf("client lost its connection: %v", err)
	case ev := <-e.pres.ch:
		t.Fatalf("session event %+v: the client reconnected", ev)
	default:
	}
	if got := e.rec.all(); len(got) != 1 {
		t.Errorf("handler got %+v, want only the health report", got)
	}
}

// TestPublishRateLimit checks the per-client token bucket: with a stopped clock a burst of
// 3 lets 3 of 5 publishes through, all acknowledged; a second later one more passes.
func TestPublishRateLimit(t *testing.T) {
	clock := testkit.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	e := start(t, func(c *Config) {
		c.PublishRate, c.PublishBurst, c.Now = 1, 3, clock.Now
	})
	c := mustConnect(t, e.clientOpts("dev-a", &e.a.cert))
	health := e.topic.Device("dev-a", protocol.KindHealth)
	for i := range 5 {
		wait(t, "Publish", c.Publish(health, 1, false, []byte{'0' + byte(i)}))
	}
	clock.Add(time.Second)
	wait(t, "Publish after a second", c.Publish(health, 1, false, "5"))
	var got []string
	for _, m := range e.rec.all() {
		got = append(got, m.payload)
	}
	if want := []string{"0", "1", "2", "5"}; !slices.Equal(got, want) {
		t.Errorf("handled payloads = %q, want %q", got, want)
	}
	if !c.IsConnectionOpen() {
		t.Errorf("client disconnected by the rate limit, want connected")
	}
}

// TestRetainedFromHub checks that a retained hub message reaches a later subscriber and that
// retained messages never expire (mochi's default expires them after a day).
func TestRetainedFromHub(t *testing.T) {
	e := start(t, nil)
	renewal := e.topic.Device("dev-a", protocol.KindRenewal)
	if err := e.b.Publish(renewal, []byte("window"), true); err != nil {
		t.Fatal(err)
	}
	c := mustConnect(t, e.clientOpts("dev-a", &e.a.cert))
	got := make(chan paho.Message, 1)
	wait(t, "Subscribe", c.Subscribe(renewal, 1, func(_ paho.Client, m paho.Message) { got <- m }))
	select {
	case m := <-got:
		if string(m.Payload()) != "window" || !m.Retained() {
			t.Errorf("received %q (retained %v), want %q retained", m.Payload(), m.Retained(), "window")
		}
	case <-time.After(waitFor):
		t.Fatal("retained message not delivered")
	}
	if got := e.b.srv.Options.Capabilities.MaximumMessageExpiryInterval; got != 0 {
		t.Errorf("MaximumMessageExpiryInterval = %d, want 0 (retained state never expires)", got)
	}
}

// subscribeCodes subscribes to each filter separately and returns the SUBACK codes.
func subscribeCodes(t *testing.T, c paho.Client, filters ...string) []byte {
	t.Helper()
	var codes []byte
	for _, f := range filters {
		tok := c.Subscribe(f, 1, func(paho.Client, paho.Message) {})
		wait(t, "Subscribe "+f, tok)
		res := tok.(*paho.SubscribeToken).Result() // one entry, keyed without "$share/<group>/"
		if len(res) != 1 {
			t.Fatalf("Subscribe(%q) results %v, want one", f, res)
		}
		for _, code := range res {
			codes = append(codes, code)
		}
	}
	return codes
}

// TestEnrollingAndAdminACL checks the other two roles with paho.
func TestEnrollingAndAdminACL(t *testing.T) {
	e := start(t, nil)
	tp := e.topic
	e.auth.tokens["dev-new"] = "tok-123"

	t.Run("enrolling", func(t *testing.T) {
		c := mustConnect(t, e.clientOpts("dev-new", nil).SetUsername("dev-new").SetPassword("tok-123"))
		filters := []string{
			tp.Device("dev-new", protocol.KindCert), tp.CA(),
			tp.Device("dev-new", protocol.KindCmd), tp.CRL(), tp.Device("dev-a", protocol.KindCert), "hearth/#",
		}
		if got, want := subscribeCodes(t, c, filters...), []byte{1, 1, 0x80, 0x80, 0x80, 0x80}; !slices.Equal(got, want) {
			t.Errorf("SUBACK codes for %q = %v, want %v", filters, got, want)
		}
		wait(t, "Publish health", c.Publish(tp.Device("dev-new", protocol.KindHealth), 1, false, "no"))
		wait(t, "Publish csr", c.Publish(tp.Device("dev-new", protocol.KindCSR), 1, false, "csr"))
		m := e.rec.next(t) // the health publish, refused, never reaches the handler
		if m.from.Role != RoleEnrolling || m.from.DeviceID != "dev-new" || m.topic.Kind != protocol.KindCSR || m.payload != "csr" {
			t.Errorf("handler got %+v, want the enrolling csr", m)
		}
		if e.b.Online("dev-new") {
			t.Errorf("Online(dev-new) = true for an enrolling session, want false")
		}
	})

	t.Run("admin", func(t *testing.T) {
		dev := mustConnect(t, e.clientOpts("dev-a", &e.a.cert))
		cmds := make(chan string, 10)
		wait(t, "device Subscribe", dev.Subscribe(tp.Device("dev-a", protocol.KindCmd), 1,
			func(_ paho.Client, m paho.Message) { cmds <- string(m.Payload()) }))

		c := mustConnect(t, e.clientOpts("console", nil).SetUsername("admin").SetPassword("admin-secret"))
		filters := []string{"hearth/#", "hearth/bridge/response/+", "#", "$SYS/#", "other/#", "$share/g/hearth/#"}
		if got, want := subscribeCodes(t, c, filters...), []byte{1, 1, 0x80, 0x80, 0x80, 0x80}; !slices.Equal(got, want) {
			t.Errorf("SUBACK codes for %q = %v, want %v", filters, got, want)
		}
		wait(t, "Publish on a device's cmd", c.Publish(tp.Device("dev-a", protocol.KindCmd), 1, false, "forged"))
		wait(t, "Publish bridge request", c.Publish(tp.BridgeRequest("device/renew"), 1, true, `{"id":"dev-a"}`))
		m := e.rec.next(t)
		want := protocol.Topic{Kind: protocol.KindBridgeRequest, Op: "device/renew"}
		if m.from.Role != RoleAdmin || m.from.Username != "admin" || m.topic != want {
			t.Errorf("handler got %+v, want an admin bridge request %+v", m, want)
		}
		if got := e.retained(tp.BridgeRequest("device/renew")); len(got) != 0 {
			t.Errorf("retained bridge request %q, want none", got)
		}
		// Barrier: the hub's command arrives; the admin's forged one never did.
		if err := e.b.Publish(tp.Device("dev-a", protocol.KindCmd), []byte("real"), false); err != nil {
			t.Fatal(err)
		}
		if got := <-cmds; got != "real" {
			t.Errorf("device received command %q, want %q", got, "real")
		}
	})
}

// TestDisconnectAfterDeliversFirst: what the hub publishes to a device just before
// DisconnectAfter (the CRL that revokes it) reaches the device before its session closes.
func TestDisconnectAfterDeliversFirst(t *testing.T) {
	e := start(t, nil)
	order := make(chan string, 8)
	opts := e.clientOpts("dev-a", &e.a.cert).
		SetConnectionLostHandler(func(paho.Client, error) { order <- "lost" })
	c := mustConnect(t, opts)
	e.pres.next(t)
	if tok := c.Subscribe(e.topic.CRL(), 1, func(paho.Client, paho.Message) { order <- "crl" }); !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	e.auth.revoke(e.a.serial)
	if err := e.b.Publish(e.topic.CRL(), []byte("-----BEGIN X509 CRL-----"), true); err != nil {
		t.Fatal(err)
	}
	if n := e.b.DisconnectAfter("dev-a", 200*time.Millisecond); n != 1 {
		t.Errorf("DisconnectAfter(dev-a) = %d, want 1", n)
	}
	// The CRL may arrive more than once (the retained message and its live delivery); what
	// matters is that it arrives before the session ends.
	crls := 0
	for {
		select {
		case got := <-order:
			if got == "crl" {
				crls++
				continue
			}
			if crls == 0 {
				t.Fatal("the session ended before the device saw the CRL")
			}
			return
		case <-time.After(waitFor):
			t.Fatalf("the device saw %d CRL(s) and its session never ended", crls)
		}
	}
}
