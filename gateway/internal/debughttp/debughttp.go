// Package debughttp serves Go's runtime profiles (net/http/pprof) on a loopback address, so
// that anyone can profile a running hub: `go tool pprof http://127.0.0.1:6060/debug/pprof/heap`.
//
// The profiles carry no authentication and reveal the process's memory layout and
// goroutines, so the server only ever binds a loopback address: [Listen] refuses any other,
// both as given and as bound. It serves its own mux (importing net/http/pprof also registers
// the handlers on http.DefaultServeMux, which the hub never serves).
//
// Concurrency: Run serves each request on its own goroutine; a Server is run once.
package debughttp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// ErrNotLoopback is returned by Listen for an address that is not loopback.
var ErrNotLoopback = errors.New("debughttp: not a loopback address")

// Server serves /debug/pprof/ on a loopback listener. Create it with Listen, serve with Run.
type Server struct {
	ln  net.Listener
	srv *http.Server
	log *slog.Logger
}

// Listen binds addr, which must be host:port with host localhost or a loopback IP, and
// prepares the server. It starts no goroutine.
func Listen(addr string, logger *slog.Logger) (*Server, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("debughttp: %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("%w: %q", ErrNotLoopback, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debughttp: listen %s: %w", addr, err)
	}
	// "localhost" could resolve to something else: check what was actually bound.
	if t, ok := ln.Addr().(*net.TCPAddr); !ok || !t.IP.IsLoopback() {
		_ = ln.Close()
		return nil, fmt.Errorf("%w: %q is bound to %s", ErrNotLoopback, addr, ln.Addr())
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index) // the index and every named profile (heap, goroutine, allocs…)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return &Server{ln: ln, srv: srv, log: logger}, nil
}

// Addr returns the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Run serves until ctx ends, then closes the listener and every connection (a CPU profile in
// progress is cut short) and returns nil.
func (s *Server) Run(ctx context.Context) error {
	s.log.Info("profiles served", "url", "http://"+s.ln.Addr().String()+"/debug/pprof/")
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("debughttp: serve: %w", err)
	case <-ctx.Done():
	}
	_ = s.srv.Close()
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("debughttp: serve: %w", err)
	}
	return nil
}
