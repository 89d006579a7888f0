package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/admin"
	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/control"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/issuer"
	"github.com/hearth-pki/hearth/protocol"
)

// manualHub is a real admin service behind a real control socket at <data>/hearth.sock.
type manualHub struct {
	data   string
	store  *inventory.Store
	ca     *ca.CA
	client *control.Client
}

func startManualHub(t *testing.T) *manualHub {
	t.Helper()
	data := t.TempDir()
	store, err := inventory.Open(t.Context(), filepath.Join(data, "hearth.db"))
	if err != nil {
		t.Fatalf("inventory.Open() = %v", err)
	}
	t.Cleanup(func() { store.Close() })
	now := time.Now().UTC().Truncate(time.Second)
	authority, err := ca.InitWithIterations(filepath.Join(data, "ca"), []byte("test passphrase"), now, ca.MinIterations)
	if err != nil {
		t.Fatalf("ca.InitWithIterations() = %v", err)
	}
	clock := func() time.Time { return now }
	iss := issuer.New(issuer.Config{CA: authority, Store: store, Now: clock})
	svc := admin.New(admin.Config{Store: store, CA: authority, Broker: nopBroker{}, Issuer: iss, Now: clock})
	sock := filepath.Join(data, "hearth.sock")
	l, err := control.Listen(sock, false)
	if err != nil {
		t.Fatalf("control.Listen(%s) = %v", sock, err)
	}
	done := make(chan error, 1)
	ctx := t.Context()
	go func() { done <- control.Serve(ctx, l, svc, control.Roles{Owner: uint32(os.Geteuid())}) }()
	t.Cleanup(func() {
		if err := <-done; err != nil {
			t.Errorf("control.Serve() = %v", err)
		}
	})
	return &manualHub{data: data, store: store, ca: authority, client: control.NewClient(sock)}
}

type nopBroker struct{}

func (nopBroker) Publish(string, []byte, bool) error        { return nil }
func (nopBroker) Disconnect(string) int                     { return 0 }
func (nopBroker) DisconnectAfter(string, time.Duration) int { return 0 }

// writeManualFile writes content to a file in a temp dir and returns its path.
func writeManualFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// vendorChainPEM returns a leaf with serial 0x4201 and its self-signed vendor CA, in PEM.
func vendorChainPEM(t *testing.T) string {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Acme Cloud CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(0x4201),
		Subject: pkix.Name{CommonName: "ACME-CAM-42"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(365 * 24 * time.Hour)}, caCert, leafKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER})) +
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
}

// deviceCSR returns a fresh P-256 CSR for id in PEM.
func deviceCSR(t *testing.T, id string) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: id}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// verifySignedChain parses a chain file's content and verifies it against the hub's root.
func verifySignedChain(t *testing.T, h *manualHub, chain string) *x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	for rest := []byte(chain); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	if len(certs) != 2 {
		t.Fatalf("chain holds %d certificates, want leaf + intermediate", len(certs))
	}
	inters := x509.NewCertPool()
	inters.AddCert(certs[1])
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: h.ca.Roots(), Intermediates: inters,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("chain does not verify against the hub's root: %v", err)
	}
	return certs[0]
}

func TestManualImportCLI(t *testing.T) {
	h := startManualHub(t)
	file := writeManualFile(t, "cam.pem", vendorChainPEM(t))
	var out bytes.Buffer
	if err := runManual(t.Context(), h.client, "device import", "porch-cam", "Porch camera", "acme", []string{file}, false, &out); err != nil {
		t.Fatalf("device import = %v", err)
	}
	for _, want := range []string{"imported certificate 4201 of porch-cam", "issuer CN=Acme Cloud CA", "; active", "reminders"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("device import output lacks %q:\n%s", want, out.String())
		}
	}
	dev, err := h.store.Device(t.Context(), "porch-cam")
	if err != nil || dev.Mechanism != inventory.MechanismManual || dev.Name != "Porch camera" || dev.Family != "acme" {
		t.Errorf("device after import = %+v, %v; want manual, named, family acme", dev, err)
	}

	t.Run("again from stdin as JSON", func(t *testing.T) {
		out.Reset()
		pemText, _ := os.ReadFile(file)
		err := manual(t.Context(), h.client, manualArgs{cmd: "device import", device: "porch-cam", file: "-", asJSON: true},
			bytes.NewReader(pemText), &out)
		if err != nil {
			t.Fatalf("device import - --json = %v", err)
		}
		var r protocol.DeviceImported
		if err := json.Unmarshal(out.Bytes(), &r); err != nil || r.Serial != "4201" || !r.AlreadyImported {
			t.Errorf("device import --json = %s (%v), want the existing record, already_imported", out.String(), err)
		}
	})
}

func TestManualSignCLI(t *testing.T) {
	h := startManualHub(t)
	csr := writeManualFile(t, "printer.csr", deviceCSR(t, "printer"))
	outPath := filepath.Join(t.TempDir(), "printer.pem")
	var out bytes.Buffer
	if err := runManual(t.Context(), h.client, "device sign", "printer", "", "", []string{csr, "--out", outPath}, false, &out); err != nil {
		t.Fatalf("device sign --out = %v", err)
	}
	if want := "chain (leaf + intermediate) written to " + outPath; !strings.Contains(out.String(), want) ||
		!strings.Contains(out.String(), "of printer (class default)") || strings.Contains(out.String(), "BEGIN CERTIFICATE") {
		t.Errorf("device sign --out output:\n%s\nwant a line naming printer and %q, without the chain", out.String(), want)
	}
	fi, err := os.Stat(outPath)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("--out file: %v, %v; want mode 0644", fi, err)
	}
	chain, _ := os.ReadFile(outPath)
	leaf := verifySignedChain(t, h, string(chain))
	if active, err := h.store.ActiveCertificate(t.Context(), "printer"); err != nil || active.Serial != leaf.SerialNumber.Text(16) {
		t.Errorf("active certificate of printer = %+v, %v; want the one written to --out", active, err)
	}

	t.Run("chain to stdout", func(t *testing.T) {
		out.Reset()
		if err := runManual(t.Context(), h.client, "device sign", "printer", "", "", []string{writeManualFile(t, "2.csr", deviceCSR(t, ""))}, false, &out); err != nil {
			t.Fatalf("device sign = %v", err)
		}
		line, chain, _ := strings.Cut(out.String(), "\n")
		if !strings.Contains(line, "chain (leaf + intermediate) follows") || !strings.Contains(line, leaf.SerialNumber.Text(16)+" superseded") {
			t.Errorf("device sign first line = %q, want the chain announced and the previous certificate superseded", line)
		}
		verifySignedChain(t, h, chain)
	})
	t.Run("through run with --data and --", func(t *testing.T) {
		out.Reset()
		p := filepath.Join(t.TempDir(), "thermostat.pem")
		args := []string{"device", "sign", "--device", "thermostat", "--data", h.data, writeManualFile(t, "t.csr", deviceCSR(t, "thermostat")), "--", "--out", p}
		if err := run(t.Context(), args, nil, &out, &bytes.Buffer{}, func(string) string { return "" }); err != nil {
			t.Fatalf("run(%v) = %v", args, err)
		}
		chain, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("run(%v) wrote no chain: %v", args, err)
		}
		verifySignedChain(t, h, string(chain))
	})
}

func TestManualCLIErrors(t *testing.T) {
	h := startManualHub(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	keyFile := writeManualFile(t, "both.pem", deviceCSR(t, "x")+string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})))
	csr := writeManualFile(t, "x.csr", deviceCSR(t, "x"))
	tests := []struct {
		name   string
		cmd    string
		device string
		args   []string
		want   string
	}{
		{"no device", "device sign", "", []string{csr}, "--device is required"},
		{"no file", "device import", "x", nil, "give one FILE"},
		{"two files", "device import", "x", []string{csr, csr}, "give one FILE"},
		{"missing file", "device import", "x", []string{filepath.Join(t.TempDir(), "nope.pem")}, "no such file"},
		{"empty file", "device import", "x", []string{writeManualFile(t, "empty.pem", "\n")}, "is empty"},
		{"too large", "device import", "x", []string{writeManualFile(t, "big.pem", strings.Repeat("x", maxManualFile+1))}, "over 64 KiB"},
		{"private key", "device sign", "x", []string{keyFile}, "holds a private key"},
		{"out for import", "device import", "x", []string{csr, "--out", filepath.Join(t.TempDir(), "o.pem")}, "--out is for device sign"},
		{"out in a missing directory", "device sign", "x", []string{csr, "--out", filepath.Join(t.TempDir(), "no", "o.pem")}, "directory does not exist"},
		{"refused by the hub", "device import", "x", []string{csr}, `"CERTIFICATE REQUEST", want CERTIFICATE`},
		{"unknown flag", "device sign", "x", []string{csr, "--force"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := runManual(t.Context(), h.client, tt.cmd, tt.device, "", "", tt.args, false, &out)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s %v = %v, want an error containing %q", tt.cmd, tt.args, err, tt.want)
			}
			if n, _ := h.store.CountDevices(t.Context()); n != 0 {
				t.Errorf("%s %v failed but the hub has %d device(s)", tt.cmd, tt.args, n)
			}
		})
	}
}

func TestManualInterleave(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"file then out", []string{"a.csr", "--out", "b.pem"}, []string{"--out", "b.pem", "a.csr"}},
		{"stdin stays positional", []string{"-", "--device", "x"}, []string{"--device", "x", "-"}},
		{"double dash dropped", []string{"--", "--out=b.pem", "a.csr"}, []string{"--out=b.pem", "a.csr"}},
		{"bool flag takes no value", []string{"--json", "a.pem"}, []string{"--json", "a.pem"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := manualInterleave(tt.in); !slices.Equal(got, tt.want) {
				t.Errorf("manualInterleave(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
