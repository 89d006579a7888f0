package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// haBroker keeps the last payload of every topic on Home Assistant's broker (a real
// mosquitto).
type haBroker struct {
	mu   sync.Mutex
	last map[string][]byte
}

func watchHABroker(t *testing.T, addr string) *haBroker {
	t.Helper()
	b := &haBroker{last: map[string][]byte{}}
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("ha-e2e-watcher").SetProtocolVersion(4))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to Home Assistant's broker: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe("#", 1, func(_ mqtt.Client, m mqtt.Message) {
		b.mu.Lock()
		b.last[m.Topic()] = m.Payload()
		b.mu.Unlock()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return b
}

func (b *haBroker) get(topic string) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last[topic]
}

// TestHomeAssistantAvailabilityWithRealAgent runs the hub process with discovery to a real
// mosquitto as Home Assistant's broker and a real agent: the device's info carries what the
// agent was told (--model, --manufacturer), its version and architecture, and a link to the
// dashboard's page of the device; its entities carry two
// availability entries (the hub's and the device's, availability_mode all); the device is
// online while its agent runs, and a killed agent makes it offline — the broker sees its
// connection close — well within the agent's keepalive (60 s).
func TestHomeAssistantAvailabilityWithRealAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent and runs it against a real hub process and mosquitto")
	}
	m := testkit.StartMosquitto(t)
	ha := watchHABroker(t, m.Addr)
	agent := buildAgent(t)
	data := t.TempDir()
	conf := filepath.Join(t.TempDir(), "hearth.yaml")
	if err := os.WriteFile(conf, []byte("home_assistant:\n  discovery: true\n  broker: mqtt://"+m.Addr+"\n  dashboard_url: http://hub.local:8099\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	relay := testkit.StartRelay(t, "")
	hub := startHubProcess(t, data, "127.0.0.1:0", "--advertise", relay.Addr, "--config", conf)
	relay.SetTarget(hub.addr)
	e := &agentE2E{t: t, tgt: agentTarget{name: "linux-amd64"}, bin: agent, data: data, relay: relay}

	id := "ha-plug"
	var tok protocol.TokenCreated
	if err := json.Unmarshal(e.cli("token", "create", "--device", id, "--family", "plug", "--json"), &tok); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	args := strings.Fields(tok.Command)
	if out, err := exec.Command(agent, append(args[1:], "--dir", dir)...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", tok.Command, err, out)
	}
	run := exec.Command(agent, "run", "--dir", dir, "--model", "Smart Plug 2", "--manufacturer", "Acme")
	logs := &syncBuffer{}
	run.Stdout, run.Stderr = logs, logs
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- run.Wait() }()
	defer func() {
		run.Process.Kill()
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

	var config struct {
		Dev struct {
			Model            string `json:"model"`
			Manufacturer     string `json:"manufacturer"`
			SWVersion        string `json:"sw_version"`
			HWVersion        string `json:"hw_version"`
			ConfigurationURL string `json:"configuration_url"`
		} `json:"dev"`
		Cmps map[string]struct {
			Availability []struct {
				Topic         string `json:"topic"`
				ValueTemplate string `json:"value_template"`
			} `json:"availability"`
			AvailabilityMode string `json:"availability_mode"`
		} `json:"cmps"`
	}
	configTopic := "homeassistant/device/hearth_" + id + "/config"
	testkit.Eventually(t, 30*time.Second, func() bool {
		return json.Unmarshal(ha.get(configTopic), &config) == nil && config.Dev.Model == "Smart Plug 2"
	}, "the device info never reached Home Assistant: %s", testkit.Lazy(func() string { return string(ha.get(configTopic)) }))
	if d := config.Dev; d.Manufacturer != "Acme" || !strings.HasPrefix(d.SWVersion, "hearth-agent ") || d.HWVersion != runtime.GOARCH ||
		d.ConfigurationURL != "http://hub.local:8099/devices/"+id {
		t.Errorf("device info = %+v; want Acme, the agent's version, %s and the dashboard's device page", d, runtime.GOARCH)
	}
	for key, c := range config.Cmps {
		if len(c.Availability) != 2 || c.Availability[0].Topic != "hearth/bridge/state" || c.Availability[1].Topic != state ||
			c.AvailabilityMode != "all" {
			t.Errorf("cmps.%s availability = %+v (mode %q), want the hub's and the device's, mode all", key, c.Availability, c.AvailabilityMode)
		}
	}

	killed := time.Now()
	run.Process.Signal(syscall.SIGKILL)
	testkit.Eventually(t, 60*time.Second, online(false), "the killed agent's device still shows online: %s",
		testkit.Lazy(func() string { return string(ha.get(state)) }))
	t.Logf("the device went offline in Home Assistant %s after its agent was killed", time.Since(killed).Round(time.Millisecond))
}
