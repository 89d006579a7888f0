// Tests of hearth's patches (README.md in this directory).

package mqtt

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/mochi-mqtt/server/v2/system"
)

// newIdleClient is a client with no writer goroutine, as attachClient now leaves it.
func newIdleClient(w net.Conn, pending int) *Client {
	cl := newClient(w, &ops{
		info:  new(system.Info),
		hooks: new(Hooks),
		log:   logger,
		options: &Options{Capabilities: &Capabilities{
			ReceiveMaximum: 10, MaximumInflight: 5, TopicAliasMaximum: 10000,
			MaximumClientWritesPending: int32(pending), maximumPacketID: 10,
		}},
	})
	cl.ID = "hearth"
	return cl
}

// TestWriterOnDemand queues bursts of publishes on a client without a WriteLoop: every packet
// is written, in queue order, and once the queue is empty no writer is left running.
func TestWriterOnDemand(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, w := net.Pipe()
		defer r.Close()
		cl := newIdleClient(w, 64)
		got := make(chan string, 256)
		go func() {
			rc := newIdleClient(r, 1)
			for {
				var fh packets.FixedHeader
				if err := rc.ReadFixedHeader(&fh); err != nil {
					close(got)
					return
				}
				pk, err := rc.ReadPacket(&fh)
				if err != nil {
					close(got)
					return
				}
				got <- string(pk.Payload)
			}
		}()
		n := 0
		for burst := range 3 {
			for range 20 + burst*10 {
				pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "t", Payload: []byte{byte('a' + n%26), byte(n / 26)}}
				n++
				cl.State.outbound <- &pk
				cl.kickWriter()
			}
			synctest.Wait() // the writer wrote everything and ended
			if cl.State.writing.Load() || len(cl.State.outbound) != 0 {
				t.Fatalf("after burst %d: writing %v, %d packets queued; want no writer and an empty queue", burst, cl.State.writing.Load(), len(cl.State.outbound))
			}
		}
		_ = w.Close()
		i := 0
		for p := range got {
			if want := string([]byte{byte('a' + i%26), byte(i / 26)}); p != want {
				t.Fatalf("packet %d = %q, want %q: out of order", i, p, want)
			}
			i++
		}
		if i != n {
			t.Errorf("%d packets written, want %d", i, n)
		}
	})
}

// TestWriterStopsWithClient checks that a writer blocked on a peer that does not read ends
// when the client stops, and that packets queued then are not written.
func TestWriterStopsWithClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, w := net.Pipe()
		cl := newIdleClient(w, 8)
		for range 3 {
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "t", Payload: []byte("x")}
			cl.State.outbound <- &pk
			cl.kickWriter()
		}
		synctest.Wait() // the writer is blocked in its first write
		if !cl.State.writing.Load() {
			t.Fatal("no writer while the peer has not read")
		}
		cl.Stop(io.EOF)
		_ = r.Close()
		synctest.Wait()
		if cl.State.writing.Load() {
			t.Error("a writer is still running after the client stopped")
		}
	})
}

// TestRetainedSweep checks the retained-message sweep: skipped while no retained message ever
// had an expiry (and the server enforces none), and once one has, removing exactly the
// expired messages, found with Packets.Expired rather than a copy of the map.
func TestRetainedSweep(t *testing.T) {
	s := newServer() // MaximumMessageExpiryInterval 0
	now := int64(1000)
	s.Topics.RetainMessage(packets.Packet{ProtocolVersion: 4, TopicName: "keep", Payload: []byte("a")})
	if s.Topics.retainedExpiring.Load() {
		t.Fatal("a retained message without expiry marked the sweep as needed")
	}
	s.Topics.RetainMessage(packets.Packet{ProtocolVersion: 5, Expiry: now + 10, TopicName: "keep5", Payload: []byte("b")})
	s.Topics.RetainMessage(packets.Packet{ProtocolVersion: 5, Expiry: now - 1, TopicName: "gone", Payload: []byte("c")})
	if !s.Topics.retainedExpiring.Load() {
		t.Fatal("retained messages with an expiry did not mark the sweep as needed")
	}
	if got := s.Topics.Retained.Expired(func(pk packets.Packet) bool { return pk.TopicName == "gone" }); len(got) != 1 || got[0] != "gone" {
		t.Errorf("Expired = %q, want [gone]", got)
	}
	s.clearExpiredRetainedMessages(now)
	if _, ok := s.Topics.Retained.Get("gone"); ok {
		t.Error("the expired retained message is still there")
	}
	if s.Topics.Retained.Len() != 2 {
		t.Errorf("%d retained messages left, want 2", s.Topics.Retained.Len())
	}
}

// BenchmarkRetainedPerDevice measures the heap the index keeps per device of the hub's
// inventory that never connects: its two retained messages (bridge state and renewal window,
// 300 bytes of payload each) with the topic levels they create.
func BenchmarkRetainedPerDevice(b *testing.B) {
	const devices = 20000
	payload := make([]byte, 300)
	var before, after runtime.MemStats
	for b.Loop() {
		runtime.GC()
		runtime.ReadMemStats(&before)
		x := NewTopicsIndex()
		for i := range devices {
			id := "seed-" + strconv.Itoa(i)
			for _, topic := range []string{"hearth/bridge/device/" + id, "hearth/" + id + "/renewal"} {
				pk := packets.Packet{TopicName: topic, Payload: append([]byte(nil), payload...), Origin: "inline", Created: 1,
					FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true}}
				x.RetainMessage(pk)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/devices, "bytes/device")
		runtime.KeepAlive(x)
	}
}

// TestConnectClientCounts checks the accounting attachClient kept when the CONNECT handling
// moved to connectClient (patch 5): a session is counted in ClientsConnected while it reads
// packets and uncounted when it ends, also when its CONNACK could not be written; a refused
// CONNECT is never counted. Each case runs over net.Pipe.
func TestConnectClientCounts(t *testing.T) {
	connect := packets.TPacketData[packets.Connect].Get(packets.TConnectClean).RawBytes
	tests := []struct {
		name       string
		deny       bool  // the auth hook refuses
		closeEarly bool  // the client closes before reading its CONNACK
		want       error // EstablishConnection's error
		counted    bool  // ClientsConnected was 1 while the session read
	}{
		{name: "accepted, then disconnects", counted: true},
		{name: "refused", deny: true, want: packets.ErrBadUsernameOrPassword},
		{name: "closed before the CONNACK", closeEarly: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(&Options{Logger: logger})
			if tt.deny {
				_ = s.AddHook(new(DenyHook), nil)
			} else {
				_ = s.AddHook(new(AllowHook), nil)
			}
			defer s.Close()
			r, w := net.Pipe()
			done := make(chan error, 1)
			go func() { done <- s.EstablishConnection("tcp", r) }()
			if _, err := w.Write(connect); err != nil {
				t.Fatalf("write CONNECT: %v", err)
			}
			if tt.closeEarly {
				_ = w.Close()
				if err := <-done; err == nil {
					t.Errorf("EstablishConnection() = nil, want the CONNACK's write error")
				}
			} else {
				ack := make([]byte, 4)
				if _, err := io.ReadFull(w, ack); err != nil {
					t.Fatalf("read CONNACK: %v", err)
				}
				if got := atomic.LoadInt64(&s.Info.ClientsConnected); (got == 1) != tt.counted {
					t.Errorf("ClientsConnected while the session reads = %d, counted %v", got, tt.counted)
				}
				_, _ = w.Write(packets.TPacketData[packets.Disconnect].Get(packets.TDisconnect).RawBytes)
				if err := <-done; !errors.Is(err, tt.want) {
					t.Errorf("EstablishConnection() = %v, want %v", err, tt.want)
				}
				_ = w.Close()
			}
			if got := atomic.LoadInt64(&s.Info.ClientsConnected); got != 0 {
				t.Errorf("ClientsConnected after the session = %d, want 0", got)
			}
		})
	}
}

// TestSubscriptionsOne runs sequences of Add and Delete on Subscriptions (patch 6: one entry
// kept without a map, the map made by the second id) beside a plain map, and checks Get, Len
// and GetAll against it after every step.
func TestSubscriptionsOne(t *testing.T) {
	type op struct {
		del bool
		id  string
		qos byte
	}
	tests := []struct {
		name string
		ops  []op
	}{
		{name: "one", ops: []op{{id: "a"}}},
		{name: "one replaced", ops: []op{{id: "a"}, {id: "a", qos: 1}}},
		{name: "one deleted, another added", ops: []op{{id: "a"}, {del: true, id: "a"}, {id: "b", qos: 2}}},
		{name: "delete of another id keeps the one", ops: []op{{id: "a"}, {del: true, id: "b"}}},
		{name: "second id makes the map", ops: []op{{id: "a", qos: 1}, {id: "b"}, {id: "c"}, {id: "b", qos: 2}}},
		{name: "map emptied and refilled", ops: []op{{id: "a"}, {id: "b"}, {del: true, id: "a"}, {del: true, id: "b"}, {id: "c"}, {id: "d"}}},
		{name: "delete on empty", ops: []op{{del: true, id: "a"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSubscriptions()
			want := map[string]packets.Subscription{}
			for i, o := range tt.ops {
				if o.del {
					s.Delete(o.id)
					delete(want, o.id)
				} else {
					sub := packets.Subscription{Filter: "f/" + o.id, Qos: o.qos}
					s.Add(o.id, sub)
					want[o.id] = sub
				}
				if got := s.Len(); got != len(want) {
					t.Errorf("step %d: Len() = %d, want %d", i, got, len(want))
				}
				for _, id := range []string{"a", "b", "c", "d"} {
					got, ok := s.Get(id)
					w, wok := want[id]
					if ok != wok || got.Filter != w.Filter || got.Qos != w.Qos {
						t.Errorf("step %d: Get(%q) = %+v, %v; want %+v, %v", i, id, got, ok, w, wok)
					}
				}
				if got := s.GetAll(); !maps.EqualFunc(got, want, func(a, b packets.Subscription) bool { return a.Filter == b.Filter && a.Qos == b.Qos }) {
					t.Errorf("step %d: GetAll() = %v, want %v", i, got, want)
				}
			}
		})
	}
}

// BenchmarkSubscribedPerDevice measures the heap the index and the clients keep for the
// hub's subscriptions (patch 6): 10,000 devices, each with its four own topics and the CA
// topic that all share, as hearth-agent subscribes (`go test -run '^$' -bench
// SubscribedPerDevice -benchtime 3x .`).
func BenchmarkSubscribedPerDevice(b *testing.B) {
	const devices = 10000
	var before, after runtime.MemStats
	for b.Loop() {
		runtime.GC()
		runtime.ReadMemStats(&before)
		x := NewTopicsIndex()
		clients := make([]*Subscriptions, devices)
		for i := range devices {
			id := "dev-" + strconv.Itoa(i)
			clients[i] = NewSubscriptions()
			for _, filter := range []string{"hearth/" + id + "/cert", "hearth/" + id + "/ack", "hearth/" + id + "/cmd", "hearth/" + id + "/renewal", "hearth/ca"} {
				sub := packets.Subscription{Filter: filter, Qos: 1}
				x.Subscribe(id, sub)
				clients[i].Add(filter, sub)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/devices, "bytes/device")
		runtime.KeepAlive(x)
		runtime.KeepAlive(clients)
	}
}

// TestConnReader writes publishes to a client in different chunkings and reads them with
// ReadFixedHeader and ReadPacket (patch 7): every packet arrives whole and in order, and once
// a packet is read and nothing more is pending the client holds no read buffer (the next
// packet's first byte is read without one); only bytes read ahead keep a buffer.
func TestConnReader(t *testing.T) {
	encode := func(payload string) []byte {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "t/1", Payload: []byte(payload), ProtocolVersion: 4}
		var b bytes.Buffer
		if err := pk.PublishEncode(&b); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	big := strings.Repeat("x", 5000) // beyond the 1,024-byte buffers
	tests := []struct {
		name     string
		payloads []string
		split    func(all []byte, each [][]byte) [][]byte // the writes
		ahead    []bool                                   // after packet i, bytes read ahead are buffered
	}{
		{name: "one packet per write", payloads: []string{"a", "bb", "ccc"},
			split: func(_ []byte, each [][]byte) [][]byte { return each }, ahead: []bool{false, false, false}},
		{name: "two packets in one write", payloads: []string{"a", "bb"},
			split: func(all []byte, _ [][]byte) [][]byte { return [][]byte{all} }, ahead: []bool{true, false}},
		{name: "byte by byte", payloads: []string{"a", "bb"}, ahead: []bool{false, false},
			split: func(all []byte, _ [][]byte) [][]byte {
				var out [][]byte
				for i := range all {
					out = append(out, all[i:i+1])
				}
				return out
			}},
		{name: "a payload larger than the buffer", payloads: []string{big, "z"},
			split: func(_ []byte, each [][]byte) [][]byte { return each }, ahead: []bool{false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, w := net.Pipe()
			defer r.Close()
			cl := newIdleClient(r, 1)
			cl.ops.readBuffers = new(sync.Pool)
			cl.Net.bconn = newConnReader(r, 1024, cl.ops.readBuffers)
			var all []byte
			var each [][]byte
			for _, p := range tt.payloads {
				each = append(each, encode(p))
				all = append(all, each[len(each)-1]...)
			}
			go func() {
				for _, b := range tt.split(all, each) {
					if _, err := w.Write(b); err != nil {
						return
					}
				}
			}()
			defer w.Close()
			for i, want := range tt.payloads {
				var fh packets.FixedHeader
				if err := cl.ReadFixedHeader(&fh); err != nil {
					t.Fatalf("packet %d: ReadFixedHeader() = %v", i, err)
				}
				pk, err := cl.ReadPacket(&fh)
				if err != nil {
					t.Fatalf("packet %d: ReadPacket() = %v", i, err)
				}
				if string(pk.Payload) != want || pk.TopicName != "t/1" {
					t.Errorf("packet %d = %q on %q, want %q on t/1", i, pk.Payload, pk.TopicName, want)
				}
				c := cl.Net.bconn
				if ahead := c.Buffered() > 0; ahead != tt.ahead[i] || ahead != (c.buf != nil) {
					t.Errorf("after packet %d: %d bytes buffered, buffer held %v; want bytes read ahead %v and a buffer only for them", i, c.Buffered(), c.buf != nil, tt.ahead[i])
				}
			}
		})
	}
}
