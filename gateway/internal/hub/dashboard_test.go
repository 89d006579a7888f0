package hub

import (
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"github.com/hearth-pki/hearth/gateway/internal/config"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
	"github.com/hearth-pki/hearth/protocol"
)

// TestDashboardRequestHelp drives the running hub's dashboard: the resident's Request help
// reaches bridge/event as help.requested, with the device and its problems, through the
// same path as the hub's other events, and the alert routes (a webhook) as help_requested.
func TestDashboardRequestHelp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // the hub binds it again; nothing else on this machine is told about it
	// An admin whose password hash is cheap to check (1,000 PBKDF2 rounds, the least the hub
	// accepts): the default admin's 600,000 rounds outlast the client's connect timeout under
	// the race detector on a busy machine.
	const watcherPassword = "watcher password"
	salt := []byte("0123456789abcdef")
	key, err := pbkdf2.Key(sha256.New, watcherPassword, salt, 1000, 32)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawStdEncoding
	hash := fmt.Sprintf("pbkdf2-sha256$1000$%s$%s", enc.EncodeToString(salt), enc.EncodeToString(key))
	cfg := hubkit.Config(t, fmt.Sprintf("admins:\n  - name: watcher\n    password_hash: %q\n", hash))
	cfg.HTTPListen = addr
	cfg.HTTPAuth = config.HTTPAuthNone // a resident on this machine's loopback, no login (http_auth none)
	const secret = "a-webhook-secret-for-the-test"
	hook, hooks := recordingServer(t)
	cfg.Alerts = config.Alerts{Webhook: config.Webhook{URL: hook.URL, Secret: secret}}
	h := runHub(t, cfg, Options{Version: "test"})
	pair, reply, _ := enroll(t, h, "cam")
	if err := tryCommit(t, h, "cam", pair, "enroll-1", reply.Serial); err != nil {
		t.Fatal(err)
	}
	watcher, err := client(t, h, "watcher", watcherPassword, nil)
	if err != nil {
		t.Fatalf("admin login: %v", err)
	}
	events := make(chan protocol.Event, 100)
	tok := watcher.Subscribe(h.topics.Bridge(protocol.KindBridgeEvent), 1, func(_ mqtt.Client, m mqtt.Message) {
		var e protocol.Event
		if err := protocol.Decode(m.Payload(), &e); err == nil {
			events <- e
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe to bridge/event: %v", tok.Error())
	}

	base := "http://" + addr + "/"
	var page string
	testkit.Eventually(t, 10*time.Second, func() bool {
		resp, err := http.Get(base + "home")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		page = string(b)
		return resp.StatusCode == http.StatusOK
	}, "the dashboard does not answer on %s", addr)
	m := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(page)
	if m == nil || !strings.Contains(page, "Everything is fine") {
		t.Fatalf("resident view:\n%s", page)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.PostForm(base+"home/help", url.Values{"csrf": {m[1]}, "device": {"cam"}, "message": {"the camera app complains"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST home/help = %d, want 303", resp.StatusCode)
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-events:
			if e.Type != protocol.EventHelpRequested {
				continue
			}
			if e.DeviceID != "cam" || e.Message != "the camera app complains" || e.Data["actor"] != "web" {
				t.Errorf("help.requested = %+v", e)
			}
			// The alert routes tell the administrator too (here the webhook).
			n := nextAlert(t, hooks, secret)
			if n["kind"] != "help_requested" || n["device_id"] != "cam" || n["state"] != "raised" ||
				n["message"] != "web asks for help with device cam: the camera app complains" {
				t.Errorf("webhook alert = %v, want the help request for cam", n)
			}
			return
		case <-deadline:
			t.Fatal("no help.requested on bridge/event")
		}
	}
}
