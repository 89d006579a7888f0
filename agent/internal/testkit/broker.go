package testkit

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Broker is a running mosquitto with one TLS listener on 127.0.0.1.
type Broker struct {
	// URL is the agent's hub URL, mqtts://127.0.0.1:<port>.
	URL string
	// Addr is host:port.
	Addr string
	// CA is the CA whose intermediate signed the server certificate and whose chain
	// verifies client certificates.
	CA *CA
	// PresentsRoot reports whether the TLS handshake includes the root certificate.
	PresentsRoot bool
	// Cert is the broker's server certificate.
	Cert *x509.Certificate
}

// StartBroker starts mosquitto with a TLS listener whose server certificate (for 127.0.0.1)
// is issued by ca. presentRoot puts the root in the presented chain, as the hub may do;
// otherwise only the leaf and the intermediate are sent, as most servers do. Client
// certificates are verified against ca when given but not required, and anonymous clients
// are allowed (the responder decides). Without mosquitto the test is skipped, or fails in CI
// (RequirePeer); the broker is killed at cleanup.
func StartBroker(t testing.TB, ca *CA, presentRoot bool) *Broker {
	t.Helper()
	bin := RequirePeer(t, "mosquitto")
	dir := t.TempDir()
	leaf, key := ca.ServerCert(t, "127.0.0.1")
	chain := PEM(leaf, ca.Intermediate)
	if presentRoot {
		chain = PEM(leaf, ca.Intermediate, ca.Root)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	port := freePort(t)
	conf := fmt.Sprintf(`listener %d 127.0.0.1
cafile %s
certfile %s
keyfile %s
require_certificate false
allow_anonymous true
persistence false
log_dest stderr
log_dest topic
log_type error
log_type warning
log_type notice
user root
`, port, write("ca.pem", ca.ChainPEM()), write("server.pem", chain), write("server.key", key))
	confPath := write("mosquitto.conf", []byte(conf))

	var stderr bytes.Buffer
	cmd := exec.Command(bin, "-c", confPath)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("mosquitto exited: %v\n%s", err, stderr.String())
		default:
		}
		if i > 500 {
			t.Fatalf("mosquitto does not listen on %s: %s", addr, stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &Broker{URL: "mqtts://" + addr, Addr: addr, CA: ca, PresentsRoot: presentRoot, Cert: leaf}
}

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
