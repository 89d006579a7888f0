package broker

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// logins records Config.Logins.
type logins struct {
	mu  sync.Mutex
	all []Login
}

func (l *logins) add(x Login) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = append(l.all, x)
}

func (l *logins) get() []Login {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Login(nil), l.all...)
}

// TestRefusedEnrollmentIsTold checks that an enrollment login refused with a reason is told
// the reason on its cert topic, reaches nobody else, and is closed after ConnectTimeout; a
// refusal without a reason still gets CONNACK 5.
func TestRefusedEnrollmentIsTold(t *testing.T) {
	var seen logins
	e := start(t, func(c *Config) {
		c.ConnectTimeout = time.Second
		c.Logins = seen.add
	})
	tp := e.topic
	e.auth.tokens["dev-new"] = "tok-123"
	_, csrPEM := testkit.KeyAndCSR(t, "dev-new")
	csr, err := protocol.Encode(&protocol.CSR{V: protocol.Version, RequestID: "r1", CSR: csrPEM, Reason: protocol.ReasonEnroll,
		Time: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	watcher := mustConnect(t, e.clientOpts("watcher", nil).SetUsername("admin").SetPassword("admin-secret"))
	leaked := make(chan string, 10)
	wait(t, "admin Subscribe", watcher.Subscribe(tp.Device("dev-new", protocol.KindCert), 1, func(_ paho.Client, m paho.Message) { leaked <- string(m.Payload()) }))

	for _, tc := range []struct {
		code  protocol.Code
		retry int
	}{{protocol.CodeTokenUnknown, 0}, {protocol.CodeTokenUsed, 0}, {protocol.CodeTokenExpired, 0}, {protocol.CodeLockedOut, 42}} {
		t.Run(string(tc.code), func(t *testing.T) {
			e.auth.mu.Lock()
			e.auth.refuse["dev-new"] = tc.code
			e.auth.mu.Unlock()
			lost := make(chan struct{})
			c := mustConnect(t, e.clientOpts("dev-new:"+string(tc.code), nil).SetUsername("dev-new").SetPassword("wrong").
				SetConnectionLostHandler(func(paho.Client, error) { close(lost) }))
			replies := make(chan []byte, 1)
			if got, want := subscribeCodes(t, c, tp.CA()), []byte{1}; string(got) != string(want) {
				t.Errorf("SUBACK for the CA = %v, want %v", got, want)
			}
			wait(t, "Subscribe cert", c.Subscribe(tp.Device("dev-new", protocol.KindCert), 1, func(_ paho.Client, m paho.Message) { replies <- m.Payload() }))
			wait(t, "Publish csr", c.Publish(tp.Device("dev-new", protocol.KindCSR), 1, false, csr))
			var reply protocol.Cert
			select {
			case b := <-replies:
				if err := protocol.Decode(b, &reply); err != nil {
					t.Fatalf("reply %s: %v", b, err)
				}
			case <-time.After(waitFor):
				t.Fatal("no reply to the refused session's CSR")
			}
			if reply.RequestID != "r1" || reply.Error == nil || reply.Error.Code != tc.code || reply.Error.RetryAfter != tc.retry || reply.Chain != "" {
				b, _ := json.Marshal(reply)
				t.Errorf("reply = %s, want request r1, error %s with retry_after %d", b, tc.code, tc.retry)
			}
			select {
			case <-lost:
			case <-time.After(waitFor):
				t.Fatal("the refused session was not closed after ConnectTimeout")
			}
		})
	}
	if got := e.rec.all(); len(got) != 0 {
		t.Errorf("the handler got %+v from refused sessions, want nothing", got)
	}
	ok := mustConnect(t, e.clientOpts("dev-new", nil).SetUsername("dev-new").SetPassword("tok-123"))
	ok.Disconnect(0)
	logs := seen.get()
	if len(logs) != 5 || logs[4].Refused != "" || logs[0].Refused != protocol.CodeTokenUnknown || logs[3].Refused != protocol.CodeLockedOut ||
		logs[0].DeviceID != "dev-new" || logs[0].Source != "127.0.0.1/32" {
		t.Errorf("Logins saw %+v, want four refusals and one login of dev-new from 127.0.0.1/32", logs)
	}
	// The admin watching the device's cert topic saw none of the refusals: they went to the
	// refused sessions alone.
	if err := e.b.Publish(tp.Device("dev-new", protocol.KindCert), []byte("barrier"), false); err != nil {
		t.Fatal(err)
	}
	for m := range leaked {
		if m == "barrier" {
			break
		}
		t.Errorf("a refusal reached another subscriber: %s", m)
	}

	t.Run("no reason", func(t *testing.T) {
		e.auth.mu.Lock()
		delete(e.auth.refuse, "dev-new")
		e.auth.mu.Unlock()
		if _, err := connect(t, e.clientOpts("dev-new", nil).SetUsername("dev-new").SetPassword("wrong")); err == nil {
			t.Error("Connect with a token refused without a reason succeeded, want CONNACK 5")
		}
	})
}
