package broker

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// mosquittoCmd returns a Debian mosquitto-clients command (mosquitto_pub or mosquitto_sub)
// connecting to e's broker as MQTT 3.1.1 with dev's certificate. Without the program the
// test is skipped, or fails in CI.
func (e *env) mosquittoCmd(t *testing.T, ctx context.Context, prog string, dev device, args ...string) *exec.Cmd {
	t.Helper()
	path := testkit.RequirePeer(t, prog)
	port := e.b.Addr().(*net.TCPAddr).Port
	base := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-V", "mqttv311",
		"--cafile", e.pki.RootFile, "--cert", dev.certFile, "--key", dev.keyFile, "-i", dev.id}
	return exec.CommandContext(ctx, path, append(base, args...)...)
}

// run runs cmd and returns its output and exit code.
func run(t *testing.T, cmd *exec.Cmd) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("%s: %v", cmd, err)
	}
	return out.String(), errOut.String(), code
}

// TestMosquittoDeviceACL drives the ACL with real mosquitto clients holding device A's
// certificate: A reads and writes its own topics and nothing else.
func TestMosquittoDeviceACL(t *testing.T) {
	e := start(t, nil)
	ctx := t.Context()
	tp := e.topic
	a, b := e.a, e.b2

	t.Run("subscribe own cmd", func(t *testing.T) {
		cmd := e.mosquittoCmd(t, ctx, "mosquitto_sub", a, "-q", "1", "-C", "1", "-W", "10", "-t", tp.Device(a.id, protocol.KindCmd))
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		e.subscribed(t, tp.Device(a.id, protocol.KindCmd))
		if err := e.b.Publish(tp.Device(a.id, protocol.KindCmd), []byte("renew-now"), false); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("mosquitto_sub own cmd: %v", err)
		}
		if got := out.String(); got != "renew-now\n" {
			t.Errorf("mosquitto_sub own cmd printed %q, want %q", got, "renew-now\n")
		}
	})

	t.Run("subscribe retained CA", func(t *testing.T) {
		if err := e.b.Publish(tp.CA(), []byte("ca-pem"), true); err != nil {
			t.Fatal(err)
		}
		out, errOut, code := run(t, e.mosquittoCmd(t, ctx, "mosquitto_sub", a, "-C", "1", "-W", "10", "-t", tp.CA()))
		if code != 0 || out != "ca-pem\n" {
			t.Errorf("mosquitto_sub %s = %q, exit %d (%s), want %q, exit 0", tp.CA(), out, code, errOut, "ca-pem\n")
		}
	})

	// mosquitto_sub -E exits 0 once its SUBACK arrived; a refused subscription (SUBACK
	// 0x80) makes it print "All subscription requests were denied."
	const denied = "All subscription requests were denied."
	t.Run("subscribe acknowledged own cert", func(t *testing.T) {
		_, errOut, code := run(t, e.mosquittoCmd(t, ctx, "mosquitto_sub", a, "-E", "-W", "10", "-t", tp.Device(a.id, protocol.KindCert)))
		if code != 0 || strings.Contains(errOut, denied) {
			t.Errorf("mosquitto_sub -E own cert: exit %d, stderr %q; want exit 0 and no refusal", code, errOut)
		}
	})
	for _, filter := range []string{
		tp.Device(b.id, protocol.KindCert),
		tp.Device(b.id, protocol.KindCmd),
		tp.Device(b.id, protocol.KindRenewal),
		tp.Device(a.id, protocol.KindCSR), // own, but agent → hub
		tp.Device(a.id, protocol.KindState),
		"hearth/#",
		"hearth/v1/dev/+/cert",
		"hearth/v1/dev/" + a.id + "/#", // only own topics, but a wildcard
		"hearth/v1/dev/" + a.id + "/+",
		tp.BridgeResponse("token/create"),
		"hearth/bridge/#",
		"#",
		"$SYS/#",
		"$share/g/" + tp.Device(a.id, protocol.KindCmd),
	} {
		t.Run("subscribe denied "+filter, func(t *testing.T) {
			_, errOut, code := run(t, e.mosquittoCmd(t, ctx, "mosquitto_sub", a, "-E", "-W", "10", "-t", filter))
			if !strings.Contains(errOut, denied) {
				t.Errorf("mosquitto_sub -E -t %q: exit %d, stderr %q; want %q", filter, code, errOut, denied)
			}
		})
	}

	t.Run("publish own health", func(t *testing.T) {
		_, errOut, code := run(t, e.mosquittoCmd(t, ctx, "mosquitto_pub", a, "-q", "1", "-t", tp.Device(a.id, protocol.KindHealth), "-m", "ok"))
		if code != 0 {
			t.Fatalf("mosquitto_pub own health: exit %d: %s", code, errOut)
		}
		m := e.rec.next(t)
		want := message{
			from:    Identity{Role: RoleDevice, DeviceID: a.id, Serial: a.serial, Remote: m.from.Remote, Conn: m.from.Conn},
			topic:   protocol.Topic{Kind: protocol.KindHealth, DeviceID: a.id},
			payload: "ok",
		}
		if m != want {
			t.Errorf("handler got %+v, want %+v", m, want)
		}
	})

	t.Run("publish denied", func(t *testing.T) {
		admin := mustConnect(t, e.clientOpts("watcher", nil).SetUsername("admin").SetPassword("admin-secret"))
		seen := make(chan string, 100)
		wait(t, "admin Subscribe", admin.Subscribe("hearth/#", 1, func(_ paho.Client, m paho.Message) {
			if !m.Retained() { // retained messages of earlier subtests
				seen <- m.Topic()
			}
		}))
		before := len(e.rec.all())
		for _, topic := range []string{
			tp.Device(b.id, protocol.KindCSR),
			tp.Device(b.id, protocol.KindState),
			tp.Device(a.id, protocol.KindCert), // hub → agent
			tp.Device(a.id, protocol.KindCmd),
			tp.BridgeRequest("token/create"),
			tp.CA(),
			"elsewhere/topic",
		} {
			// Exit 0 means the QoS 1 publish was acknowledged: refused publishes are
			// acknowledged and dropped, so a 3.1.1 client is not disconnected.
			_, errOut, code := run(t, e.mosquittoCmd(t, ctx, "mosquitto_pub", a, "-q", "1", "-t", topic, "-m", "forged"))
			if code != 0 {
				t.Errorf("mosquitto_pub -q 1 -t %q: exit %d, want 0 (acknowledged and dropped): %s", topic, code, errOut)
			}
		}
		if got := e.rec.all()[before:]; len(got) != 0 {
			t.Errorf("handler got %+v for refused publishes, want nothing", got)
		}
		// A barrier: the hub's own message reaches the admin after anything published before.
		if err := e.b.Publish(tp.Bridge(protocol.KindBridgeEvent), []byte("barrier"), false); err != nil {
			t.Fatal(err)
		}
		for topic := range seen {
			if topic == tp.Bridge(protocol.KindBridgeEvent) {
				break
			}
			t.Errorf("admin received refused publish on %q", topic)
		}
		if got := e.retained(tp.CA()); slices.Contains(got, "forged") {
			t.Errorf("retained on %s = %q after a device's publish", tp.CA(), got)
		}
	})

	const online = `{"v":1,"state":"online","agent_version":"retained"}`
	t.Run("retain only own state", func(t *testing.T) {
		for _, k := range []protocol.Kind{protocol.KindHealth, protocol.KindState} {
			_, errOut, code := run(t, e.mosquittoCmd(t, ctx, "mosquitto_pub", a, "-q", "1", "-r", "-t", tp.Device(a.id, k), "-m", online))
			if code != 0 {
				t.Fatalf("mosquitto_pub -r %s: exit %d: %s", k, code, errOut)
			}
		}
		if got := e.retained(tp.Device(a.id, protocol.KindHealth)); len(got) != 0 {
			t.Errorf("retained on own health = %q, want none", got)
		}
		if got, want := e.retained(tp.Device(a.id, protocol.KindState)), []string{online}; !slices.Equal(got, want) {
			t.Errorf("retained on own state = %q, want %q", got, want)
		}
	})

	// The security review parked 200,000 bytes of junk, retained, on a device's state topic.
	t.Run("state must be a State", func(t *testing.T) {
		for name, junk := range map[string]string{
			"200,000 bytes":        strings.Repeat("j", 200_000),
			"64 KiB of JSON":       `{"v":1,"state":"online","agent_version":"` + strings.Repeat("x", 65_000) + `"}`,
			"not JSON":             "junk",
			"another state":        `{"v":1,"state":"asleep"}`,
			"no version":           `{"state":"online"}`,
			"long agent version":   `{"v":1,"state":"online","agent_version":"` + strings.Repeat("1", 65) + `"}`,
			"empty (clears state)": "",
		} {
			file := filepath.Join(t.TempDir(), "payload")
			if err := os.WriteFile(file, []byte(junk), 0o600); err != nil {
				t.Fatal(err)
			}
			args := []string{"-q", "1", "-r", "-t", tp.Device(a.id, protocol.KindState), "-f", file}
			if junk == "" {
				args = []string{"-q", "1", "-r", "-t", tp.Device(a.id, protocol.KindState), "-n"}
			}
			run(t, e.mosquittoCmd(t, ctx, "mosquitto_pub", a, args...)) // over the packet limit the broker closes the connection
			if got, want := e.retained(tp.Device(a.id, protocol.KindState)), []string{online}; !slices.Equal(got, want) {
				t.Errorf("%s: retained on own state = %.80q, want %q", name, got, want)
			}
		}
	})
}
