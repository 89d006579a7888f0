package device

import (
	"crypto/x509"
	"encoding/json"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/keystore"
	"github.com/hearth-pki/hearth/agent/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// TestDeviceIDRule checks the agent's entry points against the protocol's table of device
// ids, the table the hub's CA and broker are checked against too: the configuration, the CSR
// and the check of an issued certificate accept exactly the ids protocol.ValidateDeviceID
// accepts.
func TestDeviceIDRule(t *testing.T) {
	b, err := os.ReadFile("../../protocol/testdata/vectors/device_ids.json")
	if err != nil {
		t.Fatal(err)
	}
	var vectors []struct {
		ID    string `json:"id"`
		Valid bool   `json:"valid"`
	}
	if err := json.Unmarshal(b, &vectors); err != nil {
		t.Fatal(err)
	}
	ca := testkit.NewCA(t, "Test")
	pinned := []*x509.Certificate{ca.Intermediate, ca.Root}
	key, err := keystore.GenerateKey(protocol.KeyP256)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, tt := range vectors {
		t.Run(strconv.Quote(tt.ID), func(t *testing.T) {
			cfg := Config{Dir: t.TempDir(), HubURL: "mqtts://hearth.local:8883", DeviceID: tt.ID}
			if _, err := cfg.resolve(false); (err == nil) != tt.Valid {
				t.Errorf("Config{DeviceID: %q}.resolve = %v, want valid=%v", tt.ID, err, tt.Valid)
			}
			if _, err := keystore.NewCSR(key, tt.ID); (err == nil) != tt.Valid {
				t.Errorf("keystore.NewCSR(%q) = %v, want valid=%v", tt.ID, err, tt.Valid)
			}
			if _, err := url.Parse(protocol.DeviceURN(tt.ID)); err != nil || !printableASCII(tt.ID) {
				return // no certificate can name this id
			}
			leaf := ca.Issue(t, key.Public(), tt.ID, now.Add(-time.Minute), now.Add(time.Hour))
			if _, err := verifyIssued(string(testkit.PEM(leaf, ca.Intermediate)), key, tt.ID, pinned, now); (err == nil) != tt.Valid {
				t.Errorf("verifyIssued(certificate for %q) = %v, want valid=%v", tt.ID, err, tt.Valid)
			}
		})
	}
}

// printableASCII reports whether s is printable ASCII, as x509 URIs must be.
func printableASCII(s string) bool {
	for _, c := range []byte(s) {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}
