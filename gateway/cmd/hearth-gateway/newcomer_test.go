package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
)

// The newcomer test follows README.md literally on a machine of its own: scripts/install.sh
// puts both binaries on PATH, `hearth-gateway serve` runs on its defaults (./hearth-data,
// broker :8883, dashboard 127.0.0.1:8099) in a private network namespace, so the default
// ports are the test's alone, and every command the hub prints is run as printed: the token
// command from the banner, the agent command from the token (by name, and by IP address for
// a second device), the watch command, a renewal.

// newcomerEnv turns TestNewcomerInside from a skip into the newcomer's session; its value is
// the bin folder install.sh filled.
const newcomerEnv = "HEARTH_TEST_NEWCOMER_BIN"

func TestNewcomer(t *testing.T) {
	if testing.Short() {
		t.Skip("installs both binaries and runs them")
	}
	if os.Geteuid() != 0 {
		if testkit.InCI() {
			t.Fatal("the newcomer test needs root (a private network namespace); CI runs as root")
		}
		t.Skip("needs root for a private network namespace")
	}
	unshare := testkit.RequirePeer(t, "unshare")
	testkit.RequirePeer(t, "ip")
	prefix := t.TempDir()
	install := exec.CommandContext(t.Context(), "bash", filepath.Join(repoRoot(t), "scripts", "install.sh"), "--prefix", prefix, "0.0.0-newcomer")
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("scripts/install.sh: %v\n%s", err, out)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, unshare, "--net", "--", "sh", "-c", `ip link set lo up && exec "$@"`, "sh",
		self, "-test.run=^TestNewcomerInside$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), newcomerEnv+"="+filepath.Join(prefix, "bin"))
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestNewcomerInside")) {
		t.Fatalf("the newcomer's session: %v\n%s", err, out)
	}
	t.Logf("the newcomer's session:\n%s", out)
}

// newcomer runs commands as a person at a shell would: in one folder, with the installed
// binaries first on PATH.
type newcomer struct {
	t    *testing.T
	home string
	env  []string
}

// run runs a command line (words separated by spaces, as printed) and returns its stdout.
func (n *newcomer) run(line string, extra ...string) string {
	n.t.Helper()
	args := append(strings.Fields(line), extra...)
	cmd := exec.CommandContext(n.t.Context(), n.lookPath(args[0]), args[1:]...)
	cmd.Dir, cmd.Env = n.home, n.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		n.t.Fatalf("$ %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	n.t.Logf("$ %s\n%s", strings.Join(args, " "), out.String())
	return out.String()
}

// output is run without logging: for commands polled in a loop.
func (n *newcomer) output(line string, extra ...string) string {
	n.t.Helper()
	args := append(strings.Fields(line), extra...)
	cmd := exec.CommandContext(n.t.Context(), n.lookPath(args[0]), args[1:]...)
	cmd.Dir, cmd.Env = n.home, n.env
	out, err := cmd.Output()
	if err != nil {
		n.t.Fatalf("$ %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// lookPath finds a program on the newcomer's PATH (exec.Command would search the test's).
func (n *newcomer) lookPath(name string) string {
	n.t.Helper()
	for _, kv := range n.env {
		if path, ok := strings.CutPrefix(kv, "PATH="); ok {
			for _, dir := range filepath.SplitList(path) {
				if fi, err := os.Stat(filepath.Join(dir, name)); err == nil && fi.Mode()&0o111 != 0 {
					return filepath.Join(dir, name)
				}
			}
		}
	}
	n.t.Fatalf("%s is not on the newcomer's PATH", name)
	return ""
}

// start starts a long-running command line and stops it when the test ends.
func (n *newcomer) start(line string, stdout io.Writer, extra ...string) *exec.Cmd {
	n.t.Helper()
	args := append(strings.Fields(line), extra...)
	cmd := exec.Command(n.lookPath(args[0]), args[1:]...)
	cmd.Dir, cmd.Env = n.home, n.env
	cmd.Stdout, cmd.Stderr = stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("$ %s: %v", strings.Join(args, " "), err)
	}
	n.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

var (
	dialLine      = regexp.MustCompile(`agents dial:\s+(mqtts://\S+)`)
	dashboardLine = regexp.MustCompile(`dashboard:\s+(http://\S+)`)
	hintLine      = regexp.MustCompile(`(?m)^\s+(hearth-gateway .+)$`)
	loginLine     = regexp.MustCompile(`(?m)dashboard login:.*?: (printf .+)$`)
	agentLine     = regexp.MustCompile(`(?m)^\s*(hearth-agent enroll .+)$`)
)

func TestNewcomerInside(t *testing.T) {
	bin := os.Getenv(newcomerEnv)
	if bin == "" {
		t.Skip("runs inside TestNewcomer's network namespace")
	}
	home := t.TempDir() // the working folder and $HOME (the hub keeps a generated CA passphrase in ~/.config)
	n := &newcomer{t: t, home: home, env: []string{"PATH=" + bin + ":/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + home}}

	// README.md: run the hub on its embedded defaults.
	banner := newLineBuffer()
	n.start("hearth-gateway serve", banner)
	text := banner.waitFor(t, "Then watch it with:", 60*time.Second)
	text += banner.waitLines(t, 1, 10*time.Second)
	dial := dialLine.FindStringSubmatch(text)
	dash := dashboardLine.FindStringSubmatch(text)
	hints := hintLine.FindAllStringSubmatch(text, -1)
	if dial == nil || dash == nil || len(hints) != 2 {
		t.Fatalf("the banner lacks the dial address, the dashboard or the two next commands:\n%s", text)
	}

	// The banner says how to add a first dashboard user; run it as printed, then the
	// dashboard it names answers that user.
	login := loginLine.FindStringSubmatch(text)
	if login == nil {
		t.Fatalf("the banner does not say how to add a dashboard user:\n%s", text)
	}
	addUser := strings.NewReplacer("PASSWORD", "newcomer password", "NAME", "me").Replace(login[1])
	n.run("sh -c", addUser)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, dash[1], nil)
	req.SetBasicAuth("me", "newcomer password")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("dashboard %s: %v", dash[1], err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Hearth") {
		t.Errorf("dashboard %s as the new user: HTTP %d %.200q", dash[1], resp.StatusCode, body)
	}

	// The banner's first hint makes a token; its output is the agent's command, run as
	// printed on the "device" (its own state folder, as a second device on one machine needs).
	enrollByName := agentCommand(t, n.run(hints[0][1]))
	if !strings.Contains(enrollByName, "--hub "+dial[1]) {
		t.Errorf("token create told the agent %q, the banner says agents dial %s", enrollByName, dial[1])
	}
	n.run(enrollByName, "--dir", filepath.Join(n.home, "thermostat"))

	// A second device dials the hub by IP address: the broker certificate covers it.
	enrollByIP := agentCommand(t, n.run("hearth-gateway token create --device porch-camera"))
	hub, err := url.Parse(dial[1])
	if err != nil {
		t.Fatal(err)
	}
	enrollByIP = strings.Replace(enrollByIP, "--hub "+dial[1], "--hub mqtts://127.0.0.1:"+hub.Port(), 1)
	n.run(enrollByIP, "--dir", filepath.Join(n.home, "camera"))

	for _, dir := range []string{"thermostat", "camera"} {
		n.start("hearth-agent run", io.Discard, "--dir", filepath.Join(n.home, dir))
	}
	// The banner's second hint watches the devices.
	watch := hints[1][1]
	testkit.Eventually(t, 30*time.Second, func() bool {
		online := map[string]bool{}
		for line := range strings.SplitSeq(n.output(watch), "\n") {
			if f := strings.Fields(line); len(f) > 3 {
				online[f[0]] = f[3] == "yes"
			}
		}
		return online["my-thermostat"] && online["porch-camera"]
	}, "%s never listed both devices online", watch)

	before := agentSerial(t, n, "thermostat")
	renew := n.run("hearth-gateway renew my-thermostat")
	checkHints(t, renew)
	testkit.Eventually(t, 60*time.Second, func() bool {
		return agentSerial(t, n, "thermostat") != before
	}, "the thermostat never renewed after hearth-gateway renew")
	// The hub's books settle: the renewal is over, the device active on its new certificate.
	testkit.Eventually(t, 30*time.Second, func() bool {
		for line := range strings.SplitSeq(n.output(watch), "\n") {
			if f := strings.Fields(line); len(f) > 6 && f[0] == "my-thermostat" {
				return f[2] == "active" && f[6] == "idle"
			}
		}
		return false
	}, "%s never showed the thermostat's renewal over", watch)
	n.run(watch)
}

// agentCommand returns the hearth-agent enroll line of token create's output.
func agentCommand(t *testing.T, out string) string {
	t.Helper()
	m := agentLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("token create printed no hearth-agent enroll command:\n%s", out)
	}
	return strings.TrimSpace(m[1])
}

// agentSerial is the serial of the certificate the agent in dir holds, from its status.
func agentSerial(t *testing.T, n *newcomer, dir string) string {
	t.Helper()
	var st struct {
		Serial string `json:"serial"`
	}
	out := n.output("hearth-agent status --json", "--dir", filepath.Join(n.home, dir))
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Serial == "" {
		t.Fatalf("hearth-agent status --json: %v, serial %q in %s", err, st.Serial, out)
	}
	return st.Serial
}

// lineBuffer collects a process's output lines as they arrive.
type lineBuffer struct {
	w     *io.PipeWriter
	lines chan string
}

func newLineBuffer() *lineBuffer {
	r, w := io.Pipe()
	b := &lineBuffer{w: w, lines: make(chan string, 1024)}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			b.lines <- sc.Text()
		}
	}()
	return b
}

func (b *lineBuffer) Write(p []byte) (int, error) { return b.w.Write(p) }

// waitFor returns the lines up to and including the first that contains s.
func (b *lineBuffer) waitFor(t *testing.T, s string, limit time.Duration) string {
	t.Helper()
	var got strings.Builder
	deadline := time.After(limit)
	for {
		select {
		case line := <-b.lines:
			got.WriteString(line + "\n")
			if strings.Contains(line, s) {
				return got.String()
			}
		case <-deadline:
			t.Fatalf("no %q within %v; got:\n%s", s, limit, got.String())
		}
	}
}

// waitLines returns the next n lines.
func (b *lineBuffer) waitLines(t *testing.T, n int, limit time.Duration) string {
	t.Helper()
	var got strings.Builder
	deadline := time.After(limit)
	for range n {
		select {
		case line := <-b.lines:
			got.WriteString(line + "\n")
		case <-deadline:
			t.Fatalf("fewer than %d lines within %v; got:\n%s", n, limit, got.String())
		}
	}
	return got.String()
}
