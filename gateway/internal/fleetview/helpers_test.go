package fleetview

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/hearth-pki/hearth/gateway/internal/hass"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
)

// awaitLimit only guards against a hang; nothing here measures speed.
const awaitLimit = 60 * time.Second

// startMosquitto starts a real broker on a free port of 127.0.0.1, anonymous, without
// persistence, stopped when the test ends, and returns its port. Without mosquitto it skips
// the test, or fails it in CI (testkit.RequirePeer).
func startMosquitto(t *testing.T) int {
	t.Helper()
	mosquittoBin := testkit.RequirePeer(t, "mosquitto")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	// The default queue of 1000 messages per client would drop part of a 1,000-device
	// publication before a subscriber reads it.
	content := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nmax_inflight_messages 0\n", port)
	if err := os.WriteFile(conf, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(mosquittoBin, "-c", conf)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting mosquitto: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(awaitLimit)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return port
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto did not listen: %v\n%s", err, out.String())
		}
		time.Sleep(20 * time.Millisecond) // readiness poll, not an assertion
	}
}

// connect returns a connected MQTT client of the broker on port.
func connect(t *testing.T, port int, id string) mqtt.Client {
	t.Helper()
	opts := mqtt.NewClientOptions().AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", port)).SetClientID(id).
		SetProtocolVersion(4).SetOrderMatters(true).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second)
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(awaitLimit) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

// retained returns the retained messages the broker holds under filter, by topic: a fresh
// subscriber gets them at once, and a marker published after its subscription tells when all
// have arrived.
func retained(t *testing.T, port int, filter string) map[string][]byte {
	t.Helper()
	c := connect(t, port, fmt.Sprintf("retained-%d", time.Now().UnixNano()))
	var mu sync.Mutex
	got := map[string][]byte{}
	marker := fmt.Sprintf("test/marker/%d", time.Now().UnixNano())
	done := make(chan struct{})
	handler := func(_ mqtt.Client, m mqtt.Message) {
		if m.Topic() == marker {
			close(done)
			return
		}
		if m.Retained() {
			mu.Lock()
			got[m.Topic()] = m.Payload()
			mu.Unlock()
		}
	}
	for _, f := range []string{filter, marker} {
		if tok := c.Subscribe(f, 1, handler); !tok.WaitTimeout(awaitLimit) || tok.Error() != nil {
			t.Fatalf("subscribe %s: %v", f, tok.Error())
		}
	}
	if tok := c.Publish(marker, 1, false, "marker"); !tok.WaitTimeout(awaitLimit) || tok.Error() != nil {
		t.Fatalf("publish the marker: %v", tok.Error())
	}
	select {
	case <-done:
	case <-time.After(awaitLimit):
		t.Fatalf("the marker on %s never came back", marker)
	}
	mu.Lock()
	defer mu.Unlock()
	return got
}

// recorder is the fleet view's broker and Home Assistant as the tests see them: it publishes
// through a real MQTT client (when it has one) and forwards to a real hass.Publisher (when it
// has one), and records every call in order.
type recorder struct {
	client mqtt.Client     // nil: record only
	ha     *hass.Publisher // nil: record only

	mu    sync.Mutex
	calls []string // "publish <topic>", "device <id>", "remove <id>", "hub", "complete"
	last  map[string][]byte
	hub   hass.Hub
	devs  map[string]hass.Device
	more  chan struct{}
}

func newRecorder(client mqtt.Client, ha *hass.Publisher) *recorder {
	return &recorder{client: client, ha: ha, last: map[string][]byte{}, devs: map[string]hass.Device{}, more: make(chan struct{}, 1)}
}

func (r *recorder) record(call string, f func()) {
	r.mu.Lock()
	r.calls = append(r.calls, call)
	f()
	r.mu.Unlock()
	select {
	case r.more <- struct{}{}:
	default:
	}
}

// publish is the View's Config.Publish.
func (r *recorder) publish(topic string, payload []byte, retain bool) error {
	if r.client != nil {
		tok := r.client.Publish(topic, 1, retain, payload)
		if !tok.WaitTimeout(awaitLimit) {
			return fmt.Errorf("publish %s timed out", topic)
		}
		if err := tok.Error(); err != nil {
			return err
		}
	}
	r.record("publish "+topic, func() { r.last[topic] = bytes.Clone(payload) })
	return nil
}

func (r *recorder) UpdateHub(h hass.Hub) {
	if r.ha != nil {
		r.ha.UpdateHub(h)
	}
	r.record("hub", func() { r.hub = h })
}

func (r *recorder) UpdateDevice(d hass.Device) {
	if r.ha != nil {
		r.ha.UpdateDevice(d)
	}
	r.record("device "+d.ID, func() { r.devs[d.ID] = d })
}

func (r *recorder) RemoveDevice(id string) {
	if r.ha != nil {
		r.ha.RemoveDevice(id)
	}
	r.record("remove "+id, func() { delete(r.devs, id) })
}

func (r *recorder) Complete() {
	if r.ha != nil {
		r.ha.Complete()
	}
	r.record("complete", func() {})
}

// lastOf returns the last payload published on topic.
func (r *recorder) lastOf(topic string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last[topic]
}

// mark returns the number of calls so far.
func (r *recorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

// since returns the calls after mark.
func (r *recorder) since(mark int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls[mark:]...)
}

// await waits until ok holds of the calls after mark (checked after each call).
func (r *recorder) await(t *testing.T, mark int, what string, ok func(calls []string) bool) []string {
	t.Helper()
	timer := time.NewTimer(awaitLimit)
	defer timer.Stop()
	for {
		if calls := r.since(mark); ok(calls) {
			return calls
		}
		select {
		case <-r.more:
		case <-timer.C:
			t.Fatalf("timed out waiting for %s; calls since the mark: %q", what, r.since(mark))
		}
	}
}

// flushed reports whether calls hold a complete flush: the summary and, with Home
// Assistant, the hub's update that follows it.
func flushed(withHA bool) func(calls []string) bool {
	return func(calls []string) bool {
		for i, c := range calls {
			if c == "publish hearth/bridge/devices" && (!withHA || len(calls) > i+1 && calls[i+1] == "hub") {
				return true
			}
		}
		return false
	}
}
