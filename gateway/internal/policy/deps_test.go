package policy

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the policy engine pure: the standard library, yaml.v3
// and protocol (itself standard library only, enforced by its own test), for the
// wire codes a refusal carries; nothing else (no gorm, no mochi).
func TestDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	out, err := exec.CommandContext(t.Context(), goTool, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	allowed := map[string]bool{
		"go.yaml.in/yaml/v3":                                   true,
		"github.com/hearth-pki/hearth/protocol":                true,
		"github.com/hearth-pki/hearth/protocol/jsoncodec":      true,
		"github.com/hearth-pki/hearth/gateway/internal/policy": true,
	}
	for dep := range strings.FieldsSeq(string(out)) {
		if !allowed[dep] {
			t.Errorf("policy imports %s; only the standard library, go.yaml.in/yaml/v3 and protocol (with its jsoncodec) are allowed", dep)
		}
	}
}
