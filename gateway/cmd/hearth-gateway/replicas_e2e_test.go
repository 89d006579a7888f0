package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
)

// TestReplicasSchedulerFailover runs two hub processes on one PostgreSQL inventory (the same
// CA, each its own broker port, dashboard port and data directory). One leads the scheduler;
// SIGSTOP it, and the other takes the lease in a higher term within seconds and says so on
// /metrics; SIGCONT it, and it stands down: its renewal of the old term is refused and the
// lease stays with the new leader. With the database stopped, /readyz answers 503 naming it.
// (That a write made for the old term is refused by the database:
// inventory.TestLeaseTermsAndFencing and lease.TestFailoverOnPostgres.)
func TestReplicasSchedulerFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two hub processes")
	}
	ctx := t.Context()
	pg := testkit.StartPostgres(t) // its own: the test stops it
	dsn := pg.NewDatabase(t)
	root := t.TempDir()
	logs := newHubLog(t, filepath.Join(root, "hubs.log"))
	conf := func(replica string) string {
		p := filepath.Join(root, replica+".yaml")
		body := fmt.Sprintf("storage: {driver: postgres, dsn: %q}\nreplica_id: %s\n", dsn, replica)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	dataA, dataB := filepath.Join(root, "a"), filepath.Join(root, "b")
	httpA, httpB := replicaAddr(t), replicaAddr(t)
	a := startHub(t, dataA, "127.0.0.1:0", logs.File, "--config", conf("hub-a"), "--log-level", "info", "--http", httpA)
	// The replicas share the CA: b gets a copy of a's.
	if err := os.MkdirAll(dataB, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", (&config.Config{DataDir: dataA}).CADir(), dataB).CombinedOutput(); err != nil {
		t.Fatalf("copy the CA: %v\n%s", err, out)
	}
	b := startHub(t, dataB, "127.0.0.1:0", logs.File, "--config", conf("hub-b"), "--log-level", "info", "--http", httpB)

	store, err := inventory.OpenPostgres(ctx, inventory.PostgresOptions{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	lease := func() inventory.LeaseGrant {
		g, _ := store.Lease(ctx, "scheduler")
		return g
	}
	testkit.Eventually(t, 30*time.Second, func() bool { return lease().Term != 0 }, "no replica took the lease; logs:\n%s", testkit.Lazy(func() string { return logs.tail(4000) }))
	first := lease()
	leader, next, nextHTTP := a, "hub-b", httpB
	if strings.HasPrefix(first.Holder, "hub-b/") {
		leader, next, nextHTTP = b, "hub-a", httpA
	}

	stopped := time.Now()
	if err := leader.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 60*time.Second, func() bool {
		g := lease()
		return strings.HasPrefix(g.Holder, next+"/") && g.Term > first.Term
	}, "the follower never took over from %s; lease %+v; logs:\n%s", first.Holder, testkit.Lazy(func() string { return fmt.Sprint(lease()) }),
		testkit.Lazy(func() string { return logs.tail(4000) }))
	t.Logf("failover: %s after the SIGSTOP of the leader (lease ttl 10 s)", time.Since(stopped).Round(100*time.Millisecond))
	second := lease()
	if code, body := replicaGet(t, nextHTTP, "/readyz"); code != http.StatusOK || body != "ready" {
		t.Errorf("GET /readyz on the new leader = %d %q, want 200 ready", code, body)
	}
	want := fmt.Sprintf(`hearth_scheduler_leader{replica=%q} 1`, next)
	testkit.Eventually(t, 10*time.Second, func() bool {
		_, body := replicaGet(t, nextHTTP, "/metrics")
		return strings.Contains(body, want)
	}, "the new leader's /metrics lacks %s", want)

	if err := leader.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// The old leader stands down: it logs so, and the lease stays with the new one.
	testkit.Eventually(t, 30*time.Second, func() bool {
		return strings.Contains(logs.tail(1<<20), `msg="no longer leader"`)
	}, "the old leader did not stand down; logs:\n%s", testkit.Lazy(func() string { return logs.tail(4000) }))
	if g := lease(); g.Holder != second.Holder || g.Term != second.Term {
		t.Errorf("lease after SIGCONT of the old leader = %+v, want it kept by %s in term %d", g, second.Holder, second.Term)
	}
	if err := store.VerifyAudit(ctx); err != nil {
		t.Errorf("VerifyAudit() = %v", err)
	}

	pg.Stop()
	if code, body := replicaGet(t, nextHTTP, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "database") {
		t.Errorf("GET /readyz with the database stopped = %d %q, want 503 naming the database", code, body)
	}
	if code, _ := replicaGet(t, nextHTTP, "/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz with the database stopped = %d, want 200 (the process is alive)", code)
	}
}

// replicaAddr returns a 127.0.0.1 address with a port free a moment ago.
func replicaAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// replicaGet fetches path from the dashboard at addr as the e2e admin (HTTP basic credentials).
func replicaGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("admin", e2eAdminPassword)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
