package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/secret"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// TestHardeningEndToEnd runs the real hub process, the real agent binary and a real
// mosquitto_sub (issue 15, item 3 and issue 16, items 4 and 7): with 2,000 idle sockets held
// open from the agents' own address, an agent still enrolls and renews; a wrong, a used and an
// expired token each give the agent process its reason and the fix, and each refusal, the
// good login and the token's life appear on hearth/bridge/event.
func TestHardeningEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the hub, the agent and mosquitto_sub as processes")
	}
	sub := testkit.RequirePeer(t, "mosquitto_sub")
	agent := buildAgent(t)
	data := t.TempDir()
	hub := startHubProcess(t, data, "127.0.0.1:0")
	cli := func(args ...string) []byte {
		t.Helper()
		var out, errb bytes.Buffer
		if err := run(t.Context(), append(args, "--data", data), nil, &out, &errb, func(string) string { return "" }); err != nil {
			t.Fatalf("hearth-gateway %v: %v %s", args, err, errb.String())
		}
		return out.Bytes()
	}

	// mosquitto_sub, as an admin, on the bridge events, as protocol/README.md shows it.
	host, port, _ := strings.Cut(hub.addr, ":")
	ctx, cancel := context.WithCancel(t.Context())
	watch := exec.CommandContext(ctx, sub, "-h", host, "-p", port, "--cafile", filepath.Join(data, "ca", "root.pem"), "-V", "mqttv311",
		"-u", "admin", "-P", e2eAdminPassword, "-q", "1", "-t", "hearth/bridge/event", "-v")
	var watched syncBuffer
	watch.Stdout, watch.Stderr = &watched, &watched
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); watch.Wait() })
	// It is subscribed once it sees an event: create tokens until one shows.
	var first protocol.TokenCreated
	testkit.Eventually(t, 30*time.Second, func() bool {
		if err := json.Unmarshal(cli("token", "create", "--device", "probe", "--replace", "--json"), &first); err != nil {
			t.Fatal(err)
		}
		return strings.Contains(watched.String(), `"type":"token.created"`)
	}, "mosquitto_sub saw no token.created event:\n%s", testkit.Lazy(watched.String))

	// 2,000 idle sockets from 127.0.0.1, the agent's own address.
	var idle []net.Conn
	t.Cleanup(func() {
		for _, c := range idle {
			c.Close()
		}
	})
	for range 2000 {
		c, err := net.Dial("tcp", hub.addr)
		if err != nil {
			t.Fatalf("idle socket %d: %v", len(idle)+1, err)
		}
		idle = append(idle, c)
	}

	fp := fingerprintRe.FindString(first.Command)
	enroll := func(id, token, dir string) (string, error) {
		out, err := exec.Command(agent, "enroll", "--hub", "mqtts://"+hub.addr, "--id", id, "--token", token,
			"--ca-fingerprint", fp, "--dir", dir).CombinedOutput()
		return string(out), err
	}
	var tok protocol.TokenCreated
	if err := json.Unmarshal(cli("token", "create", "--device", "flooded", "--json"), &tok); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if out, err := enroll("flooded", tok.Token, dir); err != nil {
		t.Fatalf("enroll with 2,000 idle sockets open: %v\n%s", err, out)
	}
	if out, err := exec.Command(agent, "renew", "--dir", dir).CombinedOutput(); err != nil || !strings.Contains(string(out), "renewed: serial") {
		t.Fatalf("renew with 2,000 idle sockets open: %v\n%s", err, out)
	}

	// An expired token, written to the inventory the hub uses (its clock is real).
	store, err := inventory.Open(t.Context(), filepath.Join(data, "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	expired, past := secret.NewToken(), time.Now().Add(-2*time.Hour)
	err = store.CreateToken(t.Context(), inventory.Token{Hash: secret.HashToken(expired), DeviceID: "late", CreatedAt: past, ExpiresAt: past.Add(time.Hour)})
	store.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, id, token string
		code            protocol.Code
		fix             string
	}{
		{"wrong", "stranger", secret.NewToken(), protocol.CodeTokenUnknown, "hearth-gateway token create --device stranger"},
		{"used", "flooded", tok.Token, protocol.CodeTokenUsed, "hearth-gateway token create --device flooded --replace"},
		{"expired", "late", expired, protocol.CodeTokenExpired, "hearth-gateway token create --device late"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := enroll(tc.id, tc.token, t.TempDir())
			if err == nil {
				t.Fatalf("enroll with a %s token succeeded:\n%s", tc.name, out)
			}
			if !strings.Contains(out, string(tc.code)) || !strings.Contains(out, tc.fix) {
				t.Errorf("enroll with a %s token printed:\n%s\nwant the reason %s and the fix %q", tc.name, out, tc.code, tc.fix)
			}
			want := `"type":"enrollment.refused"`
			testkit.Eventually(t, 10*time.Second, func() bool {
				for _, line := range strings.Split(watched.String(), "\n") {
					if strings.Contains(line, want) && strings.Contains(line, `"device_id":"`+tc.id+`"`) && strings.Contains(line, `"code":"`+string(tc.code)+`"`) {
						return true
					}
				}
				return false
			}, "no %s refusal of %s on hearth/bridge/event:\n%s", tc.code, tc.id, testkit.Lazy(watched.String))
		})
	}
	for _, want := range []string{`"type":"enrollment.login","time"`, `"type":"token.used"`, `"device_id":"flooded"`} {
		if !strings.Contains(watched.String(), want) {
			t.Errorf("hearth/bridge/event lacks %s:\n%s", want, watched.String())
		}
	}
	t.Logf("hearth/bridge/event as mosquitto_sub printed it:\n%s", watched.String())
}
