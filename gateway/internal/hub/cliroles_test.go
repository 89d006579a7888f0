package hub

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/authz"
	"github.com/hearth-pki/hearth/gateway/internal/control"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
	"github.com/hearth-pki/hearth/protocol"
)

// controlClientEnv makes the test binary a control socket client (TestHelperControlClient):
// "SOCKET OP PAYLOAD".
const controlClientEnv = "HEARTH_TEST_CONTROL_CLIENT"

// TestHelperControlClient is not a test: run by TestCLIRoles as another OS user, it sends
// one operation through the control socket and prints the answer as JSON.
func TestHelperControlClient(t *testing.T) {
	arg := os.Getenv(controlClientEnv)
	if arg == "" {
		return
	}
	f := strings.SplitN(arg, " ", 3)
	out := map[string]string{}
	if _, err := control.NewClient(f[0]).Do(t.Context(), f[1], json.RawMessage(f[2])); err != nil {
		out["error"] = err.Error()
		if ce, ok := err.(*control.Error); ok {
			out["code"] = string(ce.Code)
		}
	}
	json.NewEncoder(os.Stdout).Encode(out)
	os.Exit(0)
}

// TestCLIRoles: the control socket gives each OS user its role (issue 15): root (the hub's
// own user here) is an admin; daemon and bin have theirs from cli_roles; sys and lp from the
// hub users of their names; news is a viewer by cli_roles though a hub user news is an admin
// (the configuration wins); nobody has no role and is told how to get one. A table over
// operations × OS users, each a real process running as that user (the test binary,
// re-executed with its uid) through the real socket of a real hub; a viewer's renew is
// refused with the role it needs.
func TestCLIRoles(t *testing.T) {
	if os.Geteuid() != 0 {
		if testkit.InCI() {
			t.Fatal("TestCLIRoles runs clients as other OS users and needs root; CI runs as root")
		}
		t.Skip("TestCLIRoles runs clients as other OS users: run it as root")
	}
	cfg := hubkit.Config(t, "cli_roles: {daemon: viewer, bin: operator, news: viewer}\n")
	// Let the other users reach the data directory's parent (the hub opens the data
	// directory itself to traversal, as cli_roles asks).
	share := filepath.Dir(cfg.DataDir) // t.TempDir(): TMPDIR/TestCLIRolesN/001
	for _, d := range []string{filepath.Dir(share), share} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(share, "hub.test")
	copyExecutable(t, bin)
	h := runHub(t, cfg, Options{Version: "test"})
	enroll(t, h, "dev-1")
	for name, role := range map[string]string{"sys": "admin", "lp": "operator", "news": "admin"} {
		if err := h.store.AddUser(t.Context(), inventory.User{Name: name, Role: role, PasswordHash: testkit.PasswordHash(userPassword), CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if fi, err := os.Stat(cfg.SocketPath()); err != nil || fi.Mode().Perm() != 0o666 {
		t.Errorf("socket mode with cli_roles = %v, %v; want 0666", fi.Mode().Perm(), err)
	}
	if fi, err := os.Stat(cfg.DataDir); err != nil || fi.Mode().Perm() != 0o711 {
		t.Errorf("data directory mode with cli_roles = %v, %v; want 0711 (traversable, not listable)", fi.Mode().Perm(), err)
	}

	ops := []struct{ op, payload string }{
		{"device/list", `{}`},
		{"device/renew", `{"id":"dev-1"}`},
		{"token/create", `{"id":"new-lamp"}`},
		{"user/list", `{}`},
	}
	for _, u := range []struct {
		user string
		role authz.Role
	}{
		{"root", authz.Admin},
		{"daemon", authz.Viewer},
		{"bin", authz.Operator},
		{"sys", authz.Admin},
		{"lp", authz.Operator},
		{"news", authz.Viewer},
		{"nobody", 0},
	} {
		acct, err := user.Lookup(u.user)
		if err != nil {
			t.Fatalf("OS user %s: %v", u.user, err)
		}
		uid, _ := strconv.ParseUint(acct.Uid, 10, 32)
		gid, _ := strconv.ParseUint(acct.Gid, 10, 32)
		for _, o := range ops {
			t.Run(u.user+" "+o.op, func(t *testing.T) {
				cmd := exec.CommandContext(t.Context(), bin, "-test.run=^TestHelperControlClient$")
				cmd.Env = []string{controlClientEnv + "=" + cfg.SocketPath() + " " + o.op + " " + o.payload, "PATH=/usr/bin:/bin"}
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
				cmd.Dir = share
				raw, err := cmd.Output()
				if err != nil {
					t.Fatalf("client as %s: %v (%s)", u.user, err, raw)
				}
				var got map[string]string
				if err := json.Unmarshal(raw[bytes.LastIndexByte(bytes.TrimSpace(raw), '\n')+1:], &got); err != nil {
					t.Fatalf("client as %s printed %q", u.user, raw)
				}
				need := authz.Need(o.op)
				allowed := got["code"] != string(protocol.CodeForbidden)
				if want := u.role >= need; allowed != want {
					t.Fatalf("%s %s: %v, want allowed %v (needs %s, has %s)", u.user, o.op, got, want, need, u.role)
				}
				switch {
				case allowed:
				case u.role == 0:
					if want := "the OS user nobody has no role on this hub"; !strings.Contains(got["error"], want) || !strings.Contains(got["error"], "cli_roles") {
						t.Errorf("%s %s refused with %q, want it to say %q and how to give one", u.user, o.op, got["error"], want)
					}
				default:
					if want := fmt.Sprintf("%s needs the %s role; cli:%s is %s", o.op, need, u.user, u.role); got["error"] != want {
						t.Errorf("%s %s refused with %q, want %q", u.user, o.op, got["error"], want)
					}
				}
			})
		}
	}
}

// copyExecutable copies the running test binary to dst, executable by everyone.
func copyExecutable(t *testing.T, dst string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
