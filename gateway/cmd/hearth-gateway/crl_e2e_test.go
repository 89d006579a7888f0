package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// agentCRLStatus is the part of `hearth-agent status --json` the CRL tests read, and the
// command's exit code.
type agentCRLStatus struct {
	Revoked       bool   `json:"revoked"`
	Reason        string `json:"revocation_reason"`
	IssuerRevoked string `json:"issuer_revoked"`
	ConnectError  string `json:"connect_error"`
	code          int
}

// crlStatus runs `hearth-agent status --json` on dir.
func (e *agentE2E) crlStatus(dir string) agentCRLStatus {
	e.t.Helper()
	out, err := agentCmd(e.tgt, e.bin, "status", "--dir", dir, "--json").Output()
	var st agentCRLStatus
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		st.code = ee.ExitCode()
	case err != nil:
		e.t.Fatalf("status: %v", err)
	}
	if err := json.Unmarshal(out, &st); err != nil {
		e.t.Fatalf("status JSON: %v\n%s", err, out)
	}
	return st
}

// restart kills agent a and runs it again on its state directory.
func (e *agentE2E) restart(a *runningAgent) {
	e.t.Helper()
	a.cmd.Process.Kill()
	<-a.exited
	a.cmd = exec.Command(e.bin, "run", "--dir", a.dir)
	a.cmd.Stdout, a.cmd.Stderr = a.logs, a.logs
	if err := a.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	a.exited = make(chan error, 1)
	go func() { a.exited <- a.cmd.Wait() }()
}

// stealIntermediate copies the hub's CA files as they are now, the intermediate's key
// included: what a thief who got the key would hold.
func stealIntermediate(t *testing.T, data string) *ca.CA {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"root.pem", "root.key", "intermediate.pem", "intermediate.key"} {
		raw, err := os.ReadFile(filepath.Join(ca.Dir(data), name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, err := ca.Load(dir, []byte("e2e passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startImpostor serves TLS on 127.0.0.1 with a broker certificate the thief's intermediate
// signed (the chain under that intermediate), and nothing else.
func startImpostor(t *testing.T, thief *ca.CA) string {
	t.Helper()
	cert, err := thief.ServerCertificate([]string{"localhost", "127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
				_, _ = c.Read(make([]byte, 1))
			}(c)
		}
	}()
	return ln.Addr().String()
}

// refusesImpostor checks that agent a, which took the root's CRL listing the compromised
// intermediate, refuses a broker presenting a chain under it (reached through the relay the
// agents dial), then comes back to the hub.
func (e *agentE2E) refusesImpostor(a *runningAgent, thief *ca.CA, hubAddr string) {
	t := e.t
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(a.dir, "crl.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(raw, []byte("BEGIN X509 CRL")); n < 2 {
		t.Fatalf("%s keeps %d CRLs, want the intermediates' and the root's", a.id, n)
	}
	e.relay.SetTarget(startImpostor(t, thief))
	e.restart(a)
	var st agentCRLStatus
	testkit.Eventually(t, 60*time.Second, func() bool {
		st = e.crlStatus(a.dir)
		return st.ConnectError != ""
	}, "%s never failed to connect to the impostor", a.id)
	if !strings.Contains(st.ConnectError, "the hub's certificate is revoked") || !strings.Contains(st.ConnectError, thief.Intermediate().Subject.CommonName) {
		t.Errorf("%s connecting to a broker under the compromised intermediate: %q; want refused as revoked", a.id, st.ConnectError)
	}
	e.relay.SetTarget(hubAddr)
	testkit.Eventually(t, 60*time.Second, func() bool { return e.summary(a.id).Online }, "%s never came back to the hub", a.id)
}

// TestRevokeOnPreviousIntermediateAgent revokes, in the middle of an intermediate rotation, a
// device still on the previous intermediate: the hub publishes that intermediate's CRL with
// the current one on the crl topic, and the device's real agent process takes it: `status`
// says revoked and exits 4.
func TestRevokeOnPreviousIntermediateAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub process and two agent processes")
	}
	agent := buildAgent(t)
	relay := testkit.StartRelay(t, "")
	data := filepath.Join(t.TempDir(), "data")
	hub := startHubProcess(t, data, "127.0.0.1:0", "--advertise", relay.Addr)
	relay.SetTarget(hub.addr)
	e := &agentE2E{t: t, tgt: agentTarget{name: "linux-native"}, bin: agent, data: data, relay: relay}
	agents := []*runningAgent{
		e.startAgent("cam-porch", "porch camera", "acme-cam"),
		e.startAgent("plug-tv", "tv plug", "plugco"),
	}
	first := e.caStatus().Intermediate

	// One canary, then one device an hour: the second stays on the previous intermediate.
	var rot protocol.CARotation
	if err := json.Unmarshal(e.cli("ca", "rotate-intermediate", "--rate", "1/h", "--json"), &rot); err != nil {
		t.Fatal(err)
	}
	issuer := func(id string) string {
		d := e.detail(id)
		for _, c := range d.Certificates {
			if c.Serial == d.Serial {
				return c.Issuer
			}
		}
		return ""
	}
	var moved, left *runningAgent
	testkit.Eventually(t, 120*time.Second, func() bool {
		for i, a := range agents {
			if issuer(a.id) == rot.Intermediate.Subject {
				moved, left = a, agents[1-i]
				return true
			}
		}
		return false
	}, "the canary never moved onto the new intermediate")
	if got := issuer(left.id); got != first.Subject {
		t.Fatalf("%s is on %q; want still on the previous intermediate %q", left.id, got, first.Subject)
	}
	if info := e.caStatus(); info.Rotation == nil || info.Rotation.State != protocol.RotationMoving || info.Rotation.Remaining != 1 {
		t.Fatalf("ca status = %+v; want the rotation moving, one device remaining", info.Rotation)
	}

	e.cli("revoke", left.id, "--reason", "keyCompromise")
	var st agentCRLStatus
	testkit.Eventually(t, 60*time.Second, func() bool {
		st = e.crlStatus(left.dir)
		return st.Revoked
	}, "%s's agent never learnt of its revocation on the previous intermediate", left.id)
	if st.code != 4 || st.Reason != string(protocol.RevokeKeyCompromise) {
		t.Errorf("status of %s = exit %d, reason %q; want exit 4, keyCompromise", left.id, st.code, st.Reason)
	}
	if st := e.crlStatus(moved.dir); st.Revoked || st.code != 0 {
		t.Errorf("status of %s (not revoked) = revoked %v, exit %d", moved.id, st.Revoked, st.code)
	}
}
