package alert

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-pki/hearth/gateway/internal/hass"
	"github.com/hearth-pki/hearth/gateway/internal/monitor"
	"github.com/hearth-pki/hearth/protocol"
)

// TestDocsListEveryAlert keeps addon/DOCS.md complete: a table row and an automation for each
// alert kind, every event type of the Alert entity, and a row for every cause with its class.
func TestDocsListEveryAlert(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "addon", "DOCS.md"))
	if err != nil {
		t.Fatal(err)
	}
	docs := string(b)
	for _, k := range monitor.FindingKinds() {
		if !strings.Contains(docs, "| `"+string(k)+"` |") {
			t.Errorf("DOCS.md has no table row for alert kind %s", k)
		}
		if !strings.Contains(docs, "kind == '"+string(k)+"'") {
			t.Errorf("DOCS.md has no automation for alert kind %s", k)
		}
		if titles[k] == "" {
			t.Errorf("alert kind %s has no title", k)
		}
	}
	for _, e := range hass.EventTypes() {
		if !strings.Contains(docs, "`"+e+"`") {
			t.Errorf("DOCS.md does not name the Alert entity's event type %s", e)
		}
	}
	for _, c := range protocol.Causes() {
		if row := "| `" + string(c.Cause) + "` | " + string(c.Class) + " |"; !strings.Contains(docs, row) {
			t.Errorf("DOCS.md has no row %q", row)
		}
	}
}
