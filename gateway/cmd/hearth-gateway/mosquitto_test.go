package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
)

// TestMosquittoSubAsAdmin checks what the README promises people: a real mosquitto_sub,
// logged in as an admin over TLS, reads the hub's retained topics and they make sense.
func TestMosquittoSubAsAdmin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real hub process")
	}
	sub := testkit.RequirePeer(t, "mosquitto_sub")
	data := t.TempDir()
	hub := startHubProcess(t, data, "127.0.0.1:0")
	host, port, _ := strings.Cut(hub.addr, ":")
	args := []string{"-h", host, "-p", port, "--cafile", filepath.Join(data, "ca", "root.pem"), "-V", "mqttv311",
		"-u", "admin", "-P", e2eAdminPassword, "-t", "hearth/bridge/#", "-t", "hearth/v1/ca", "-v", "-C", "4", "-W", "10"}
	out, err := exec.Command(sub, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_sub as admin: %v\n%s", err, out)
	}
	for _, want := range []string{"hearth/bridge/state online", `hearth/bridge/info {"v":1,"version":`, "hearth/v1/ca -----BEGIN CERTIFICATE-----"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("mosquitto_sub output lacks %q:\n%s", want, out)
		}
	}
	// A wrong password is refused.
	args[11] = "wrong password"
	if out, err := exec.Command(sub, args...).CombinedOutput(); err == nil {
		t.Errorf("mosquitto_sub with a wrong admin password succeeded:\n%s", out)
	}
}
