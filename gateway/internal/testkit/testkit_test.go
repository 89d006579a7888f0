package testkit

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

func TestCAIssuesVerifiableLeaves(t *testing.T) {
	c := NewCA(t, "Test")
	inters := x509.NewCertPool()
	inters.AddCert(c.Intermediate)
	for _, tc := range []struct {
		name  string
		leaf  *Leaf
		usage x509.ExtKeyUsage
		host  string
	}{
		{"server", c.Server(t, "127.0.0.1", "localhost"), x509.ExtKeyUsageServerAuth, "127.0.0.1"},
		{"client", c.Client(t, "dev-a"), x509.ExtKeyUsageClientAuth, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.leaf.Cert.Verify(x509.VerifyOptions{Roots: c.Pool(), Intermediates: inters, DNSName: tc.host,
				KeyUsages: []x509.ExtKeyUsage{tc.usage}})
			if err != nil {
				t.Errorf("Verify(%s leaf) = %v", tc.name, err)
			}
			if len(tc.leaf.TLS.Certificate) != 2 {
				t.Errorf("TLS chain has %d certificates, want leaf and intermediate", len(tc.leaf.TLS.Certificate))
			}
			for _, f := range []string{tc.leaf.CertFile, tc.leaf.KeyFile, c.RootFile} {
				if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
					t.Errorf("file %s: %v", f, err)
				}
			}
		})
	}
}

func TestKeyAndCSR(t *testing.T) {
	_, pemCSR := KeyAndCSR(t, "dev-a")
	if len(pemCSR) == 0 {
		t.Fatal("KeyAndCSR returned no PEM")
	}
	csr := NewCSR(t, NewKey(t), nil)
	if err := csr.CheckSignature(); err != nil {
		t.Errorf("CheckSignature() = %v", err)
	}
}

func TestEventually(t *testing.T) {
	var n atomic.Int32
	Eventually(t, 10*time.Second, func() bool { return n.Add(1) >= 3 }, "counter reached 3")
	if got := n.Load(); got != 3 {
		t.Errorf("cond called %d times, want 3 (Eventually stops at the first true)", got)
	}
}

func TestInCI(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want bool
	}{{"true", true}, {"1", true}, {"false", false}, {"", false}, {"yes", false}} {
		t.Setenv("CI", tc.env)
		if got := InCI(); got != tc.want {
			t.Errorf("InCI() with CI=%q = %v, want %v", tc.env, got, tc.want)
		}
	}
}

func TestPublisher(t *testing.T) {
	refused := errors.New("broker down")
	p := &Publisher{Fail: func(topic string) error {
		if topic == "down" {
			return refused
		}
		return nil
	}}
	p.Publish("a", []byte("1"), true)
	p.Publish("b", []byte("2"), false)
	p.Publish("a", []byte("3"), false)
	if err := p.Publish("down", nil, false); !errors.Is(err, refused) {
		t.Errorf("Publish(down) = %v, want the injected error", err)
	}
	if m, ok := p.Last("a"); !ok || string(m.Payload) != "3" || m.Retain {
		t.Errorf("Last(a) = %+v, %v; want payload 3 not retained", m, ok)
	}
	if got := p.Topics(); len(got) != 3 {
		t.Errorf("Topics() = %v, want the three accepted", got)
	}
}

func TestClock(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c := NewClock(t0)
	c.Add(time.Minute)
	if got := c.Now(); !got.Equal(t0.Add(time.Minute)) {
		t.Errorf("Now() after Add(1m) = %v, want %v", got, t0.Add(time.Minute))
	}
}

func TestLazy(t *testing.T) {
	n := 1
	l := Lazy(func() string { return fmt.Sprint(n) })
	n = 2
	if got := fmt.Sprintf("%v", l); got != "2" {
		t.Errorf("Lazy formatted as %q, want %q (the value when formatted)", got, "2")
	}
}

func TestRelay(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	r := StartRelay(t, ln.Addr().String())
	echo := func() (string, error) {
		c, err := net.Dial("tcp", r.Addr)
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			return "", err
		}
		b := make([]byte, 4)
		_, err = io.ReadFull(c, b)
		return string(b), err
	}
	if got, err := echo(); got != "ping" || err != nil {
		t.Fatalf("echo through the relay = %q, %v; want ping", got, err)
	}
	r.RefuseNext(1)
	if got, err := echo(); err == nil && got != "\x15\x03\x03\x00" {
		t.Errorf("echo through a refusing relay = %q, %v; want the start of a TLS alert or an error", got, err)
	}
	if got, err := echo(); got != "ping" || err != nil {
		t.Errorf("echo after the refusal = %q, %v; want ping", got, err)
	}
	if r.Refused() != 1 || r.Accepted() != 3 {
		t.Errorf("Refused(), Accepted() = %d, %d; want 1, 3", r.Refused(), r.Accepted())
	}
}
