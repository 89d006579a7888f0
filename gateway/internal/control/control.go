// Package control is the hub's local control channel: HTTP over a unix socket in the data
// directory. The CLI's client commands use it to reach the running hub's admin service.
//
// Identity: the kernel reports the OS user of the connecting process (SO_PEERCRED); the
// client presents nothing, and cannot claim to be someone else. Roles maps it to a role
// (issue 15): root and the hub's own user are admins, since either can read the data
// directory, CA keys included; another user has the role the configuration's cli_roles
// gives it, else the role of the hub user of the same name, else none, and a request without
// a role is refused before it reaches the admin service. The actor in the audit log is
// "cli:<name>". The socket is 0600 (the hub's user and root only) unless cli_roles names
// someone: then it is 0666 and its directory traversable (0711, not listable), and the role
// is the only gate.
//
// Wire format: POST /v1/op/<operation> with the operation's JSON payload (the same as the
// bridge request's); the answer is the protocol.BridgeResponse JSON.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/authz"
	"github.com/hearth-pki/hearth/protocol"
)

// Doer runs an admin operation for a principal (admin.Service implements it).
type Doer interface {
	DoAs(ctx context.Context, p authz.Principal, op string, payload []byte) protocol.BridgeResponse
}

type peerKey struct{}

// Listen binds the control socket at path, replacing a stale socket left by a crash but
// refusing to steal the socket of a hub that is still running. shared (Roles.Shared) makes
// it reachable for other OS users: mode 0666, and its directory given the search bit for
// group and others (0711 from 0700: they reach the socket's name, list nothing).
func Listen(path string, shared bool) (net.Listener, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another hub is running with this data directory", path)
	}
	_ = os.Remove(path)
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	mode := os.FileMode(0o600)
	if shared {
		mode = 0o666
		dir := filepath.Dir(path)
		fi, err := os.Stat(dir)
		if err == nil {
			err = os.Chmod(dir, fi.Mode().Perm()|0o011)
		}
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("control socket directory: %w", err)
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return l, nil
}

// Handler serves the control API over d, with the role roles gives each connection's peer.
func Handler(d Doer, roles Roles) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/op/{op...}", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, protocol.MaxMessageSize+1))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		peer, _ := r.Context().Value(peerKey{}).(Peer)
		var resp protocol.BridgeResponse
		if role := roles.Role(r.Context(), peer); role == 0 {
			resp = protocol.BridgeResponse{Status: "error", Code: protocol.CodeForbidden, Error: noRole(peer).Error()}
		} else {
			resp = d.DoAs(r.Context(), authz.Principal{Name: "cli:" + peer.String(), Role: role}, r.PathValue("op"), body)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resp)
	})
	return mux
}

// Serve serves the control API on l until ctx ends.
func Serve(ctx context.Context, l net.Listener, d Doer, roles Roles) error {
	srv := &http.Server{Handler: Handler(d, roles), ReadHeaderTimeout: 5 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerKey{}, peerOf(c))
		}}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ErrNotRunning means no hub answers on the control socket.
var ErrNotRunning = errors.New("the hub is not running")

// Client talks to a running hub through its control socket.
type Client struct {
	path string
	hc   *http.Client
}

// NewClient returns a client for the socket at path.
func NewClient(path string) *Client {
	return &Client{path: path, hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
}

// Do runs op with payload on the hub. An error response from the hub is returned as an
// *Error; ErrNotRunning when nothing listens on the socket.
func (c *Client) Do(ctx context.Context, op string, payload any) (json.RawMessage, error) {
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://hearth/v1/op/"+op, strings.NewReader(string(body)))
	if err != nil {
		return nil, err
	}
	res, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w (no control socket at %s): start it with `hearth-gateway serve`", ErrNotRunning, c.path)
		}
		return nil, fmt.Errorf("control socket %s: %w", c.path, err)
	}
	defer res.Body.Close()
	var resp protocol.BridgeResponse
	if err := json.NewDecoder(io.LimitReader(res.Body, 16<<20)).Decode(&resp); err != nil {
		return nil, fmt.Errorf("control socket: bad answer (HTTP %d): %w", res.StatusCode, err)
	}
	if resp.Status != "ok" {
		return nil, &Error{Code: resp.Code, Message: resp.Error}
	}
	return json.RawMessage(resp.Data), nil
}

// Error is an error response of the hub: its wire code, for callers that branch (an unknown
// device is protocol.CodeNotFound), and its message, for people.
type Error struct {
	Code    protocol.Code
	Message string
}

func (e *Error) Error() string { return e.Message }
