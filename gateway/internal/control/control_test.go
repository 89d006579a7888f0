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
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, echo{}) }()
	defer func() { cancel(); <-done }()

	// A second hub on the same data directory is refused, not allowed to steal the socket.
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "another hub") {
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
	l, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket file = %v", err)
	}
	l.Close()
}
