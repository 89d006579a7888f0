package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// gatewayBinary is built once per test run by buildGateway.
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func buildGateway(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hearth-gateway-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "hearth-gateway")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// hubProcess is a running `hearth-gateway serve`.
type hubProcess struct {
	cmd  *exec.Cmd
	addr string
	data string
}

// e2eAdminPassword is the admin password of the hubs the end-to-end tests start.
const e2eAdminPassword = "e2e admin password"

var listenLine = regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)

func startHubProcess(t *testing.T, data, listen string, extra ...string) *hubProcess {
	t.Helper()
	args := append([]string{"serve", "--data", data, "--listen", listen, "--http", "off",
		"--hostnames", "localhost,127.0.0.1", "--log-level", "warn"}, extra...)
	cmd := exec.Command(buildGateway(t), args...)
	cmd.Env = append(os.Environ(), "HEARTH_CA_PASSPHRASE=e2e passphrase", "HEARTH_ADMIN_PASSWORD="+e2eAdminPassword)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
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
	select {
	case addr := <-found:
		return &hubProcess{cmd: cmd, addr: addr, data: data}
	case <-time.After(30 * time.Second):
		t.Fatal("hub did not report its listener")
		return nil
	}
}

// TestSIGKILLDuringIssuance kills the hub in the middle of a burst of enrollments and checks
// that every certificate a device received is in the inventory after a restart.
func TestSIGKILLDuringIssuance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real hub processes")
	}
	data := t.TempDir()
	hub := startHubProcess(t, data, "127.0.0.1:0")
	const devices = 60
	tokens := make([]string, devices)
	for i := range devices {
		var out, errb bytes.Buffer
		err := run(t.Context(), []string{"token", "create", "--device", fmt.Sprintf("dev-%03d", i), "--data", data, "--json"}, nil, &out, &errb, os.Getenv)
		if err != nil {
			t.Fatalf("token create: %v %s", err, errb.String())
		}
		var tok struct{ Token string }
		if err := json.Unmarshal(out.Bytes(), &tok); err != nil {
			t.Fatal(err)
		}
		tokens[i] = tok.Token
	}
	root := readRoot(t, data)
	csrs := make([]string, devices)
	for i := range csrs {
		_, csrs[i] = testkit.KeyAndCSR(t, fmt.Sprintf("dev-%03d", i))
	}

	var mu sync.Mutex
	var delivered []string
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	for i := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("dev-%03d", i)
			if serial, err := enrollOnce(ctx, hub.addr, root, id, tokens[i], csrs[i]); err == nil {
				mu.Lock()
				delivered = append(delivered, serial)
				mu.Unlock()
			}
		}()
	}
	// Kill the hub once some, but not all, certificates were delivered.
	testkit.Eventually(t, 60*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(delivered) >= devices/4
	}, "fewer than %d of %d certificates delivered", devices/4, devices)
	hub.cmd.Process.Signal(syscall.SIGKILL)
	hub.cmd.Wait()
	wg.Wait()
	mu.Lock()
	got := append([]string(nil), delivered...)
	mu.Unlock()
	if len(got) == 0 {
		t.Fatal("no certificate was delivered before the kill")
	}

	store, err := inventory.Open(t.Context(), filepath.Join(data, "hearth.db"))
	if err != nil {
		t.Fatalf("reopen inventory after SIGKILL: %v", err)
	}
	for _, s := range got {
		if _, err := store.Certificate(t.Context(), s); err != nil {
			t.Errorf("certificate %s was delivered but is not in the inventory: %v", s, err)
		}
	}
	if err := store.VerifyAudit(t.Context()); err != nil {
		t.Errorf("audit chain after SIGKILL: %v", err)
	}
	store.Close()
	t.Logf("%d of %d certificates delivered before SIGKILL; all in the inventory", len(got), devices)

	// The hub starts again on the same data.
	startHubProcess(t, data, "127.0.0.1:0")
}

func readRoot(t *testing.T, data string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, "ca", "root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// enrollOnce logs in with a token, sends csr (PEM) and returns the delivered serial.
func enrollOnce(ctx context.Context, addr string, root *x509.Certificate, id, token, csr string) (string, error) {
	roots := x509.NewCertPool()
	roots.AddCert(root)
	opts := mqtt.NewClientOptions().AddBroker("tls://" + addr).SetClientID(id).SetUsername(id).SetPassword(token).
		SetTLSConfig(&tls.Config{RootCAs: roots, ServerName: "localhost"}).SetProtocolVersion(4).SetAutoReconnect(false).
		SetConnectTimeout(10 * time.Second)
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		return "", fmt.Errorf("connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	var topics protocol.Topics
	got := make(chan []byte, 1)
	if tok := c.Subscribe(topics.Device(id, protocol.KindCert), 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case got <- m.Payload():
		default:
		}
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return "", fmt.Errorf("subscribe: %v", tok.Error())
	}
	b, _ := protocol.Encode(&protocol.CSR{V: 1, RequestID: "e1", Reason: protocol.ReasonEnroll, Time: time.Now(), CSR: csr})
	c.Publish(topics.Device(id, protocol.KindCSR), 1, false, b)
	select {
	case p := <-got:
		var reply protocol.Cert
		if err := protocol.Decode(p, &reply); err != nil || reply.Error != nil {
			return "", fmt.Errorf("reply: %v %v", err, reply.Error)
		}
		return reply.Serial, nil
	case <-ctx.Done():
		return "", ctx.Err()
	case <-time.After(15 * time.Second):
		return "", fmt.Errorf("no reply")
	}
}
