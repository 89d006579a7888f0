package deploy

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// hangGuard bounds every wait: a guard against a hang, never a timing assertion.
const hangGuard = 60 * time.Second

// buildAgent builds hearth-agent for this machine.
func buildAgent(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "hearth-agent")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "../cmd/hearth-agent")
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build hearth-agent: %v\n%s", err, out)
	}
	return bin
}

// hub is a real mosquitto with the test responder playing the hub, and one device enrolled
// by the agent binary in a state directory of its own.
type hub struct {
	broker *testkit.Broker
	resp   *testkit.Responder
	id     string
	dir    string
}

func enrolled(t *testing.T, bin string) *hub {
	t.Helper()
	ca := testkit.NewCA(t, "Test")
	b := testkit.StartBroker(t, ca, true)
	h := &hub{broker: b, resp: testkit.StartResponder(t, b), id: "router-1", dir: filepath.Join(t.TempDir(), "hearth")}
	out, err := exec.Command(bin, "enroll", "--hub", b.URL, "--id", h.id, "--token", "hst_deploy",
		"--ca-fingerprint", ca.Fingerprint(), "--dir", h.dir).CombinedOutput()
	if err != nil {
		t.Fatalf("hearth-agent enroll: %v\n%s", err, out)
	}
	for range 2 { // the enrollment's CSR and commit
		select {
		case <-h.resp.CSRs:
		case <-h.resp.Commits:
		case <-time.After(hangGuard):
			t.Fatal("the enrollment never reached the responder")
		}
	}
	return h
}

// runService runs argv as the service manager would, until the hub got a health report,
// commanded a renewal and got its commit, and renewed (if not nil) reports true; then it sends
// SIGTERM and checks that the agent exits 0 within stopTimeout, the unit's or the script's
// stop timeout.
func (h *hub) runService(t *testing.T, argv []string, stopTimeout time.Duration, renewed func() bool) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	}()
	// The first health report comes once the session subscribed (the enrollment sends none).
	waitFor(t, h.resp.Healths, func(protocol.Health) bool { return true }, "health report")
	h.resp.Command(h.id, "cmd-deploy", protocol.ActionRenew)
	waitFor(t, h.resp.Commits, func(c protocol.Commit) bool { return c.Outcome == protocol.OutcomeCommitted }, "committed renewal")
	if renewed != nil {
		testkit.Eventually(t, hangGuard, renewed, "the renewal's aftermath never showed")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		exited <- err // for the deferred Wait
		if err != nil {
			t.Errorf("%s after SIGTERM: %v, want exit status 0", argv, err)
		}
	case <-time.After(stopTimeout):
		t.Errorf("%s did not exit within %s of SIGTERM, the service manager's stop timeout", argv, stopTimeout)
	}
}

func waitFor[T any](t *testing.T, ch <-chan T, ok func(T) bool, what string) {
	t.Helper()
	deadline := time.After(hangGuard)
	for {
		select {
		case v := <-ch:
			if ok(v) {
				return
			}
		case <-deadline:
			t.Fatalf("no %s within %s", what, hangGuard)
		}
	}
}

// unitValue returns the value of key in the unit file text (the last assignment wins).
func unitValue(t *testing.T, unit, key string) string {
	t.Helper()
	var v string
	found := false
	for _, line := range strings.Split(unit, "\n") {
		if k, val, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == key && !strings.HasPrefix(line, "#") {
			v, found = strings.TrimSpace(val), true
		}
	}
	if !found {
		t.Fatalf("hearth-agent.service has no %s=", key)
	}
	return v
}

// TestSystemdUnit checks hearth-agent.service with systemd-analyze verify, which needs no
// systemd running as PID 1, on a copy whose ExecStart names the agent just built instead of
// /usr/local/bin/hearth-agent (verify checks that the program exists); it must print nothing.
// Then it runs ExecStart's command line, with the state directory swapped for an enrolled
// one, through a renewal and SIGTERM within TimeoutStopSec.
func TestSystemdUnit(t *testing.T) {
	analyze := testkit.RequirePeer(t, "systemd-analyze")
	bin := buildAgent(t)
	b, err := os.ReadFile("hearth-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	exec0 := unitValue(t, unit, "ExecStart")
	want := "/usr/local/bin/hearth-agent run --dir /etc/hearth"
	if exec0 != want {
		t.Fatalf("ExecStart=%s, want %s (agent/README.md's install path and state directory)", exec0, want)
	}

	copyPath := filepath.Join(t.TempDir(), "hearth-agent.service")
	if err := os.WriteFile(copyPath, []byte(strings.ReplaceAll(unit, "/usr/local/bin/hearth-agent", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", copyPath).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("systemd-analyze verify hearth-agent.service: %v, want success and no output:\n%s", err, out)
	}
	// The exposure score of the sandboxing, for the record (agent/README.md).
	if out, err := exec.Command(analyze, "security", "--offline=yes", copyPath).CombinedOutput(); err == nil {
		if i := bytes.Index(out, []byte("Overall exposure level")); i >= 0 {
			t.Logf("systemd-analyze security: %s", bytes.TrimSpace(out[i:]))
		}
	}

	stop, err := strconv.Atoi(unitValue(t, unit, "TimeoutStopSec"))
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v", err)
	}
	h := enrolled(t, bin)
	argv := strings.Fields(exec0)
	argv[0], argv[len(argv)-1] = bin, h.dir
	h.runService(t, argv, time.Duration(stop)*time.Second, nil)
}

// procdHarness sources the init script in busybox sh (OpenWrt's shell is busybox ash) with
// stubs of rc.common's config_load and config_get (reading UCI_<section>_<option> from the
// environment) and of procd's functions, each recording its arguments one record a line,
// separated by \037; then it runs start_service and service_triggers as rc.common's start
// would. PROG is replaced by $AGENT after its default was recorded.
const procdHarness = `
record() { printf '%s\037' "$@" >>"$REC"; printf '\n' >>"$REC"; }
config_load() { record config_load "$@"; }
config_get() {
	local __val
	eval "__val=\${UCI_$2_$3-}"
	[ -n "$__val" ] || __val=$4
	eval "$1=\$__val"
}
procd_open_instance() { record procd_open_instance "$@"; }
procd_set_param() { record procd_set_param "$@"; }
procd_append_param() { record procd_append_param "$@"; }
procd_close_instance() { record procd_close_instance "$@"; }
procd_add_reload_trigger() { record procd_add_reload_trigger "$@"; }
. "$INIT"
record globals "USE_PROCD=$USE_PROCD" "START=$START" "STOP=$STOP" "PROG=$PROG"
PROG=$AGENT
start_service
service_triggers
`

// runProcd runs the harness with the uci settings given and returns the records.
func runProcd(t *testing.T, busybox, agent string, uci map[string]string) [][]string {
	t.Helper()
	init, err := filepath.Abs("hearth-agent.init")
	if err != nil {
		t.Fatal(err)
	}
	rec := filepath.Join(t.TempDir(), "records")
	cmd := exec.Command(busybox, "sh", "-c", procdHarness)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "INIT=" + init, "REC=" + rec, "AGENT=" + agent}
	for k, v := range uci {
		cmd.Env = append(cmd.Env, "UCI_main_"+k+"="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil || len(out) != 0 {
		t.Fatalf("busybox sh hearth-agent.init start_service: %v, want success and no output:\n%s", err, out)
	}
	b, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	var records [][]string
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		records = append(records, strings.Split(strings.TrimSuffix(line, "\037"), "\037"))
	}
	return records
}

// TestProcdInit runs hearth-agent.init under busybox sh with rc.common's and procd's
// functions stubbed (procdHarness), without and with uci settings, and checks what it asks
// procd for; then it runs the command line procd would start — the uci case's, with an
// on_renew command that must receive its quoting intact — through a renewal and SIGTERM within
// term_timeout.
func TestProcdInit(t *testing.T) {
	busybox := testkit.RequirePeer(t, "busybox")
	if out, err := exec.Command(busybox, "sh", "-n", "hearth-agent.init").CombinedOutput(); err != nil {
		t.Fatalf("busybox sh -n hearth-agent.init: %v\n%s", err, out)
	}
	bin := buildAgent(t)
	h := enrolled(t, bin)
	marker := filepath.Join(t.TempDir(), "renewed by 'on_renew'")
	onRenew := fmt.Sprintf(`printf '%%s' "$HEARTH_SERIAL" > %s`, shellQuote(marker))
	tail := [][]string{
		{"procd_set_param", "respawn", "3600", "10", "0"},
		{"procd_set_param", "stdout", "1"},
		{"procd_set_param", "stderr", "1"},
		{"procd_set_param", "term_timeout", "15"},
		{"procd_close_instance"},
		{"procd_add_reload_trigger", "hearth-agent"},
	}
	globals := []string{"globals", "USE_PROCD=1", "START=95", "STOP=10", "PROG=/usr/bin/hearth-agent"}
	for _, tc := range []struct {
		name string
		uci  map[string]string
		want [][]string
	}{
		{"defaults", nil, append([][]string{
			globals, {"config_load", "hearth-agent"}, {"procd_open_instance"},
			{"procd_set_param", "command", bin, "run", "--dir", "/etc/hearth"},
		}, tail...)},
		{"uci", map[string]string{"dir": h.dir, "on_renew": onRenew}, append([][]string{
			globals, {"config_load", "hearth-agent"}, {"procd_open_instance"},
			{"procd_set_param", "command", bin, "run", "--dir", h.dir},
			{"procd_append_param", "command", "--on-renew", onRenew},
		}, tail...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := runProcd(t, busybox, bin, tc.uci)
			if !slices.EqualFunc(got, tc.want, slices.Equal[[]string]) {
				t.Errorf("hearth-agent.init asked procd for\n%q\nwant\n%q", got, tc.want)
			}
		})
	}

	// The command procd would start, as the uci case built it.
	argv := []string{bin, "run", "--dir", h.dir, "--on-renew", onRenew}
	h.runService(t, argv, 15*time.Second, func() bool {
		serial, err := os.ReadFile(marker)
		return err == nil && len(serial) > 0
	})
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
