package control

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-pki/hearth/gateway/internal/authz"
	"github.com/hearth-pki/hearth/protocol"
)

// echo answers every operation with its name and the actor, and fails "boom".
type echo struct{}

func (echo) DoAs(_ context.Context, p authz.Principal, op string, payload []byte) protocol.BridgeResponse {
	actor := p.Name
	if p.Role != authz.Admin {
		actor += " (not an admin)"
	}
	if op == "boom" {
		return protocol.BridgeResponse{Status: "error", Error: "it went boom", Code: protocol.CodeInternal}
	}
	data, _ := json.Marshal(map[string]string{"op": op, "actor": actor, "payload": string(payload)})
	return protocol.BridgeResponse{Status: "ok", Data: data}
}

func TestClientServer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hearth.sock")
	l, err := Listen(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, echo{}, Roles{Owner: uint32(os.Geteuid())}) }()
	defer func() { cancel(); <-done }()

	// A second hub on the same data directory is refused, not allowed to steal the socket.
	if _, err := Listen(path, false); err == nil || !strings.Contains(err.Error(), "another hub") {
		t.Errorf("second Listen = %v, want an error naming another hub", err)
	}

	c := NewClient(path)
	raw, err := c.Do(t.Context(), "device/get", map[string]string{"id": "cam"})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	json.Unmarshal(raw, &got)
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	if got["op"] != "device/get" || got["actor"] != "cli:"+me.Username || got["payload"] != `{"id":"cam"}` {
		t.Errorf("Do(device/get) reached the service as %v", got)
	}
	if _, err := c.Do(t.Context(), "boom", struct{}{}); err == nil || err.Error() != "it went boom" {
		t.Errorf("Do(boom) = %v, want the service's error message", err)
	}
}

func TestClientWithoutHub(t *testing.T) {
	_, err := NewClient(filepath.Join(t.TempDir(), "hearth.sock")).Do(t.Context(), "device/list", struct{}{})
	if !errors.Is(err, ErrNotRunning) {
		t.Errorf("Do without a hub = %v, want ErrNotRunning", err)
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hearth.sock")
	if err := os.WriteFile(path, nil, 0o600); err != nil { // what a crashed hub leaves
		t.Fatal(err)
	}
	l, err := Listen(path, false)
	if err != nil {
		t.Fatalf("Listen over a stale socket file = %v", err)
	}
	l.Close()
}

// TestRoles: which role each OS user has on the control socket (issue 15).
func TestRoles(t *testing.T) {
	users := map[string]authz.Role{"sam": authz.Admin, "ola": authz.Operator, "bob": authz.Admin}
	r := Roles{Owner: 990, Names: map[string]authz.Role{"vic": authz.Viewer, "bob": authz.Viewer},
		Users: func(_ context.Context, name string) (authz.Role, bool) { role, ok := users[name]; return role, ok }}
	for _, tc := range []struct {
		name string
		peer Peer
		want authz.Role
	}{
		{"root", Peer{Known: true, UID: 0, Name: "root"}, authz.Admin},
		{"the hub's own user", Peer{Known: true, UID: 990, Name: "hearth"}, authz.Admin},
		{"the hub's own uid without a name", Peer{Known: true, UID: 990}, authz.Admin},
		{"cli_roles", Peer{Known: true, UID: 1001, Name: "vic"}, authz.Viewer},
		{"a hub user of the same name", Peer{Known: true, UID: 1002, Name: "ola"}, authz.Operator},
		{"cli_roles before the hub user", Peer{Known: true, UID: 1003, Name: "bob"}, authz.Viewer},
		{"nobody's name", Peer{Known: true, UID: 1004, Name: "eve"}, 0},
		{"a uid without a name", Peer{Known: true, UID: 1005}, 0},
		{"a peer the kernel did not report, socket shared", Peer{}, 0},
	} {
		if got := r.Role(t.Context(), tc.peer); got != tc.want {
			t.Errorf("%s: Role(%+v) = %v, want %v", tc.name, tc.peer, got, tc.want)
		}
	}
	if !r.Shared() || (Roles{}).Shared() {
		t.Error("Shared() is not whether cli_roles names someone")
	}
	if got := (Roles{}).Role(t.Context(), Peer{}); got != authz.Admin {
		t.Errorf("an unreported peer on an unshared socket (the owner's alone) = %v, want admin", got)
	}
}

// TestListenShared: with cli_roles the socket is 0666 and its directory traversable, not
// listable, by others.
func TestListenShared(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "hearth.sock")
	l, err := Listen(path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for p, want := range map[string]os.FileMode{path: 0o666, dir: 0o711} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("mode of %s = %v, %v; want %v", p, fi.Mode().Perm(), err, want)
		}
	}
}
