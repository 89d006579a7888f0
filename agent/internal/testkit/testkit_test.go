package testkit

import (
	"crypto/x509"
	"sync/atomic"
	"testing"
	"time"
)

func TestCAIssuesVerifiableChains(t *testing.T) {
	epoch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ca := NewCAAt(t, "Test", epoch)
	key := NewKey(t)
	leaf := ca.IssueSerial(t, key.Public(), "dev-1", 42, epoch, epoch.AddDate(0, 0, 30))
	if leaf.SerialNumber.Int64() != 42 {
		t.Errorf("IssueSerial(42) serial = %v", leaf.SerialNumber)
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(ca.Root)
	inters.AddCert(ca.Intermediate)
	opts := x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: epoch.AddDate(0, 0, 1),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := leaf.Verify(opts); err != nil {
		t.Errorf("Verify(device leaf) = %v", err)
	}
	server, _ := NewCA(t, "Now").ServerCert(t, "127.0.0.1")
	if _, err := server.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters}); err == nil {
		t.Error("a server certificate of another CA verifies against this one")
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
	}{{"true", true}, {"1", true}, {"false", false}, {"", false}} {
		t.Setenv("CI", tc.env)
		if got := InCI(); got != tc.want {
			t.Errorf("InCI() with CI=%q = %v, want %v", tc.env, got, tc.want)
		}
	}
}
