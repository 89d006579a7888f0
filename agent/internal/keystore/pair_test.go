package keystore

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/log"
	"github.com/hearth-pki/hearth/protocol"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestPairAccessors(t *testing.T) {
	ca := newTestCA(t)
	p := newPair(t, ca, 0x1f2e)
	if got := p.Serial(); got != "1f2e" {
		t.Errorf("Serial() = %q, want %q", got, "1f2e")
	}
	if p.Leaf() != p.Chain[0] {
		t.Errorf("Leaf() is not Chain[0]")
	}
	var empty Pair
	if empty.Leaf() != nil || empty.Serial() != "" || empty.Algorithm() != "" || empty.String() != "keystore.Pair{}" {
		t.Errorf("zero Pair: Leaf %v, Serial %q, Algorithm %q, String %q", empty.Leaf(), empty.Serial(), empty.Algorithm(), empty.String())
	}
}

func TestPairNeverPrintsKey(t *testing.T) {
	ca := newTestCA(t)
	p := newPair(t, ca, 42)
	secret := p.Key.(*ecdsa.PrivateKey)
	raw, err := secret.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := encodeKey(p.Key)
	if err != nil {
		t.Fatal(err)
	}
	forbidden := []string{
		fmt.Sprintf("%x", raw), fmt.Sprintf("%X", raw), new(big.Int).SetBytes(raw).String(),
		string(raw), "PRIVATE KEY", string(keyPEM[30:60]),
	}
	var logged bytes.Buffer
	log.New(&logged, log.JSON, log.LevelInfo).Info("pair", "pair", p, "ptr", &p)
	log.New(&logged, log.Text, log.LevelInfo).Info("pair", "pair", p)
	outputs := map[string]string{
		"%v": fmt.Sprintf("%v", p), "%+v": fmt.Sprintf("%+v", p), "%#v": fmt.Sprintf("%#v", p),
		"%v of pointer": fmt.Sprintf("%v", &p), "%+v of pointer": fmt.Sprintf("%+v", &p),
		"slog": logged.String(),
	}
	for verb, out := range outputs {
		for _, f := range forbidden {
			if strings.Contains(out, f) {
				t.Errorf("%s of a Pair prints key material %q: %s", verb, f, out)
			}
		}
		if !strings.Contains(out, "2a") {
			t.Errorf("%s of a Pair = %s, want the serial 2a in it", verb, out)
		}
	}
}

// TestTLSCertificate authenticates with a pair on a real TLS connection (127.0.0.1) to a server that
// requires and verifies client certificates against the test root.
func TestTLSCertificate(t *testing.T) {
	ca := newTestCA(t)
	client := newPair(t, ca, 5)
	server := newPair(t, ca, 6)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cConn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sConn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	srv := tls.Server(sConn, &tls.Config{
		Certificates: []tls.Certificate{server.TLSCertificate()},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    roots,
		Time:         func() time.Time { return testEpoch.AddDate(0, 0, 1) },
	})
	done := make(chan error, 1)
	go func() {
		err := srv.HandshakeContext(t.Context())
		srv.Close()
		done <- err
	}()
	cli := tls.Client(cConn, &tls.Config{
		// This test is about the client's certificate; the server's is not checked.
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c := client.TLSCertificate()
			return &c, nil
		},
	})
	cliErr := cli.HandshakeContext(t.Context())
	cli.Close()
	if err := <-done; err != nil {
		t.Fatalf("server handshake: %v (client: %v)", err, cliErr)
	}
	if cliErr != nil {
		t.Fatalf("client handshake: %v", cliErr)
	}
	if got := srv.ConnectionState().PeerCertificates; len(got) == 0 || !got[0].Equal(client.Leaf()) {
		t.Errorf("server saw client certificate %v, want serial %s", got, client.Serial())
	}
}

// TestBundleGolden locks the generation file format: a file written by this version must load
// in every later one, and encode to the same bytes.
func TestBundleGolden(t *testing.T) {
	golden := filepath.Join("testdata", "bundle.golden.pem")
	if *update {
		data, err := encodeBundle(newPair(t, newTestCA(t), 0x2026))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	p, err := decodeBundle(data)
	if err != nil {
		t.Fatalf("decodeBundle(%s) = %v", golden, err)
	}
	if p.Serial() != "2026" || len(p.Chain) != 2 || p.Algorithm() != protocol.KeyP256 {
		t.Errorf("decodeBundle(%s) = %v with %d certificates, want serial 2026, 2 certificates, p256", golden, p, len(p.Chain))
	}
	again, err := encodeBundle(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, data) {
		t.Errorf("encodeBundle(decodeBundle(%s)) differs from the golden file:\n%s", golden, again)
	}
}

func TestDecodeBundleErrors(t *testing.T) {
	ca := newTestCA(t)
	p := newPair(t, ca, 1)
	chain, key := encodeChain(p.Chain), must(encodeKey(p.Key))
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"chain only", chain},
		{"key only", key},
		{"key before chain", append(append([]byte{}, key...), chain...)},
		{"two keys", bytes.Join([][]byte{chain, key, key}, nil)},
		{"other block type", append(bytes.ReplaceAll(chain, []byte("CERTIFICATE"), []byte("X509 CRL")), key...)},
		{"trailing junk", bytes.Join([][]byte{chain, key, []byte("x")}, nil)},
		{"headers", bytes.Join([][]byte{[]byte("-----BEGIN CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END CERTIFICATE-----\n"), key}, nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := decodeBundle(tt.data); !errors.Is(err, ErrCorrupt) {
				t.Errorf("decodeBundle(%s) = %v, %v; want ErrCorrupt", tt.name, got, err)
			}
		})
	}
	// Line endings and surrounding whitespace written by other tools are tolerated.
	crlf := bytes.ReplaceAll(append(append([]byte("\n"), chain...), key...), []byte("\n"), []byte("\r\n"))
	if _, err := decodeBundle(crlf); err != nil {
		t.Errorf("decodeBundle(CRLF) = %v, want nil", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// FuzzLoadBundle writes arbitrary bytes as current.pem: loading must never panic, and must give
// either an error wrapping ErrCorrupt or a valid pair that survives a re-encode.
func FuzzLoadBundle(f *testing.F) {
	ca := newTestCA(f)
	good := must(encodeBundle(newPair(f, ca, 1)))
	golden, err := os.ReadFile(filepath.Join("testdata", "bundle.golden.pem"))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range [][]byte{good, golden, good[:len(good)/2], nil, []byte("-----BEGIN PRIVATE KEY-----\n"), bytes.Repeat([]byte{0xff}, 64)} {
		f.Add(seed)
	}
	path := f.TempDir() // iterations of one fuzz worker run one after another
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(filepath.Join(path, currentName), data, fileMode); err != nil {
			t.Fatal(err)
		}
		d, err := Open(path, Options{})
		if err != nil {
			t.Fatalf("Open() = %v", err)
		}
		p, err := d.Current()
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Current() = %v, want an error wrapping ErrCorrupt", err)
			}
			return
		}
		if err := p.check(); err != nil {
			t.Fatalf("Current() returned an invalid pair: %v", err)
		}
		again, err := decodeBundle(must(encodeBundle(p)))
		if err != nil {
			t.Fatalf("re-decoding an accepted bundle: %v", err)
		}
		if again.Serial() != p.Serial() || len(again.Chain) != len(p.Chain) {
			t.Fatalf("re-decoded %v, want %v", again, p)
		}
	})
}
