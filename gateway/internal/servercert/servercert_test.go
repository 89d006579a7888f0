package servercert

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
	"path/filepath"
	"slices"
)

func TestRenewAt(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		life time.Duration
		want time.Time
	}{
		{"a year", 365 * 24 * time.Hour, start.Add(243*24*time.Hour + 8*time.Hour)},
		{"a day", 24 * time.Hour, start.Add(16 * time.Hour)},
		{"three minutes", 3 * time.Minute, start.Add(2 * time.Minute)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaf := &x509.Certificate{NotBefore: start, NotAfter: start.Add(tc.life)}
			if got := RenewAt(leaf); !got.Equal(tc.want) {
				t.Errorf("RenewAt(%v) = %v, want %v", tc.life, got, tc.want)
			}
		})
	}
}

// echoServer serves TLS with k's certificates on in-process connections and echoes lines.
type echoServer struct {
	t     *testing.T
	tls   *tls.Config
	roots *x509.CertPool
}

// dial opens a TLS session to the server (verifying it as localhost at the bubble's time) and
// returns it with the certificate the server presented.
func (s *echoServer) dial() (*tls.Conn, *x509.Certificate) {
	s.t.Helper()
	c, srv := net.Pipe()
	go func() {
		sc := tls.Server(srv, s.tls)
		defer sc.Close()
		_, _ = io.Copy(sc, sc)
	}()
	cc := tls.Client(c, &tls.Config{RootCAs: s.roots, ServerName: "localhost"})
	if err := cc.Handshake(); err != nil {
		s.t.Fatalf("Handshake() at %v = %v", time.Now(), err)
	}
	s.t.Cleanup(func() { cc.Close() })
	return cc, cc.ConnectionState().PeerCertificates[0]
}

// echo checks that the session still carries data both ways.
func echo(t *testing.T, c *tls.Conn, line string) {
	t.Helper()
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		t.Fatalf("write on a session open across the swap = %v", err)
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || got != line+"\n" {
		t.Fatalf("echo on a session open across the swap = %q, %v; want %q", got, err, line)
	}
}

// newKeeper starts a keeper on a fresh CA; wrap, when not nil, wraps the CA's issuer.
func newKeeper(t *testing.T, wrap func(Issuer) Issuer) (*Keeper, *echoServer) {
	t.Helper()
	c := hubkit.CA(t, time.Now())
	issue := Issuer(c.ServerCertificate)
	if wrap != nil {
		issue = wrap(issue)
	}
	k, err := New(Config{Hosts: []string{"localhost", "127.0.0.1"}, Issue: issue})
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	return k, &echoServer{t: t, tls: &tls.Config{GetCertificate: k.GetCertificate}, roots: c.Roots()}
}

// TestRunSwapsBeforeExpiry runs the keeper for three years of the bubble's clock: before each
// certificate's renewal time new handshakes get it, after it they get a new one, and the
// session opened at the start keeps working throughout, past its certificate's expiry.
func TestRunSwapsBeforeExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k, srv := newKeeper(t, nil)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- k.Run(ctx) }()

		first, firstCert := srv.dial()
		echo(t, first, "hello")
		prev := firstCert
		for i := range 4 {
			time.Sleep(time.Until(RenewAt(prev)) - time.Second)
			synctest.Wait()
			if _, got := srv.dial(); got.SerialNumber.Cmp(prev.SerialNumber) != 0 {
				t.Fatalf("renewal %d: a second before RenewAt the server presents serial %x, want %x still", i, got.SerialNumber, prev.SerialNumber)
			}
			time.Sleep(time.Second + minWait)
			synctest.Wait()
			_, got := srv.dial()
			if got.SerialNumber.Cmp(prev.SerialNumber) == 0 {
				t.Fatalf("renewal %d: at %v (RenewAt %v) new handshakes still get serial %x", i, time.Now(), RenewAt(prev), prev.SerialNumber)
			}
			if !got.NotAfter.After(prev.NotAfter) {
				t.Errorf("renewal %d: new certificate ends %v, not after the old %v", i, got.NotAfter, prev.NotAfter)
			}
			if k.Current().SerialNumber.Cmp(got.SerialNumber) != 0 {
				t.Errorf("Current() = %x, want the served %x", k.Current().SerialNumber, got.SerialNumber)
			}
			echo(t, first, "still here")
			prev = got
		}
		if !time.Now().After(firstCert.NotAfter) {
			t.Fatalf("test ended at %v, before the first certificate expired (%v)", time.Now(), firstCert.NotAfter)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
	})
}

// TestRunKeepsCertificateWhenIssueFails: a failing issuer leaves the current certificate in
// service, and Run retries until the issuer works again.
func TestRunKeepsCertificateWhenIssueFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var failing atomic.Bool
		k, srv := newKeeper(t, func(issue Issuer) Issuer {
			return func(hosts []string, now time.Time) (tls.Certificate, error) {
				if failing.Load() {
					return tls.Certificate{}, errors.New("disk on fire")
				}
				return issue(hosts, now)
			}
		})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- k.Run(ctx) }()

		_, before := srv.dial()
		failing.Store(true)
		time.Sleep(time.Until(RenewAt(before)) + 10*time.Minute)
		synctest.Wait()
		if _, got := srv.dial(); got.SerialNumber.Cmp(before.SerialNumber) != 0 {
			t.Fatalf("after failed renewals the server presents %x, want the old %x", got.SerialNumber, before.SerialNumber)
		}
		failing.Store(false)
		time.Sleep(maxWait)
		synctest.Wait()
		if _, got := srv.dial(); got.SerialNumber.Cmp(before.SerialNumber) == 0 {
			t.Fatal("the issuer works again but the certificate was not renewed within an hour")
		}
		cancel()
		<-done
	})
}

func TestNewRefuses(t *testing.T) {
	c := hubkit.CA(t, time.Now())
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no hosts", Config{Issue: c.ServerCertificate}},
		{"no issuer", Config{Hosts: []string{"localhost"}}},
		{"bad host", Config{Hosts: []string{"not a host"}, Issue: c.ServerCertificate}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil {
				t.Errorf("New(%s) = nil error", tc.name)
			}
		})
	}
}

func TestRenewNotDue(t *testing.T) {
	c := hubkit.CA(t, time.Now())
	k, err := New(Config{Hosts: []string{"localhost"}, Issue: c.ServerCertificate})
	if err != nil {
		t.Fatal(err)
	}
	first := k.Current()
	if renewed, err := k.Renew(RenewAt(first).Add(-time.Second)); renewed || err != nil {
		t.Errorf("Renew(before RenewAt) = %v, %v; want false, nil", renewed, err)
	}
	if renewed, err := k.Renew(RenewAt(first)); !renewed || err != nil {
		t.Errorf("Renew(at RenewAt) = %v, %v; want true, nil", renewed, err)
	}
	if k.Current().SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Error("Renew(at RenewAt) kept the old certificate")
	}
}

// TestChangedFollowsEachNewCertificate: Changed hears of every certificate put in service
// after the first — a renewal, a reissue, new host names — with that certificate, and of
// nothing else (not the first, not a renewal not due, not a failed reissue).
func TestChangedFollowsEachNewCertificate(t *testing.T) {
	c := hubkit.CA(t, time.Now())
	var got []*x509.Certificate
	fail := false
	issue := func(hosts []string, now time.Time) (tls.Certificate, error) {
		if fail {
			return tls.Certificate{}, errors.New("no key")
		}
		return c.ServerCertificate(hosts, now)
	}
	k, err := New(Config{Hosts: []string{"localhost"}, Issue: issue, Changed: func(l *x509.Certificate) { got = append(got, l) }})
	if err != nil {
		t.Fatal(err)
	}
	first := k.Current()
	steps := []struct {
		name    string
		do      func() error
		changed bool
	}{
		{"a renewal not due", func() error { _, err := k.Renew(time.Now()); return err }, false},
		{"a renewal", func() error { _, err := k.Renew(RenewAt(first)); return err }, true},
		{"a reissue", func() error { _, err := k.Reissue(time.Now()); return err }, true},
		{"new host names", func() error { _, err := k.SetHosts([]string{"hub.lan"}, time.Now()); return err }, true},
		{"a failed reissue", func() error { fail = true; _, _ = k.Reissue(time.Now()); return nil }, false},
	}
	for _, st := range steps {
		n := len(got)
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if changed := len(got) > n; changed != st.changed || (changed && got[len(got)-1] != k.Current()) {
			t.Errorf("%s: Changed called %v (with the certificate in service: %v), want %v", st.name, changed,
				changed && got[len(got)-1] == k.Current(), st.changed)
		}
	}
}

// TestReissueAfterRotation: after an intermediate rotation Reissue puts a certificate of the
// new intermediate in service at once; a session opened before keeps working.
func TestReissueAfterRotation(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	c, err := ca.InitWithIterations(dir, []byte(hubkit.Passphrase), time.Now(), ca.MinIterations)
	if err != nil {
		t.Fatal(err)
	}
	k, err := New(Config{Hosts: []string{"localhost"}, Issue: c.ServerCertificate})
	if err != nil {
		t.Fatal(err)
	}
	srv := &echoServer{t: t, tls: &tls.Config{GetCertificate: k.GetCertificate}, roots: c.Roots()}
	before, old := srv.dial()
	if _, err := c.RotateIntermediate(dir, []byte(hubkit.Passphrase), time.Now()); err != nil {
		t.Fatal(err)
	}
	leaf, err := k.Reissue(time.Now())
	if err != nil {
		t.Fatalf("Reissue() = %v", err)
	}
	if leaf.CheckSignatureFrom(c.Intermediate()) != nil {
		t.Fatalf("Reissue() after the rotation = a certificate of %q, want one of the new intermediate", leaf.Issuer)
	}
	conn, got := srv.dial()
	if got.SerialNumber.Cmp(leaf.SerialNumber) != 0 || got.SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Fatalf("after Reissue the server presents %x, want %x", got.SerialNumber, leaf.SerialNumber)
	}
	if chain := conn.ConnectionState().PeerCertificates; len(chain) < 2 || !chain[1].Equal(c.Intermediate()) {
		t.Errorf("after Reissue the chain does not carry the new intermediate")
	}
	echo(t, before, "across the rotation")
}

// TestSetHosts: a hostnames change takes effect at once; a bad name keeps what is in service.
func TestSetHosts(t *testing.T) {
	k, srv := newKeeper(t, nil)
	if _, err := k.SetHosts([]string{"not a host"}, time.Now()); err == nil {
		t.Fatal("SetHosts(bad name) = nil, want an error")
	}
	if got := k.Hosts(); !slices.Equal(got, []string{"localhost", "127.0.0.1"}) {
		t.Fatalf("after a refused SetHosts, Hosts() = %v, want the old ones", got)
	}
	if _, err := k.SetHosts([]string{"localhost", "hub.example"}, time.Now()); err != nil {
		t.Fatalf("SetHosts = %v", err)
	}
	_, got := srv.dial()
	if !slices.Equal(got.DNSNames, []string{"localhost", "hub.example"}) || len(got.IPAddresses) != 0 {
		t.Errorf("after SetHosts the server presents names %v %v, want localhost, hub.example", got.DNSNames, got.IPAddresses)
	}
}
