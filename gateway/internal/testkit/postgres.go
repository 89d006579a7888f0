package testkit

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// postgresUser is the superuser of a throwaway cluster, the role every DSN names.
const postgresUser = "hearth"

// Postgres is a throwaway PostgreSQL cluster (Debian's postgresql package): initdb'd in a
// fresh directory under the system's temporary directory and listening only on a Unix
// socket there, so tests never contend for a port. Trust authentication, fsync off: it
// holds test data only (durability is the hub's configuration of its sessions, which the
// tests read back, not the cluster's disk). HEARTH_TEST_POSTGRES_FSYNC=on turns fsync on,
// for benchmarks whose commits must cost what a real server's do.
//
// PostgreSQL refuses to run as root, and CI runs as root: then initdb and the server run as
// the user nobody, in a directory owned by nobody (a test's t.TempDir is private to root,
// which nobody cannot enter). As any other user they run as that user.
type Postgres struct {
	// Socket is the directory of the server's Unix socket, the host of every DSN.
	Socket string

	dir    string // the cluster's directory: data/, the socket, the log
	bin    string // the directory of pg_ctl and createdb
	cred   *syscall.Credential
	nextDB atomic.Int64
}

// StartPostgres starts a throwaway cluster for the test and stops it (and removes it) when
// the test ends. Without PostgreSQL the test is skipped, or fails in CI (RequirePeer).
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	p, err := startPostgres(RequirePeer(t, "initdb"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

var shared struct {
	once sync.Once
	p    *Postgres
	err  error
}

// SharedPostgres returns one cluster for the whole test binary, started on first use: a
// package whose every test needs a database (each takes its own with NewDatabase) pays
// initdb once. The package's TestMain stops it with StopSharedPostgres after m.Run.
func SharedPostgres(t testing.TB) *Postgres {
	t.Helper()
	initdb := RequirePeer(t, "initdb")
	shared.once.Do(func() { shared.p, shared.err = startPostgres(initdb) })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.p
}

// StopSharedPostgres stops the cluster SharedPostgres started, if it did.
func StopSharedPostgres() {
	if shared.p != nil {
		shared.p.Stop()
	}
}

func startPostgres(initdb string) (*Postgres, error) {
	dir, err := os.MkdirTemp("", "hearth-pg-")
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	// pg_ctl and createdb sit beside initdb in its real directory (PATH may hold a link).
	if real, err := filepath.EvalSymlinks(initdb); err == nil {
		initdb = real
	}
	p := &Postgres{Socket: dir, dir: dir, bin: filepath.Dir(initdb)}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("postgres runs as nobody under root: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("postgres: %w", err)
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := p.run(initdb, "-D", data, "-U", postgresUser, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	fsync := "off"
	if os.Getenv("HEARTH_TEST_POSTGRES_FSYNC") == "on" {
		fsync = "on" // benchmarks: commits cost what they cost on a real server
	}
	opts := fmt.Sprintf("-k %s -c listen_addresses='' -c fsync=%s -c max_connections=200", dir, fsync)
	if out, err := p.run(filepath.Join(p.bin, "pg_ctl"), "-D", data, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "-o", opts, "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pg_ctl start: %w\n%s\n%s", err, out, log)
	}
	return p, nil
}

// run runs a PostgreSQL program as the cluster's user and returns its output.
func (p *Postgres) run(bin string, args ...string) ([]byte, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = p.dir
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// DSN is the connection string (key=value form, as pgx and psql take it) of database name.
func (p *Postgres) DSN(name string) string {
	return fmt.Sprintf("host=%s user=%s dbname=%s sslmode=disable", p.Socket, postgresUser, name)
}

// NewDatabase creates an empty database of its own for the test and returns its DSN. The
// database is left in the cluster, which goes with it.
func (p *Postgres) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d", p.nextDB.Add(1))
	if out, err := p.run(filepath.Join(p.bin, "createdb"), "-h", p.Socket, "-U", postgresUser, name); err != nil {
		t.Fatalf("createdb %s: %v\n%s", name, err, out)
	}
	return p.DSN(name)
}

// Stop stops the server at once and removes the cluster's directory.
func (p *Postgres) Stop() {
	p.run(filepath.Join(p.bin, "pg_ctl"), "-D", filepath.Join(p.dir, "data"), "-m", "immediate", "-w", "stop")
	os.RemoveAll(p.dir)
}
