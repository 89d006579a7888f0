package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// agentKeepAlive is hearth-agent's MQTT keep-alive (agent/internal/mqtt.DefaultKeepAlive):
// the broker closes a session that sent nothing for one and a half of it (MQTT 3.1.1
// §3.1.2.10), which is the only way it can tell a frozen device from a quiet one.
const agentKeepAlive = 60 * time.Second

// TestHomeAssistantFrozenAgent freezes a running hearth-agent with SIGSTOP: its TCP
// connection stays open, so nothing tells the hub at once. Through a real mosquitto as Home
// Assistant's broker, the device's availability (its state's online, the second availability
// entry of its entities) turns offline once the hub's broker drops the silent session, within
// 1.5 × the agent's keep-alive; after SIGCONT the agent finds its connection closed,
// reconnects and the device is available again. About 90 s of waiting for the keep-alive.
func TestHomeAssistantFrozenAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent, runs it against a real hub process and mosquitto, and waits out its keep-alive")
	}
	m := testkit.StartMosquitto(t)
	ha := watchHABroker(t, m.Addr)
	agent := buildAgent(t)
	data := t.TempDir()
	conf := filepath.Join(t.TempDir(), "hearth.yaml")
	if err := os.WriteFile(conf, []byte("home_assistant:\n  discovery: true\n  broker: mqtt://"+m.Addr+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	relay := testkit.StartRelay(t, "")
	hub := startHubProcess(t, data, "127.0.0.1:0", "--advertise", relay.Addr, "--config", conf)
	relay.SetTarget(hub.addr)
	e := &agentE2E{t: t, tgt: agentTarget{name: "linux-amd64"}, bin: agent, data: data, relay: relay}

	id := "frozen-plug"
	var tok protocol.TokenCreated
	if err := json.Unmarshal(e.cli("token", "create", "--device", id, "--family", "plug", "--json"), &tok); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	args := strings.Fields(tok.Command)
	if out, err := exec.Command(agent, append(args[1:], "--dir", dir)...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", tok.Command, err, out)
	}
	run := exec.Command(agent, "run", "--dir", dir)
	logs := &syncBuffer{}
	run.Stdout, run.Stderr = logs, logs
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- run.Wait() }()
	defer func() {
		run.Process.Kill() // SIGKILL ends a stopped process too
		<-exited
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	}()

	state := "hearth/hass/device/" + id + "/state"
	online := func(want bool) func() bool {
		return func() bool {
			var st struct {
				Online bool `json:"online"`
			}
			return json.Unmarshal(ha.get(state), &st) == nil && st.Online == want
		}
	}
	testkit.Eventually(t, 60*time.Second, online(true), "the device never showed online on Home Assistant's broker: %s",
		testkit.Lazy(func() string { return string(ha.get(state)) }))

	// Frozen: the process holds its socket but sends nothing, not even PINGREQ.
	frozen := time.Now()
	if err := run.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The bound is the protocol's: the broker waits 1.5 × the keep-alive; the slack is for
	// the hub to store the disconnect and publish it to Home Assistant's broker.
	limit := agentKeepAlive*3/2 + 15*time.Second
	testkit.Eventually(t, limit, online(false), "the frozen agent's device still shows online %s after SIGSTOP: %s",
		limit, testkit.Lazy(func() string { return string(ha.get(state)) }))
	t.Logf("the frozen device went unavailable in Home Assistant %s after SIGSTOP (keep-alive %s)",
		time.Since(frozen).Round(time.Millisecond), agentKeepAlive)

	thawed := time.Now()
	if err := run.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 60*time.Second, online(true), "the device did not come back online after SIGCONT: %s",
		testkit.Lazy(func() string { return string(ha.get(state)) }))
	t.Logf("the device was available again %s after SIGCONT", time.Since(thawed).Round(time.Millisecond))
}
