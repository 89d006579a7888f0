package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// allowedDeps are the only non-standard import paths (or prefixes, ending in '/') the agent
// binary may contain: the agent's own packages, the protocol and paho's packet codec. Paho's
// client is not among them: it links its WebSocket and proxy support, and net/http with them
// (internal/mqtt is the agent's client; issue 18).
var allowedDeps = []string{
	"github.com/hearth-pki/hearth/agent/",
	"github.com/hearth-pki/hearth/protocol",
	"github.com/hearth-pki/hearth/protocol/jsoncodec",
	"github.com/eclipse/paho.mqtt.golang/packets",
}

// forbiddenStd are standard packages (or prefixes, ending in '/') that must not reach the
// binary: test helpers (internal/testkit) leaking in, or machinery the agent does not use
// and that costs size on every device — HTTP and what comes with it (compression, MIME,
// IDNA), templates, other encoders, profiling — and encoding/json and log/slog (which imports
// it): from Go 1.27 they link encoding/json/v2, about 0.7 MiB on mipsle; the agent has
// protocol/jsoncodec and internal/log instead.
var forbiddenStd = []string{
	"testing", "net/http", "net/http/", "net/textproto", "net/rpc", "net/smtp", "net/mail",
	"compress/", "archive/", "mime", "mime/", "vendor/golang.org/x/net/idna", "vendor/golang.org/x/net/http/",
	"text/template", "html/template", "encoding/xml", "encoding/gob", "encoding/csv",
	"expvar", "runtime/pprof", "os/user", "plugin", "database/sql",
	"encoding/json", "encoding/json/", "log/slog", "log/slog/",
}

// TestDependencyBudget fails if hearth-agent grows a dependency beyond std, protocol and paho's
// packet codec, or links a forbidden standard package (agent/README.md, "Sizes"). It lists the
// packages as the release build sees them, with GOWORK=off.
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
			if matches(path, forbiddenStd) {
				t.Errorf("hearth-agent depends on the standard package %s, which is outside its budget", path)
			}
			continue
		}
		n++
		if strings.HasSuffix(path, "/testkit") || !matches(path, allowedDeps) {
			t.Errorf("hearth-agent depends on %s, which is outside its budget", path)
		}
	}
	if n == 0 {
		t.Fatalf("go list found no non-standard package; the test is broken")
	}
}

// matches reports whether path is one of list or under one of its prefixes (ending in '/').
func matches(path string, list []string) bool {
	for _, a := range list {
		if path == a || strings.HasSuffix(a, "/") && strings.HasPrefix(path, a) {
			return true
		}
	}
	return false
}
