package testkit

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// mosquittoStartLimit bounds how long a starting mosquitto may take to listen.
const mosquittoStartLimit = 20 * time.Second

// Mosquitto is a real mosquitto broker on 127.0.0.1, anonymous, plain TCP, without
// persistence: what Home Assistant's Mosquitto add-on is to the hub.
type Mosquitto struct {
	// Addr is 127.0.0.1:Port.
	Addr string
	Port int

	t    testing.TB
	bin  string
	conf string

	mu  sync.Mutex
	cmd *exec.Cmd
	out *bytes.Buffer
}

// StartMosquitto starts a mosquitto on a free port and stops it when the test ends. Without
// mosquitto the test is skipped, or fails in CI (RequirePeer).
func StartMosquitto(t testing.TB) *Mosquitto {
	t.Helper()
	bin := RequirePeer(t, "mosquitto")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	m := &Mosquitto{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Port: port, t: t, bin: bin,
		conf: filepath.Join(t.TempDir(), "mosquitto.conf")}
	writeFile(t, m.conf, fmt.Appendf(nil, "listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n", port))
	m.Start()
	t.Cleanup(m.Stop)
	return m
}

// URL is the broker's address as paho takes it, tcp://127.0.0.1:Port.
func (m *Mosquitto) URL() string { return "tcp://" + m.Addr }

// Start starts the broker again after Stop, on the same port, with no retained message: a
// restarted broker without persistence.
func (m *Mosquitto) Start() {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return
	}
	m.out = &bytes.Buffer{}
	cmd := exec.Command(m.bin, "-c", m.conf)
	cmd.Stdout, cmd.Stderr = m.out, m.out
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("start mosquitto: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	m.cmd = cmd
	deadline := time.Now().Add(mosquittoStartLimit)
	for {
		c, err := net.Dial("tcp", m.Addr)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			m.cmd = nil
			m.t.Fatalf("mosquitto exited before listening on %s:\n%s", m.Addr, m.out)
		default:
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("mosquitto did not listen on %s within %s: %v\n%s", m.Addr, mosquittoStartLimit, err, m.out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop kills the broker; a stopped broker may be started again.
func (m *Mosquitto) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Kill()
	m.cmd.Process.Wait()
	m.cmd = nil
}
