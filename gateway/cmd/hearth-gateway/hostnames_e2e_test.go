package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
)

// TestHostnamesChangeWithoutRestart: a hub process reads its hostnames from its
// configuration file; after the file changes, SIGHUP puts a broker certificate for the new
// names in service without a restart (the process, its port and its data stay).
func TestHostnamesChangeWithoutRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub process")
	}
	dir := t.TempDir()
	data, conf := filepath.Join(dir, "data"), filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(conf, []byte("hostnames: [localhost, 127.0.0.1]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(buildGateway(t), "serve", "--data", data, "--listen", "127.0.0.1:0", "--http", "off", "--config", conf, "--log-level", "warn")
	cmd.Env = append(os.Environ(), "HEARTH_CA_PASSPHRASE=e2e passphrase", "HEARTH_ADMIN_PASSWORD="+e2eAdminPassword)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := listenLine.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	var addr string
	select {
	case addr = <-found:
	case <-time.After(30 * time.Second):
		t.Fatal("hub did not report its listener")
	}
	rootPEM, err := os.ReadFile(filepath.Join(data, "ca", "root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	dial := func(name string) error {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: name})
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial("hub.example"); err == nil {
		t.Fatal("the broker certificate names hub.example before the change")
	}
	if err := dial("localhost"); err != nil {
		t.Fatalf("dial localhost before the change = %v", err)
	}
	if err := os.WriteFile(conf, []byte("hostnames: [hub.example, 127.0.0.1]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, func() bool { return dial("hub.example") == nil },
		"the broker never presented a certificate for hub.example after SIGHUP")
	if err := dial("localhost"); err == nil {
		t.Error("after the change the broker certificate still names localhost")
	}
	if cmd.ProcessState != nil {
		t.Fatal("the hub exited on SIGHUP")
	}
}
