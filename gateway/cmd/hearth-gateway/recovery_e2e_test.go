package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// recoveryPolicy gives device porch-cam a day of grace after expiry; every other device none.
const recoveryPolicy = `classes:
  - name: lenient
    match: {devices: [porch-cam]}
    grace: 1d
`

// expireWhileDown replaces device id's certificate, while the hub is stopped, by one for the
// same key that the hub's CA issued and that expired an hour ago, recorded active in the
// inventory and installed in the agent's state directory: a certificate that ran out while
// the hub was down (the policy's lifetimes are an hour at least).
func expireWhileDown(t *testing.T, data, dir, id string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "current.pem"))
	if err != nil {
		t.Fatal(err)
	}
	var key crypto.Signer
	for rest := raw; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "PRIVATE KEY" {
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			key = k.(crypto.Signer)
		}
	}
	now := time.Now().UTC().Truncate(time.Second)
	authority, err := ca.Open(filepath.Join(data, "ca"), []byte("e2e passphrase"), now)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: id}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(der)
	leaf, err := authority.SignLeaf(csr, id, policy.Profile{NotBefore: now.Add(-3 * time.Hour), NotAfter: now.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	leafPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})
	store, err := inventory.Open(context.Background(), filepath.Join(data, "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	serial := leaf.SerialNumber.Text(16)
	if err := store.RecordIssuance(context.Background(), inventory.Issuance{
		Device: inventory.Device{ID: id, Mechanism: inventory.MechanismAgent},
		Cert: inventory.Certificate{Serial: serial, NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, Issuer: leaf.Issuer.String(),
			PEM: string(leafPEM), CreatedAt: now},
		Attempt: inventory.Attempt{RequestID: "expired-" + id, StartedAt: now, FinishedAt: now},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Commit(context.Background(), id, "expired-"+id, serial, false, now); err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	bundle := append(leafPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: authority.Intermediate().Raw})...)
	bundle = append(bundle, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	if err := os.WriteFile(filepath.Join(dir, "current.pem"), bundle, 0o600); err != nil {
		t.Fatal(err)
	}
	return serial
}

// TestRecoveryAfterExpiryAgents is issue 12's proof of recovery with real processes: two
// hearth-agent processes whose certificates expired while the hub was down. When the hub
// returns, the one within its class's grace renews by itself (a recovery session: one
// recovery CSR on the expired certificate) and carries on; the one past its grace is told
// to enroll again, which its status and the hub's problems say.
func TestRecoveryAfterExpiryAgents(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real hub process and real agents")
	}
	agent := buildAgent(t)
	data := t.TempDir()
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(pol, []byte(recoveryPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	hub := startHubProcess(t, data, "127.0.0.1:0", "--policy", pol)
	e := &agentE2E{t: t, tgt: agentTarget{name: "linux-amd64"}, bin: agent, data: data}
	dirs := map[string]string{}
	for _, id := range []string{"porch-cam", "door-bell"} {
		var tok protocol.TokenCreated
		if err := json.Unmarshal(e.cli("token", "create", "--device", id, "--json"), &tok); err != nil {
			t.Fatal(err)
		}
		dirs[id] = t.TempDir()
		if out, err := exec.Command(agent, "enroll", "--hub", "mqtts://"+hub.addr, "--id", id, "--token", tok.Token,
			"--ca-fingerprint", fingerprintRe.FindString(tok.Command), "--dir", dirs[id]).CombinedOutput(); err != nil {
			t.Fatalf("hearth-agent enroll %s: %v\n%s", id, err, out)
		}
	}
	hub.cmd.Process.Signal(syscall.SIGTERM)
	hub.cmd.Wait()
	expired := map[string]string{}
	for id, dir := range dirs {
		expired[id] = expireWhileDown(t, data, dir, id)
		if out, err := exec.Command(agent, "status", "--dir", dir).CombinedOutput(); err == nil || !strings.Contains(string(out), "EXPIRED") {
			t.Fatalf("status of %s with its expired certificate: %v\n%s", id, err, out)
		}
	}

	startHubProcess(t, data, hub.addr, "--policy", pol)
	for id, dir := range dirs {
		cmd := exec.Command(agent, "run", "--dir", dir)
		logs := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			if t.Failed() {
				t.Logf("%s agent log:\n%s", id, logs.String())
			}
		})
	}
	// Within the grace: renewed by itself, on a new serial, and connected with it.
	testkit.Eventually(t, 90*time.Second, func() bool {
		s := e.summary("porch-cam")
		return s.Serial != "" && s.Serial != expired["porch-cam"] && s.Online
	}, "porch-cam never recovered from its expired certificate %s", expired["porch-cam"])
	if out, err := exec.Command(agent, "status", "--dir", dirs["porch-cam"]).CombinedOutput(); err != nil {
		t.Errorf("status of the recovered agent: %v\n%s", err, out)
	}
	// Past the grace: told to enroll again.
	testkit.Eventually(t, 90*time.Second, func() bool {
		// status exits 3 (expired); its JSON is still printed.
		out, _ := exec.Command(agent, "status", "--dir", dirs["door-bell"], "--json").Output()
		var st agentStatusJSON
		return json.Unmarshal(out, &st) == nil && strings.Contains(st.LastError, "expired") && strings.Contains(st.LastError, "enroll the device again")
	}, "door-bell was never told to enroll again")
	if s := e.summary("door-bell"); !slices.Contains(s.Problems, "expired") || s.Serial != expired["door-bell"] {
		t.Errorf("hub summary of door-bell = serial %s problems %v, want %s with expired", s.Serial, s.Problems, expired["door-bell"])
	}
}
