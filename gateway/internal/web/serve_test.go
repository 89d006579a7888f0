package web

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, newFixture(t, nil).h) }()

	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Errorf("GET /healthz = %d %q, want 200 \"ok\"", resp.StatusCode, body)
	}
	resp, err = http.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatalf("GET /: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET / over TCP = %d, want 200", resp.StatusCode)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve() after cancel = %v, want nil", err)
	}
	if _, err := http.Get("http://" + ln.Addr().String() + "/healthz"); err == nil {
		t.Errorf("GET after shutdown succeeded; the listener is still open")
	}
}

func TestServeCancelledClosesListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := Serve(ctx, ln, http.NotFoundHandler()); err != nil {
		t.Errorf("Serve(cancelled context) = %v, want nil", err)
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Errorf("the listener still accepts after Serve returned")
	}
}

// TestReadyz: /readyz answers 200 while Ready finds nothing wrong and 503 naming the part
// that is not ready, to any client, without login, under any Host (a load balancer's probe).
func TestReadyz(t *testing.T) {
	var notReady error
	f := newFixture(t, func(c *Config) {
		c.Users = nil
		c.Ready = func(context.Context) error { return notReady }
	})
	get := func() (int, string) {
		r := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/readyz", nil)
		r.RemoteAddr, r.Host = "10.0.0.9:5000", "lb.internal"
		w := httptest.NewRecorder()
		f.h.ServeHTTP(w, r)
		return w.Code, w.Body.String()
	}
	if code, body := get(); code != http.StatusOK || body != "ready" {
		t.Errorf("GET /readyz = %d %q, want 200 \"ready\"", code, body)
	}
	notReady = errors.New("database: connection refused")
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "database: connection refused") {
		t.Errorf("GET /readyz with the database down = %d %q, want 503 naming the database", code, body)
	}
}
