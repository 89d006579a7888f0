package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// allowedDeps are the only non-standard import paths (or prefixes, ending in '/') the agent
// binary may contain: the agent's own packages, the protocol, paho and paho's own deps.
var allowedDeps = []string{
	"github.com/hearth-pki/hearth/agent/",
	"github.com/hearth-pki/hearth/protocol",
	"github.com/eclipse/paho.mqtt.golang",
	"github.com/eclipse/paho.mqtt.golang/",
	"github.com/gorilla/websocket",
	"golang.org/x/net/",
	"golang.org/x/sync/",
}

// forbiddenStd are standard packages that must not reach the binary: their presence means
// test helpers (internal/testkit) or heavy machinery leaked in.
var forbiddenStd = []string{"testing", "net/http/httptest", "os/user", "plugin"}

// TestDependencyBudget fails if hearth-agent grows a dependency beyond std, protocol and paho
// (agent/README.md: "no dependency beyond the standard library, the protocol module and the
// paho MQTT client"). It lists the packages as the release build sees them, with GOWORK=off.
func TestDependencyBudget(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.Standard}} {{.ImportPath}}", ".")
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	var n int
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		std, path, _ := strings.Cut(line, " ")
		if std == "true" {
			for _, f := range forbiddenStd {
				if path == f {
					t.Errorf("hearth-agent depends on %s", path)
				}
			}
			continue
		}
		n++
		if strings.HasSuffix(path, "/testkit") || !allowed(path) {
			t.Errorf("hearth-agent depends on %s, which is outside its budget", path)
		}
	}
	if n == 0 {
		t.Fatalf("go list found no non-standard package; the test is broken")
	}
}

func allowed(path string) bool {
	for _, a := range allowedDeps {
		if path == a || strings.HasSuffix(a, "/") && strings.HasPrefix(path, a) {
			return true
		}
	}
	return false
}
