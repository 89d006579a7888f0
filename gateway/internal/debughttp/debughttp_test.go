package debughttp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestServesProfiles(t *testing.T) {
	s, err := Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatalf("Listen(127.0.0.1:0) = %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	base := "http://" + s.Addr().String()
	for _, tt := range []struct{ path, want string }{
		{"/debug/pprof/", "goroutine"},                  // the index lists the profiles
		{"/debug/pprof/goroutine?debug=1", "debughttp"}, // this test's own goroutines, symbolized
		{"/debug/pprof/heap?debug=1", "heap profile"},
		{"/debug/pprof/cmdline", "debughttp.test"},
	} {
		resp, err := http.Get(base + tt.path)
		if err != nil {
			t.Fatalf("GET %s: %v", tt.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), tt.want) {
			t.Errorf("GET %s = %d, %.200q; want 200 and %q", tt.path, resp.StatusCode, body, tt.want)
		}
	}
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET / = %d, want 404: only /debug/pprof/ is served", resp.StatusCode)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel = %v, want nil", err)
	}
	if _, err := http.Get(base + "/debug/pprof/"); err == nil {
		t.Errorf("GET after Run returned: succeeded, want the listener closed")
	}
}

func TestRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:6060", "example.com:6060"} {
		s, err := Listen(addr, nil)
		if !errors.Is(err, ErrNotLoopback) {
			if s != nil {
				s.ln.Close()
			}
			t.Errorf("Listen(%q) = %v, want ErrNotLoopback", addr, err)
		}
	}
	if _, err := Listen("6060", nil); err == nil || errors.Is(err, ErrNotLoopback) {
		t.Errorf("Listen(\"6060\") = %v, want an address error", err)
	}
}
