package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
)

// replicasDir is the deployment example with three hub replicas, three broker nodes and
// PostgreSQL (gateway/deploy/replicas/README.md).
const replicasDir = "../../deploy/replicas"

// readExample returns the example file name with every prefix in dirs (an installed path
// such as /etc/hearth/) replaced by its directory in the test: the only change the tests
// make to the files, besides the listeners of the broker nodes.
func readExample(t *testing.T, name string, dirs map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(replicasDir, name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for from, to := range dirs {
		s = strings.ReplaceAll(s, from, to)
	}
	return s
}

// TestReplicasExampleHubConfigs loads each replica's configuration of the deployment
// example through the hub's own loader (with the broker secrets it reads at load) and
// checks that the three are replicas of one installation: PostgreSQL storage without a
// password in the DSN, the NATS broker with all three nodes, distinct replica ids, and
// secrets outside the data directory.
func TestReplicasExampleHubConfigs(t *testing.T) {
	etc := t.TempDir()
	for name, body := range map[string]string{
		"nats-hub-password": "hub-secret\n", "nats-sys-password": "sys-secret\n",
		"nats-issuer.nk": "SAABOQGPRXOXDYQLUUXWPVAMV5BTCOXNJZV6APMR664ZASDAFFQPI4YLGY\n",
	} {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]string{}
	for i := 1; i <= 3; i++ {
		file := fmt.Sprintf("hub-%d.yaml", i)
		t.Run(file, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), file)
			body := readExample(t, file, map[string]string{"/etc/hearth/": etc + "/"})
			if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			data := t.TempDir()
			cfg, err := config.Load([]string{"--config", path, "--data", data}, func(string) string { return "" })
			if err != nil {
				t.Fatalf("config.Load(%s) = %v, want the example accepted", file, err)
			}
			want := fmt.Sprintf("hub-%d", i)
			if cfg.ReplicaID != want {
				t.Errorf("%s: replica_id = %q, want %q (the unit's instance name)", file, cfg.ReplicaID, want)
			}
			if other, ok := seen[cfg.ReplicaID]; ok {
				t.Errorf("%s: replica_id %q is also %s's", file, cfg.ReplicaID, other)
			}
			seen[cfg.ReplicaID] = file
			if cfg.Storage.Driver != config.DriverPostgres || !cfg.Storage.Replicated() {
				t.Errorf("%s: storage.driver = %q, want %q", file, cfg.Storage.Driver, config.DriverPostgres)
			}
			if !strings.Contains(cfg.Storage.DSN, "sslmode=verify-full") || strings.Contains(cfg.Storage.DSN, "password") {
				t.Errorf("%s: storage.dsn = %q, want sslmode=verify-full and no password", file, cfg.Storage.DSN)
			}
			if cfg.Storage.PasswordFile != filepath.Join(etc, "pg-password") {
				t.Errorf("%s: storage.password_file = %q, want /etc/hearth/pg-password", file, cfg.Storage.PasswordFile)
			}
			b := cfg.Broker
			if b.Mode != config.BrokerNATS {
				t.Errorf("%s: broker.mode = %q, want %q", file, b.Mode, config.BrokerNATS)
			}
			for j := 1; j <= 3; j++ {
				if len(b.URLs) != 3 || b.URLs[j-1] != fmt.Sprintf("nats://nats-%d.hearth.lan:4222", j) {
					t.Fatalf("%s: broker.urls = %q, want the three nodes' client URLs", file, b.URLs)
				}
				if len(b.MQTT) != 3 || b.MQTT[j-1] != fmt.Sprintf("nats-%d.hearth.lan:8883", j) {
					t.Fatalf("%s: broker.mqtt = %q, want the three nodes' MQTT listeners", file, b.MQTT)
				}
			}
			if b.User != "hub" || b.SystemUser != "sys" || b.Account != "HEARTH" {
				t.Errorf("%s: broker user, system_user, account = %q, %q, %q, want hub, sys, HEARTH (the nodes' accounts)", file, b.User, b.SystemUser, b.Account)
			}
			if b.Password != "hub-secret" || b.SystemPassword != "sys-secret" || !strings.HasPrefix(b.IssuerSeed, "SA") {
				t.Errorf("%s: broker secrets read = %q, %q, %q, want the files' first lines", file, b.Password, b.SystemPassword, b.IssuerSeed)
			}
			if cfg.CAPassphraseFile != filepath.Join(etc, "ca-passphrase") || cfg.PolicyFile != filepath.Join(etc, "policy.yaml") {
				t.Errorf("%s: ca_passphrase_file, policy_file = %q, %q, want the shared files in /etc/hearth", file, cfg.CAPassphraseFile, cfg.PolicyFile)
			}
			if cfg.Advertise != "mqtt.hearth.lan:8883" || cfg.HTTPListen != "0.0.0.0:8099" {
				t.Errorf("%s: advertise, http_listen = %q, %q, want the load balancer's name and every address", file, cfg.Advertise, cfg.HTTPListen)
			}
		})
	}
}

// TestReplicasExampleNATSNodes runs the real hearth-nats with the three node configurations
// of the deployment example, as a cluster on 127.0.0.1: the MQTT certificates are issued by
// `ca broker-cert` and the secrets come from the environment, as under the unit. Only the
// installed directories, the listeners and the route addresses are swapped for the test's.
// Each node must come up with its MQTT listener and its routes to the two others, and stop
// cleanly on SIGTERM; a node without the environment's issuer must refuse to start.
func TestReplicasExampleNATSNodes(t *testing.T) {
	bin := buildNATS(t)
	data, etc, state := t.TempDir(), t.TempDir(), t.TempDir()
	const passphrase = "replicas-example-passphrase"
	env := func(k string) string {
		if k == ca.PassphraseEnv {
			return passphrase
		}
		return ""
	}
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"ca", "init", "--data", data}, nil, &out, &errb, env); err != nil {
		t.Fatalf("ca init: %v %s", err, errb.String())
	}
	akp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	issuer, _ := akp.PublicKey()
	secrets := []string{"HEARTH_NATS_HUB_PASSWORD=hub-secret", "HEARTH_NATS_SYS_PASSWORD=sys-secret"}

	ports := freePorts(t, 9) // client, route, MQTT of each node
	dirs := map[string]string{"/etc/hearth-nats/": etc + "/", "/var/lib/hearth-nats/": state + "/"}
	for i := range 3 {
		dirs[fmt.Sprintf("nats-%d.hearth.lan:6222", i+1)] = fmt.Sprintf("127.0.0.1:%d", ports[3*i+1])
	}
	type node struct {
		name string
		conf string
		cmd  *exec.Cmd
		logs *syncBuffer
		done chan struct{} // closed when the process has exited, with err
		err  error
	}
	var nodes []*node
	for i := range 3 {
		n := &node{name: fmt.Sprintf("nats-%d", i+1), logs: &syncBuffer{}, done: make(chan struct{})}
		certDir := filepath.Join(etc, n.name)
		errb.Reset()
		if err := run(t.Context(), []string{"ca", "broker-cert", "--data", data, "--hosts", n.name + ".hearth.lan,mqtt.hearth.lan", "--out", certDir}, nil, &out, &errb, env); err != nil {
			t.Fatalf("ca broker-cert: %v %s", err, errb.String())
		}
		body := readExample(t, n.name+".conf", dirs)
		for from, port := range map[string]int{"0.0.0.0:4222": ports[3*i], "0.0.0.0:6222": ports[3*i+1], "0.0.0.0:8883": ports[3*i+2]} {
			if !strings.Contains(body, "listen: "+from) {
				t.Fatalf("%s.conf has no listen: %s", n.name, from)
			}
			body = strings.ReplaceAll(body, "listen: "+from, fmt.Sprintf("listen: 127.0.0.1:%d", port))
		}
		if strings.Contains(body, ".hearth.lan") {
			t.Fatalf("%s.conf names a host the test does not replace:\n%s", n.name, body)
		}
		n.conf = filepath.Join(etc, n.name+".conf")
		if err := os.WriteFile(n.conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}

	// Without HEARTH_NATS_ISSUER in the environment the configuration does not parse.
	bad := exec.Command(bin, "-c", nodes[0].conf)
	bad.Env = append(os.Environ(), secrets...)
	if out, err := bad.CombinedOutput(); err == nil || !strings.Contains(string(out), "HEARTH_NATS_ISSUER") {
		t.Errorf("hearth-nats -c nats-1.conf without HEARTH_NATS_ISSUER: %v, want a failure naming it:\n%s", err, out)
	}

	for _, n := range nodes {
		n.cmd = exec.Command(bin, "-c", n.conf)
		n.cmd.Env = append(os.Environ(), append(secrets, "HEARTH_NATS_ISSUER="+issuer)...)
		n.cmd.Stdout, n.cmd.Stderr = n.logs, n.logs
		if err := n.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { n.err = n.cmd.Wait(); close(n.done) }()
		t.Cleanup(func() {
			n.cmd.Process.Kill()
			<-n.done
			if t.Failed() {
				t.Logf("%s log (tail):\n%s", n.name, tailBytes([]byte(n.logs.String()), 4000))
			}
		})
	}
	for _, n := range nodes {
		testkit.Eventually(t, 60*time.Second, func() bool {
			select {
			case <-n.done: // exited: fail now, below
				return true
			default:
			}
			l := n.logs.String()
			return strings.Contains(l, "Listening for MQTT clients") && strings.Count(l, "Route connection created") >= 2
		}, "%s never listened for MQTT with routes to the two other nodes", n.name)
		select {
		case <-n.done:
			t.Fatalf("%s exited at start: %v, want it running", n.name, n.err)
		default:
		}
	}
	for _, n := range nodes {
		if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		<-n.done
		if n.err != nil {
			t.Errorf("%s after SIGTERM: %v, want a clean exit", n.name, n.err)
		}
	}
}

// TestReplicasExampleUnits checks the example's two unit templates with systemd-analyze
// verify (no systemd as PID 1 needed), for one instance each, on copies whose ExecStart names
// the binaries just built (verify checks that the program exists): it must print nothing.
// systemd-analyze is Debian's systemd package, which scripts/test.sh installs; under CI=true
// its absence fails the test.
func TestReplicasExampleUnits(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if testkit.InCI() {
			t.Fatalf("systemd-analyze is not installed, and in CI a missing peer is a failure: install the Debian package systemd (scripts/test.sh does)")
		}
		t.Skip("systemd-analyze is not installed: apt-get install systemd to run this test")
	}
	bins := map[string]string{"/usr/local/bin/hearth-gateway": buildGateway(t), "/usr/local/bin/hearth-nats": buildNATS(t)}
	dir := t.TempDir()
	for _, tc := range []struct{ template, instance, execStart string }{
		{"hearth-gateway@.service", "hearth-gateway@hub-1.service",
			"/usr/local/bin/hearth-gateway serve --data /var/lib/hearth/%i --config /etc/hearth/%i.yaml"},
		{"hearth-nats@.service", "hearth-nats@nats-1.service", "/usr/local/bin/hearth-nats -c /etc/hearth-nats/%i.conf"},
	} {
		t.Run(tc.template, func(t *testing.T) {
			body := readExample(t, tc.template, nil)
			if !strings.Contains(body, "\nExecStart="+tc.execStart+"\n") {
				t.Fatalf("%s: no ExecStart=%s (the README's paths)", tc.template, tc.execStart)
			}
			body = readExample(t, tc.template, bins)
			if err := os.WriteFile(filepath.Join(dir, tc.template), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(analyze, "verify", "--man=no", filepath.Join(dir, tc.instance))
			out, err := cmd.CombinedOutput()
			if err != nil || len(bytes.TrimSpace(out)) != 0 {
				t.Errorf("systemd-analyze verify %s: %v, want success and no output:\n%s", tc.instance, err, out)
			}
		})
	}
}
