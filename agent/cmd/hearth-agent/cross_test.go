package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-pki/hearth/agent/internal/testkit"
)

// mipsleBudget is the size budget of the stripped mipsle (soft-float) agent, the smallest
// devices' target: 6.5 MiB (issue 18). scripts/build-agents.sh enforces it too.
const mipsleBudget = 13 << 19

// TestCrossBuildRunsUnderQEMU builds two of the smallest targets (MIPS little-endian
// soft-float, ARMv5) with scripts/build-agents.sh itself, so with the shipped flags, checks the
// mipsle budget and runs "hearth-agent version" on both under qemu-user. All nine targets run
// end to end against a real hub in gateway/cmd/hearth-gateway (TestAgentsEndToEnd).
func TestCrossBuildRunsUnderQEMU(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-builds take a while; skipped with -short")
	}
	targets := []struct{ name, qemu string }{
		{"linux-mipsle", "qemu-mipsel-static"},
		{"linux-armv5", "qemu-arm-static"},
	}
	testkit.RequirePeer(t, "xz") // the script reports each binary's xz size
	dist := t.TempDir()
	build := exec.Command("bash", filepath.Join("..", "..", "..", "scripts", "build-agents.sh"), "qemu-test")
	build.Env = append(os.Environ(), "DIST="+dist, "TARGETS=linux-mipsle linux-armv5")
	out, err := build.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/build-agents.sh: %v\n%s", err, out)
	}
	t.Logf("scripts/build-agents.sh:\n%s", out)

	fi, err := os.Stat(filepath.Join(dist, "hearth-agent-linux-mipsle"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > mipsleBudget {
		t.Errorf("stripped mipsle agent is %d bytes (%.2f MiB), over the 6.5 MiB budget", fi.Size(), float64(fi.Size())/(1<<20))
	}
	for _, tc := range targets {
		t.Run(tc.name, func(t *testing.T) {
			qemu := testkit.RequirePeer(t, tc.qemu)
			out, err := exec.Command(qemu, filepath.Join(dist, "hearth-agent-"+tc.name), "version").CombinedOutput()
			if err != nil {
				t.Fatalf("%s hearth-agent version: %v\n%s", tc.qemu, err, out)
			}
			if !strings.HasPrefix(string(out), "hearth-agent qemu-test ") {
				t.Errorf("hearth-agent version under %s printed %q, want it to start with %q", tc.qemu, out, "hearth-agent qemu-test ")
			}
		})
	}
}
