package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLoadLimits checks the limits block: read from the file, zero values left for the
// parts' defaults, negative values refused with the setting's name.
func TestLoadLimits(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hearth.yaml")
	os.WriteFile(file, []byte("limits:\n  max_pending_per_source: 64\n  sessions_per_device: 2\n  certificates_per_hour: 3\n  renew_cooldown: 5m\n"), 0o600)
	c, err := Load([]string{"--config", file}, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := Limits{MaxPendingPerSource: 64, SessionsPerDevice: 2, CertificatesPerHour: 3, RenewCooldown: 5 * time.Minute}
	if c.Limits != want {
		t.Errorf("Limits = %+v, want %+v", c.Limits, want)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("limits:\n  max_connections: -1\n"), 0o600)
	if _, err := Load([]string{"--config", bad}, envOf(nil)); err == nil || !strings.Contains(err.Error(), "limits") {
		t.Errorf("Load(negative limit) = %v, want an error naming limits", err)
	}
}
