// Package control is the hub's local control channel: HTTP over a unix socket (mode 0600) in
// the data directory. The CLI's client commands use it to reach the running hub's admin
// service; file permissions are the authentication, as for Docker's socket.
//
// Identity: only the hub's own OS user (and root) can open the socket, and either can read
// the data directory, CA keys included, so the socket grants the admin role. The actor in the
// audit log is "cli:<name>" of the connecting process's OS user, which the kernel reports
// (SO_PEERCRED): the client presents nothing, and cannot claim to be someone else.
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

// principal is who the connection of r belongs to: the admin role, named after the peer's OS
// user.
func principal(r *http.Request) authz.Principal {
	name, _ := r.Context().Value(peerKey{}).(string)
	if name == "" {
		name = "unknown"
	}
	return authz.Principal{Name: "cli:" + name, Role: authz.Admin}
}

// Listen binds the control socket at path, replacing a stale socket left by a crash but
// refusing to steal the socket of a hub that is still running.
func Listen(path string) (net.Listener, error) {
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
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return l, nil
}

// Handler serves the control API over d.
func Handler(d Doer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/op/{op...}", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, protocol.MaxMessageSize+1))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		resp := d.DoAs(r.Context(), principal(r), r.PathValue("op"), body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resp)
	})
	return mux
}

// Serve serves the control API on l until ctx ends.
func Serve(ctx context.Context, l net.Listener, d Doer) error {
	srv := &http.Server{Handler: Handler(d), ReadHeaderTimeout: 5 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerKey{}, peerName(c))
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
