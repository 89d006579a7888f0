package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-pki/hearth/agent/internal/testkit"
)

// releaseGCFlags are scripts/build-agents.sh's compiler flags: no inlining except in the
// standard library's crypto, math and internal packages (size over speed where speed does
// not matter).
var releaseGCFlags = []string{"-gcflags=all=-l", "-gcflags=crypto/...=", "-gcflags=math/...=", "-gcflags=internal/...=", "-gcflags=vendor/...="}

// TestCrossBuildRunsUnderQEMU cross-builds the agent as scripts/build-agents.sh does for two
// of the smallest targets (MIPS little-endian soft-float, ARMv5) and runs "hearth-agent
// version" on them under qemu-user.
func TestCrossBuildRunsUnderQEMU(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-builds take a while; skipped with -short")
	}
	for _, tc := range []struct {
		name, qemu string
		env        []string
	}{
		{"mipsle softfloat", "qemu-mipsel-static", []string{"GOARCH=mipsle", "GOMIPS=softfloat"}},
		{"arm v5", "qemu-arm-static", []string{"GOARCH=arm", "GOARM=5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			qemu := testkit.RequirePeer(t, tc.qemu)
			bin := filepath.Join(t.TempDir(), "hearth-agent")
			args := append([]string{"build", "-trimpath"}, releaseGCFlags...)
			args = append(args, "-ldflags", "-s -w -X main.version=qemu-test", "-o", bin, ".")
			build := exec.Command("go", args...)
			build.Env = append(os.Environ(), append([]string{"GOWORK=off", "CGO_ENABLED=0", "GOOS=linux"}, tc.env...)...)
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("go build (%s): %v\n%s", tc.name, err, out)
			}
			// The size budget: a stripped mipsle agent fits 7.0 MiB (scripts/build-agents.sh
			// builds the release the same way).
			if fi, err := os.Stat(bin); err != nil {
				t.Fatal(err)
			} else if budget := int64(7 << 20); strings.HasPrefix(tc.name, "mipsle") && fi.Size() > budget {
				t.Errorf("stripped mipsle agent is %d bytes (%.2f MiB), over the 7.0 MiB budget", fi.Size(), float64(fi.Size())/(1<<20))
			}
			out, err := exec.Command(qemu, bin, "version").CombinedOutput()
			if err != nil {
				t.Fatalf("%s hearth-agent version: %v\n%s", tc.qemu, err, out)
			}
			if !strings.HasPrefix(string(out), "hearth-agent qemu-test ") {
				t.Errorf("hearth-agent version under %s printed %q, want it to start with %q", tc.qemu, out, "hearth-agent qemu-test ")
			}
		})
	}
}
