package ca

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
)

// BenchmarkRenewalCryptoFloor is the hub's cryptography for one renewal with reconnect
// proof, and nothing else: two TLS 1.3 server handshakes verifying a client certificate
// (the session the CSR arrives on, and the reconnection with the new certificate that
// proves it before the commit), one CSR signature check and one ECDSA P-256 signature (the
// new leaf's). The TLS configuration is the hub's (internal/hub: the server chain ends with
// the root, clients are verified against the root when they present a certificate).
//
// The client side of each handshake runs on another goroutine; the metric hub-µs/op is
// the CPU time of the server side alone, measured on the OS thread it is locked to
// (getrusage RUSAGE_THREAD), so scripts/bench.sh storm can divide the hub's CPU per
// renewal by it. ns/op includes the client's work.
func BenchmarkRenewalCryptoFloor(b *testing.B) {
	c, _ := newTestCA(b)
	now := time.Now()
	server, err := c.ServerCertificate([]string{"localhost", "127.0.0.1"}, now)
	if err != nil {
		b.Fatal(err)
	}
	server.Certificate = append(server.Certificate, c.Root().Raw)
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(c.Root())
	serverConf := &tls.Config{Certificates: []tls.Certificate{server}, ClientCAs: clientCAs,
		ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12}

	key := testkit.NewKey(b)
	csrDER := testkit.NewCSR(b, key, nil).Raw
	leaf, err := c.SignLeaf(mustParseCSR(b, csrDER), "bench-device", leafAt(now))
	if err != nil {
		b.Fatal(err)
	}
	clientConf := &tls.Config{RootCAs: c.Roots(), ServerName: "localhost", MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Raw, c.Intermediate().Raw}, PrivateKey: key}}}
	// The leaf's signature: a P-256 key like the intermediate's, over a digest of a
	// to-be-signed leaf's size.
	signKey := testkit.NewKey(b)

	var hubCPU time.Duration
	for b.Loop() {
		hubCPU += serverSide(b, serverConf, clientConf, func() {
			csr, err := x509.ParseCertificateRequest(csrDER)
			if err != nil {
				b.Fatal(err)
			}
			if err := csr.CheckSignature(); err != nil {
				b.Fatal(err)
			}
			digest := sha256.Sum256(leaf.RawTBSCertificate)
			if _, err := ecdsa.SignASN1(rand.Reader, signKey, digest[:]); err != nil {
				b.Fatal(err)
			}
		})
	}
	b.ReportMetric(float64(hubCPU.Microseconds())/float64(b.N), "hub-µs/op")
}

// serverSide runs two handshakes of serverConf against clientConf over in-memory pipes and
// work between them, all on one locked OS thread, and returns that thread's CPU time.
func serverSide(b *testing.B, serverConf, clientConf *tls.Config, work func()) time.Duration {
	done := make(chan time.Duration)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		start := threadCPU(b)
		for i := range 2 {
			handshake(b, serverConf, clientConf)
			if i == 0 {
				work()
			}
		}
		done <- threadCPU(b) - start
	}()
	return <-done
}

// handshake completes one TLS handshake; the server side runs on the calling goroutine and
// must see a verified client certificate.
func handshake(b *testing.B, serverConf, clientConf *tls.Config) {
	sc, cc := net.Pipe()
	defer sc.Close()
	errc := make(chan error, 1)
	go func() {
		defer cc.Close()
		errc <- tls.Client(cc, clientConf).Handshake()
	}()
	s := tls.Server(sc, serverConf)
	if err := s.Handshake(); err != nil {
		b.Fatalf("server handshake: %v", err)
	}
	st := s.ConnectionState()
	if st.Version != tls.VersionTLS13 || len(st.VerifiedChains) == 0 {
		b.Fatalf("handshake: version %x, %d verified chains; want TLS 1.3 with a verified client", st.Version, len(st.VerifiedChains))
	}
	if err := <-errc; err != nil {
		b.Fatalf("client handshake: %v", err)
	}
}

// threadCPU is the user and system time of the calling OS thread.
func threadCPU(b *testing.B) time.Duration {
	const rusageThread = 1 // RUSAGE_THREAD (Linux)
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func mustParseCSR(b *testing.B, der []byte) *x509.CertificateRequest {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		b.Fatal(err)
	}
	return csr
}
