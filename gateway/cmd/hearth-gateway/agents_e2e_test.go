package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// agentTarget is one agent build: GOARCH and its extra environment, and the qemu-user
// emulator that runs it ("" = native).
type agentTarget struct {
	name, goarch, extra, qemu string
}

var agentTargets = []agentTarget{
	{"amd64", "amd64", "", ""},
	{"mipsle", "mipsle", "GOMIPS=softfloat", "qemu-mipsel-static"},
	{"armv5", "arm", "GOARM=5", "qemu-arm-static"},
}

// buildAgent cross-builds hearth-agent for t, static, as scripts/build-agents.sh does.
func buildAgent(t *testing.T, tgt agentTarget) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "hearth-agent-"+tgt.name)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=e2e", "-o", out, "./cmd/hearth-agent")
	cmd.Dir = filepath.Join("..", "..", "..", "agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+tgt.goarch)
	if tgt.extra != "" {
		cmd.Env = append(cmd.Env, tgt.extra)
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build agent %s: %v\n%s", tgt.name, err, b)
	}
	return out
}

// agentCmd runs the agent binary, under its emulator when it has one.
func agentCmd(tgt agentTarget, bin string, args ...string) *exec.Cmd {
	if tgt.qemu == "" {
		return exec.Command(bin, args...)
	}
	return exec.Command(tgt.qemu, append([]string{bin}, args...)...)
}

var fingerprintRe = regexp.MustCompile(`SHA256:[0-9a-f]{64}`)

// TestAgentsEndToEnd runs the real hub binary and real agent binaries — amd64 natively, mipsle
// and ARMv5 under qemu-user — through enrollment, a hub-commanded renewal, and status.
func TestAgentsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs real hub and agent processes")
	}
	data := t.TempDir()
	hub := startHubProcess(t, data, "127.0.0.1:0")
	env := func(string) string { return "" }
	cli := func(args ...string) []byte {
		t.Helper()
		var out, errb bytes.Buffer
		if err := run(t.Context(), append(args, "--data", data), nil, &out, &errb, env); err != nil {
			t.Fatalf("%v: %v %s", args, err, errb.String())
		}
		return out.Bytes()
	}
	for _, tgt := range agentTargets {
		t.Run(tgt.name, func(t *testing.T) {
			if tgt.qemu != "" {
				tgt.qemu = testkit.RequirePeer(t, tgt.qemu)
			}
			bin := buildAgent(t, tgt)
			id := "e2e-" + tgt.name
			dir := t.TempDir()
			var tok protocol.TokenCreated
			if err := json.Unmarshal(cli("token", "create", "--device", id, "--json"), &tok); err != nil {
				t.Fatal(err)
			}
			fp := fingerprintRe.FindString(tok.Command)
			out, err := agentCmd(tgt, bin, "enroll", "--hub", "mqtts://"+hub.addr, "--id", id, "--token", tok.Token,
				"--ca-fingerprint", fp, "--dir", dir).CombinedOutput()
			if err != nil {
				t.Fatalf("enroll: %v\n%s", err, out)
			}
			first := agentStatus(t, tgt, bin, dir)
			if first.Serial == "" {
				t.Fatalf("status after enroll has no serial: %+v", first)
			}

			// A wrong fingerprint is refused before anything is sent.
			bad := strings.Replace(fp, fp[7:9], "00", 1)
			if bad == fp {
				bad = strings.Replace(fp, fp[7:9], "11", 1)
			}
			if out, err := agentCmd(tgt, bin, "enroll", "--hub", "mqtts://"+hub.addr, "--id", id+"-x", "--token", "hst_x",
				"--ca-fingerprint", bad, "--dir", t.TempDir()).CombinedOutput(); err == nil || !strings.Contains(strings.ToLower(string(out)), "fingerprint") {
				t.Errorf("enroll with a wrong fingerprint: %v\n%s", err, out)
			}

			runCmd := agentCmd(tgt, bin, "run", "--dir", dir)
			var logs bytes.Buffer
			runCmd.Stdout, runCmd.Stderr = &logs, &logs
			if err := runCmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				runCmd.Process.Signal(syscall.SIGTERM)
				runCmd.Wait()
				if t.Failed() {
					t.Logf("agent log:\n%s", logs.String())
				}
			}()
			testkit.Eventually(t, 60*time.Second, func() bool { return deviceSummary(t, cli, id).Online },
				"the hub never saw %s online", id)
			cli("renew", id)
			testkit.Eventually(t, 90*time.Second, func() bool {
				s := deviceSummary(t, cli, id)
				return s.Serial != "" && s.Serial != first.Serial
			}, "the hub never recorded %s's renewal (still serial %s)", id, first.Serial)
			renewed := deviceSummary(t, cli, id)
			testkit.Eventually(t, 30*time.Second, func() bool { return agentStatus(t, tgt, bin, dir).Serial == renewed.Serial },
				"the agent's status never showed the new serial %s", renewed.Serial)
		})
	}
}

type agentStatusJSON struct {
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"not_after"`
}

func agentStatus(t *testing.T, tgt agentTarget, bin, dir string) agentStatusJSON {
	t.Helper()
	out, err := agentCmd(tgt, bin, "status", "--dir", dir, "--json").Output()
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	var s agentStatusJSON
	if err := json.Unmarshal(out, &s); err != nil {
		t.Fatalf("status JSON: %v\n%s", err, out)
	}
	return s
}

func deviceSummary(t *testing.T, cli func(...string) []byte, id string) protocol.DeviceSummary {
	t.Helper()
	var list []protocol.DeviceSummary
	if err := json.Unmarshal(cli("devices", "--json"), &list); err != nil {
		t.Fatal(err)
	}
	for _, d := range list {
		if d.ID == id {
			return d
		}
	}
	return protocol.DeviceSummary{}
}
