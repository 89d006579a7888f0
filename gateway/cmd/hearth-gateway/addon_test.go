package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"go.yaml.in/yaml/v3"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
)

// The add-on container test: scripts/release-addon.sh writes the add-on repository, the hub
// is built from it with the Dockerfile's own build script, and the command run.sh execs runs
// as the container runs it — /data with the Supervisor's options.json, /ssl and /config
// mapped, the Supervisor reachable as http://supervisor, Home Assistant's Mosquitto as the
// mqtt service and the ingress proxy at 172.30.32.2 — in private mount and network
// namespaces with a root of its own, so nothing on the machine is touched.

// containerEnv names the variable that turns TestAddonContainer from a skip into the
// process inside the namespaces; its value is the JSON of containerSpec.
const containerEnv = "HEARTH_TEST_ADDON_CONTAINER"

// containerSpec is what the outer test hands the process inside the namespaces.
type containerSpec struct {
	Command []string       // run.sh's exec line
	Options map[string]any // config.yaml's options: what the Supervisor writes to options.json
}

// containerSetup runs as root under unshare --mount --net: a tmpfs root with the machine's
// /usr, /etc and /var as overlays (writes stay in the test's folder), /lib… bound read-only,
// /data, /ssl and /config empty, the two binaries in /usr/bin, "supervisor" resolving to
// loopback and the ingress proxy's address on lo; then chroot.
const containerSetup = `set -eu
R=$1 T=$2 HUB=$3 SELF=$4
shift 4
mount --make-rprivate /
ip link set lo up
ip addr add 172.30.32.2/32 dev lo
mount -t tmpfs tmpfs "$R"
for d in usr etc var; do
	mkdir -p "$T/$d.up" "$T/$d.work" "$R/$d"
	mount -t overlay overlay -o "lowerdir=/$d,upperdir=$T/$d.up,workdir=$T/$d.work" "$R/$d"
done
for l in bin sbin lib lib32 lib64 libx32; do
	if [ -L "/$l" ]; then cp -P "/$l" "$R/$l"
	elif [ -d "/$l" ]; then mkdir "$R/$l"; mount --rbind "/$l" "$R/$l"
	fi
done
mkdir -p "$R/dev" "$R/proc" "$R/sys" "$R/tmp" "$R/data" "$R/ssl" "$R/config" "$R/run" "$R/root"
mount --rbind /dev "$R/dev"
mount --rbind /sys "$R/sys"
mount -t proc proc "$R/proc"
mount -t tmpfs tmpfs "$R/tmp"
echo "127.0.0.1 supervisor" >> "$R/etc/hosts"
cp "$HUB" "$R/usr/bin/hearth-gateway"
cp "$SELF" "$R/usr/bin/hearth-addon-test"
exec chroot "$R" "$@"
`

// TestAddonRelease releases the add-on, checks the repository the Supervisor would read,
// builds the hub exactly as the image's builder stage does and runs it as the container would.
func TestAddonRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the hub and runs it in namespaces")
	}
	if os.Geteuid() != 0 {
		if testkit.InCI() {
			t.Fatal("the add-on container test needs root (mount and network namespaces); CI runs as root")
		}
		t.Skip("needs root for mount and network namespaces")
	}
	unshare := testkit.RequirePeer(t, "unshare")
	testkit.RequirePeer(t, "chroot")
	testkit.RequirePeer(t, "ip")
	testkit.RequirePeer(t, "mosquitto")

	root := repoRoot(t)
	repo := filepath.Join(t.TempDir(), "repository")
	release := exec.CommandContext(t.Context(), "bash", filepath.Join(root, "scripts", "release-addon.sh"), repo)
	if out, err := release.CombinedOutput(); err != nil {
		t.Fatalf("scripts/release-addon.sh: %v\n%s", err, out)
	}
	addon := filepath.Join(repo, "hearth")
	checkReleasedRepository(t, repo, addon)

	// The builder stage: WORKDIR /src, COPY src/ ./, RUN sh /build-hub.sh /src /out/…
	hub := filepath.Join(t.TempDir(), "hearth-gateway")
	build := exec.CommandContext(t.Context(), "sh", filepath.Join(addon, "build-hub.sh"), filepath.Join(addon, "src"), hub)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build-hub.sh: %v\n%s", err, out)
	}

	spec := containerSpec{Command: runShCommand(t, filepath.Join(addon, "run.sh")), Options: manifestOptions(t, filepath.Join(addon, "config.yaml"))}
	specJSON, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	newRoot := filepath.Join(work, "root")
	if err := os.Mkdir(newRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, unshare, "--mount", "--net", "--fork", "--",
		"sh", "-c", containerSetup, "setup", newRoot, work, hub, self,
		"/usr/bin/hearth-addon-test", "-test.run=^TestAddonContainer$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), containerEnv+"="+string(specJSON))
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestAddonContainer")) {
		t.Fatalf("the add-on in its container: %v\n%s", err, out)
	}
	t.Logf("the add-on in its container:\n%s", out)
}

// checkReleasedRepository checks what the Supervisor reads: repository.yaml at the root, an
// add-on folder whose config.yaml names no image (so it is built on the machine), a
// build.yaml with a Debian base for every architecture, and a Dockerfile whose every COPY
// source is in the build context and which builds with build-hub.sh.
func checkReleasedRepository(t *testing.T, repo, addon string) {
	t.Helper()
	var repository struct{ Name, URL string }
	readYAML(t, filepath.Join(repo, "repository.yaml"), &repository)
	if repository.Name == "" || repository.URL == "" {
		t.Errorf("repository.yaml = %+v, want a name and a url", repository)
	}
	var manifest map[string]any
	readYAML(t, filepath.Join(addon, "config.yaml"), &manifest)
	if img, ok := manifest["image"]; ok {
		t.Errorf("config.yaml names image %v: the Supervisor would pull it instead of building the add-on", img)
	}
	var build struct {
		BuildFrom map[string]string `yaml:"build_from"`
	}
	readYAML(t, filepath.Join(addon, "build.yaml"), &build)
	arches, _ := manifest["arch"].([]any)
	if len(arches) == 0 {
		t.Error("config.yaml lists no arch")
	}
	for _, a := range arches {
		if base := build.BuildFrom[fmt.Sprint(a)]; !strings.Contains(base, "base-debian") {
			t.Errorf("build.yaml build_from[%v] = %q, want a Home Assistant Debian base (the hub is linked with glibc)", a, base)
		}
	}
	dockerfile, err := os.ReadFile(filepath.Join(addon, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var runs []string
	for line := range strings.SplitSeq(string(dockerfile), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "COPY" && !strings.HasPrefix(f[1], "--from="):
			for _, src := range f[1 : len(f)-1] {
				if _, err := os.Stat(filepath.Join(addon, src)); err != nil {
					t.Errorf("Dockerfile copies %s, which is not in the build context: %v", src, err)
				}
			}
		case len(f) >= 2 && f[0] == "RUN":
			runs = append(runs, strings.Join(f[1:], " "))
		}
	}
	for _, want := range []string{"COPY src/ ./", "WORKDIR /src", "COPY --from=builder /out/hearth-gateway /usr/bin/hearth-gateway", "COPY run.sh /run.sh", "FROM ${BUILD_FROM}"} {
		if !bytes.Contains(dockerfile, []byte(want)) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if !slices.Contains(runs, "sh /build-hub.sh /src /out/hearth-gateway") {
		t.Errorf("Dockerfile RUN lines %q: the hub must be built by build-hub.sh, as the test builds it", runs)
	}
	for _, tracked := range []string{"src/protocol/go.mod", "src/gateway/go.sum", "src/gateway/cmd/hearth-gateway/main.go"} {
		if _, err := os.Stat(filepath.Join(addon, tracked)); err != nil {
			t.Errorf("the release lacks %s: %v", tracked, err)
		}
	}
	if matches, _ := filepath.Glob(filepath.Join(addon, "src", "gateway", "cmd", "hearth-gateway", "*_test.go")); len(matches) > 0 {
		t.Errorf("the release carries tests: %v", matches)
	}
}

// runShCommand returns the command run.sh hands the container over to with exec.
func runShCommand(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "exec "); ok {
			return strings.Fields(rest)
		}
	}
	t.Fatalf("%s has no exec line", path)
	return nil
}

// manifestOptions returns config.yaml's default options, which the Supervisor writes to
// /data/options.json on a first install.
func manifestOptions(t *testing.T, path string) map[string]any {
	t.Helper()
	var m struct {
		Options map[string]any `yaml:"options"`
	}
	readYAML(t, path, &m)
	return m.Options
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// repoRoot is the repository's top folder, two levels above this package's gateway module.
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", "..", ".."))
}

// supervisorToken is the SUPERVISOR_TOKEN the container gets and the test Supervisor wants.
const supervisorToken = "test-supervisor-token"

// TestAddonContainer is the container's side of TestAddonRelease: it runs only inside the
// namespaces, as root in the new root, where /data, /ssl and /config are the container's.
func TestAddonContainer(t *testing.T) {
	raw := os.Getenv(containerEnv)
	if raw == "" {
		t.Skip("runs inside TestAddonRelease's namespaces")
	}
	var spec containerSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		t.Fatal(err)
	}
	// What the Supervisor does before it starts the container.
	opts, err := json.Marshal(spec.Options)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/data/options.json", opts, 0o600); err != nil {
		t.Fatal(err)
	}
	mosquitto := startContainerMosquitto(t)
	asked := startSupervisor(t, mosquitto)

	ctx := t.Context()
	hub := exec.CommandContext(ctx, spec.Command[0], spec.Command[1:]...)
	hub.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "SUPERVISOR_TOKEN=" + supervisorToken}
	var log bytes.Buffer
	hub.Stdout, hub.Stderr = &log, &log
	if err := hub.Start(); err != nil {
		t.Fatalf("%v: %v", spec.Command, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- hub.Wait() }()
	defer func() {
		if t.Failed() {
			t.Logf("hub log:\n%s", log.String())
		}
	}()

	// The Supervisor's watchdog (tcp://[HOST]:[PORT:8099]) and the agents' port.
	for _, addr := range []string{"127.0.0.1:8099", "127.0.0.1:8883"} {
		waitListening(t, addr, exited)
	}

	// The broker presents a certificate that the CA exported to /ssl verifies.
	roots := x509.NewCertPool()
	rootPEM, err := os.ReadFile("/ssl/hearth/root.pem")
	if err != nil {
		t.Fatalf("CA export to /ssl: %v", err)
	}
	if !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("/ssl/hearth/root.pem holds no certificate: %q", rootPEM)
	}
	conn, err := tls.Dial("tcp", "127.0.0.1:8883", &tls.Config{RootCAs: roots, ServerName: "homeassistant.local", MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Errorf("broker TLS for homeassistant.local against /ssl/hearth/root.pem: %v", err)
	} else {
		conn.Close()
	}
	if block, _ := pem.Decode(rootPEM); block == nil || block.Type != "CERTIFICATE" {
		t.Errorf("/ssl/hearth/root.pem is not a PEM certificate")
	}

	// The dashboard through ingress: from the ingress proxy's address it answers.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("172.30.32.2")}}).DialContext,
	}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:8099/", nil)
	req.Header.Set("X-Ingress-Path", "/api/hassio_ingress/test")
	if resp, err := client.Do(req); err != nil {
		t.Errorf("dashboard through ingress: %v", err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("Hearth")) {
			t.Errorf("dashboard through ingress: HTTP %d %.200q", resp.StatusCode, body)
		}
	}

	// Home Assistant's broker, found through the Supervisor, gets the hub's discovery.
	waitDiscovery(t, mosquitto, spec.Options["discovery_prefix"])
	if asked.Load() == 0 {
		t.Error("the hub never asked the Supervisor for the mqtt service")
	}
	for _, f := range []string{"/data/hearth.db"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("data in /data: %v", err)
		}
	}

	// The Supervisor stops the container: SIGTERM, then SIGKILL after S6_KILL_GRACETIME (8 s).
	if err := hub.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("hub after SIGTERM: %v, want exit status 0", err)
		}
	case <-time.After(8 * time.Second):
		t.Error("hub still running 8 s after SIGTERM: s6-overlay would kill it")
		hub.Process.Kill()
	}
}

// startContainerMosquitto starts Home Assistant's broker as the Mosquitto add-on is to the
// hub: plain MQTT on 1883, credentials accepted.
func startContainerMosquitto(t *testing.T) string {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	if err := os.WriteFile(conf, []byte("listener 1883 127.0.0.1\nallow_anonymous true\npersistence false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := testkit.RequirePeer(t, "mosquitto")
	cmd := exec.Command(bin, "-c", conf)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitListening(t, "127.0.0.1:1883", nil)
	return "127.0.0.1:1883"
}

// startSupervisor serves the Supervisor's GET /services/mqtt on http://supervisor (port 80
// of loopback, which /etc/hosts names supervisor) and counts the hub's questions.
func startSupervisor(t *testing.T, broker string) *atomic.Int32 {
	t.Helper()
	var asked atomic.Int32
	host, port, _ := net.SplitHostPort(broker)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /services/mqtt", func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		if r.Header.Get("Authorization") != "Bearer "+supervisorToken {
			http.Error(w, `{"result":"error","message":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, `{"result":"ok","data":{"host":%q,"port":%s,"ssl":false,"protocol":"3.1.1","username":"addons","password":"secret"}}`, host, port)
	})
	l, err := net.Listen("tcp", "127.0.0.1:80")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return &asked
}

// waitListening waits until addr accepts connections, failing at once if the hub exits.
func waitListening(t *testing.T, addr string, exited <-chan error) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case err := <-exited:
			t.Fatalf("the hub exited before %s listened: %v", addr, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never listened: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitDiscovery subscribes to the discovery prefix on broker and waits for the hub's retained
// discovery configuration.
func waitDiscovery(t *testing.T, broker string, prefix any) {
	t.Helper()
	p, _ := prefix.(string)
	if p == "" {
		t.Fatal("config.yaml's options name no discovery_prefix")
	}
	got := make(chan string, 64)
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + broker).SetClientID("ha-test").SetConnectTimeout(10 * time.Second)
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to Home Assistant's broker: %v", tok.Error())
	}
	defer c.Disconnect(100)
	c.Subscribe(p+"/#", 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case got <- m.Topic():
		default:
		}
	}).WaitTimeout(10 * time.Second)
	timeout := time.After(60 * time.Second)
	for {
		select {
		case topic := <-got:
			if strings.HasPrefix(topic, p+"/") && strings.HasSuffix(topic, "/config") {
				return
			}
		case <-timeout:
			t.Fatal(errors.New("no discovery configuration reached Home Assistant's broker within 60 s"))
		}
	}
}
