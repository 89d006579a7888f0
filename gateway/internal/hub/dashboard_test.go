package hub

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
	"github.com/hearth-pki/hearth/protocol"
)

// TestDashboardRequestHelp drives the running hub's dashboard: the resident's Request help
// reaches bridge/event as help.requested, with the device and its problems, through the
// same path as the hub's other events.
func TestDashboardRequestHelp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // the hub binds it again; nothing else on this machine is told about it
	cfg := hubkit.Config(t, "")
	cfg.HTTPListen = addr
	h := runHub(t, cfg, Options{Version: "test"})
	pair, reply, _ := enroll(t, h, "cam")
	if err := tryCommit(t, h, "cam", pair, "enroll-1", reply.Serial); err != nil {
		t.Fatal(err)
	}
	events := watchEvents(t, h)

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
			return
		case <-deadline:
			t.Fatal("no help.requested on bridge/event")
		}
	}
}
