package ca

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// snapshot records every file of dir (name → contents and mtime).
type fileState struct {
	data  []byte
	mtime time.Time
	mode  fs.FileMode
}

func snapshot(t *testing.T, dir string) map[string]fileState {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]fileState{}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = fileState{data: data, mtime: info.ModTime(), mode: info.Mode()}
	}
	return m
}

func assertUnchanged(t *testing.T, dir string, before map[string]fileState) {
	t.Helper()
	after := snapshot(t, dir)
	if len(after) != len(before) {
		t.Errorf("directory has %d files, had %d", len(after), len(before))
	}
	for name, b := range before {
		a, ok := after[name]
		switch {
		case !ok:
			t.Errorf("%s disappeared", name)
		case !bytes.Equal(a.data, b.data):
			t.Errorf("%s changed contents", name)
		case !a.mtime.Equal(b.mtime):
			t.Errorf("%s mtime %v, was %v", name, a.mtime, b.mtime)
		case a.mode != b.mode:
			t.Errorf("%s mode %v, was %v", name, a.mode, b.mode)
		}
	}
}

// TestOpenDefaultIterations is the one test paying for the real KDF cost.
func TestOpenDefaultIterations(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "ca")
	created, err := Open(dir, testPass, testNow)
	if err != nil {
		t.Fatalf("Open(new dir) = %v", err)
	}
	loaded, err := Open(dir, testPass, testNow.Add(time.Hour))
	if err != nil {
		t.Fatalf("Open(existing) = %v", err)
	}
	if got, want := loaded.Fingerprint(), created.Fingerprint(); got != want {
		t.Errorf("reopened Fingerprint() = %s, want %s", got, want)
	}
	for _, name := range []string{rootKeyFile, interKeyFile} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(data)
		if got := block.Headers["Iterations"]; got != "600000" {
			t.Errorf("%s Iterations header = %q, want 600000", name, got)
		}
	}
}

func TestLoadRoundTrip(t *testing.T) {
	c, dir := newTestCA(t)
	got, err := Load(dir, testPass)
	if err != nil {
		t.Fatalf("Load = %v", err)
	}
	if got.Fingerprint() != c.Fingerprint() {
		t.Errorf("Load().Fingerprint() = %s, want %s", got.Fingerprint(), c.Fingerprint())
	}
	if !bytes.Equal(got.Intermediate().Raw, c.Intermediate().Raw) {
		t.Error("Load().Intermediate() differs from the created one")
	}
	if !publicKeyEqual(got.state().interKey.Public(), c.state().interKey.Public()) {
		t.Error("Load() intermediate key differs from the created one")
	}
	// The loaded keys sign: a leaf from the reloaded CA verifies under the original.
	key := testkit.NewKey(t)
	leaf, err := got.SignLeaf(testkit.NewCSR(t, key, nil), "dev-1", leafAt(testNow))
	if err != nil {
		t.Fatalf("SignLeaf = %v", err)
	}
	if err := c.Verify(leaf, testNow); err != nil {
		t.Errorf("Verify(leaf of reloaded CA) = %v", err)
	}
}

// TestLoadLeavesRootKeyEncrypted: Load never decrypts the root key (it only signs
// intermediates), so a root.key whose ciphertext no passphrase opens still loads a CA that
// issues, while a root.key of the wrong shape is still refused.
func TestLoadLeavesRootKeyEncrypted(t *testing.T) {
	c, dir := newTestCA(t)
	block, _ := pem.Decode(read(t, dir, rootKeyFile))
	block.Bytes[len(block.Bytes)/2] ^= 1
	write(t, dir, rootKeyFile, pem.EncodeToMemory(block))
	got, err := Load(dir, testPass)
	if err != nil {
		t.Fatalf("Load(root ciphertext altered) = %v; want the CA, its root key untouched", err)
	}
	leaf, err := got.SignLeaf(testkit.NewCSR(t, testkit.NewKey(t), nil), "dev-1", leafAt(testNow))
	if err != nil {
		t.Fatalf("SignLeaf = %v", err)
	}
	if err := c.Verify(leaf, testNow); err != nil {
		t.Errorf("Verify = %v", err)
	}
}

// TestCheckKeys: CheckKeys finds what Load leaves alone, a root key that does not open or
// belongs to another CA.
func TestCheckKeys(t *testing.T) {
	_, otherDir := newTestCA(t)
	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T, dir string)
		wantErr error
	}{
		{"intact", func(*testing.T, string) {}, nil},
		{"root ciphertext altered", func(t *testing.T, dir string) {
			block, _ := pem.Decode(read(t, dir, rootKeyFile))
			block.Bytes[len(block.Bytes)/2] ^= 1
			write(t, dir, rootKeyFile, pem.EncodeToMemory(block))
		}, ErrWrongPassphrase},
		{"root key of another CA", func(t *testing.T, dir string) {
			write(t, dir, rootKeyFile, read(t, otherDir, rootKeyFile))
		}, ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, dir := newTestCA(t)
			tc.damage(t, dir)
			before := snapshot(t, dir)
			if err := CheckKeys(dir, testPass); !errors.Is(err, tc.wantErr) {
				t.Errorf("CheckKeys = %v, want %v", err, tc.wantErr)
			}
			assertUnchanged(t, dir, before)
		})
	}
}

func TestInitWithIterations(t *testing.T) {
	for _, bad := range []int{-1, 1, MinIterations - 1, maxIterations + 1} {
		if _, err := InitWithIterations(t.TempDir(), testPass, testNow, bad); err == nil {
			t.Errorf("InitWithIterations(%d) = nil error", bad)
		}
	}
	dir := t.TempDir()
	if _, err := InitWithIterations(dir, testPass, testNow, MinIterations); err != nil {
		t.Fatalf("InitWithIterations(%d) = %v", MinIterations, err)
	}
	block, _ := pem.Decode(read(t, dir, rootKeyFile))
	if got := block.Headers["Iterations"]; got != "1000" {
		t.Errorf("Iterations header = %q, want 1000", got)
	}
}

func TestInitTwice(t *testing.T) {
	_, dir := newTestCA(t)
	before := snapshot(t, dir)
	if _, err := create(dir, testPass, testNow, testIterations); !errors.Is(err, ErrExists) {
		t.Errorf("second Init = %v, want ErrExists", err)
	}
	assertUnchanged(t, dir, before)
}

func TestWrongPassphraseTouchesNothing(t *testing.T) {
	_, dir := newTestCA(t)
	before := snapshot(t, dir)
	wrong := []byte("tr0ub4dor&3")
	if _, err := Load(dir, wrong); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("Load(wrong passphrase) = %v, want ErrWrongPassphrase", err)
	}
	if _, err := open(dir, wrong, testNow.Add(24*time.Hour), testIterations); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("Open(wrong passphrase) = %v, want ErrWrongPassphrase", err)
	}
	assertUnchanged(t, dir, before)
}

func TestFileModes(t *testing.T) {
	_, dir := newTestCA(t)
	info, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != 0o700 {
		t.Errorf("dir mode = %v, want 0700", got)
	}
	names := []string{}
	for name, st := range snapshot(t, dir) {
		names = append(names, name)
		if got := st.mode.Perm(); got != 0o600 {
			t.Errorf("%s mode = %v, want 0600", name, got)
		}
	}
	if len(names) != 4 {
		t.Errorf("CA dir holds %v, want the 4 CA files only", names)
	}
}

func TestLoadDamaged(t *testing.T) {
	_, otherDir := newTestCA(t)
	tests := []struct {
		name    string
		damage  func(t *testing.T, dir string)
		pass    []byte
		wantErr error
	}{
		{"empty passphrase", func(*testing.T, string) {}, nil, ErrNoPassphrase},
		{"no root.pem", func(t *testing.T, dir string) { remove(t, dir, rootCertFile) }, testPass, ErrNotInitialized},
		{"no intermediate.key", func(t *testing.T, dir string) { remove(t, dir, interKeyFile) }, testPass, ErrCorrupt},
		{"no intermediate.pem", func(t *testing.T, dir string) { remove(t, dir, interCertFile) }, testPass, ErrCorrupt},
		{"keys swapped", func(t *testing.T, dir string) {
			r, i := read(t, dir, rootKeyFile), read(t, dir, interKeyFile)
			write(t, dir, rootKeyFile, i)
			write(t, dir, interKeyFile, r)
		}, testPass, ErrCorrupt},
		{"key of another CA", func(t *testing.T, dir string) {
			write(t, dir, interKeyFile, read(t, otherDir, interKeyFile))
		}, testPass, ErrCorrupt},
		{"certificate of another CA", func(t *testing.T, dir string) {
			write(t, dir, interCertFile, read(t, otherDir, interCertFile))
		}, testPass, ErrCorrupt},
		{"root.pem junk", func(t *testing.T, dir string) { write(t, dir, rootCertFile, []byte("hello")) }, testPass, ErrCorrupt},
		{"ciphertext flipped", func(t *testing.T, dir string) {
			block, _ := pem.Decode(read(t, dir, interKeyFile))
			block.Bytes[len(block.Bytes)/2] ^= 1
			write(t, dir, interKeyFile, pem.EncodeToMemory(block))
		}, testPass, ErrWrongPassphrase},
		{"iterations lowered", func(t *testing.T, dir string) {
			for _, name := range []string{rootKeyFile, interKeyFile} {
				block, _ := pem.Decode(read(t, dir, name))
				block.Headers["Iterations"] = "999"
				write(t, dir, name, pem.EncodeToMemory(block))
			}
		}, testPass, ErrWrongPassphrase},
		{"unknown cipher", func(t *testing.T, dir string) {
			block, _ := pem.Decode(read(t, dir, rootKeyFile))
			block.Headers["Cipher"] = "ROT13"
			write(t, dir, rootKeyFile, pem.EncodeToMemory(block))
		}, testPass, ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, dir := newTestCA(t)
			tt.damage(t, dir)
			if _, err := Load(dir, tt.pass); !errors.Is(err, tt.wantErr) {
				t.Errorf("Load = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == ErrCorrupt || tt.wantErr == ErrWrongPassphrase {
				// Open must not "repair" a committed CA by replacing it.
				before := snapshot(t, dir)
				if _, err := open(dir, tt.pass, testNow, testIterations); !errors.Is(err, tt.wantErr) {
					t.Errorf("Open = %v, want %v", err, tt.wantErr)
				}
				assertUnchanged(t, dir, before)
			}
		})
	}
}

// TestInitAfterCrash simulates a crash before the commit marker: three of
// four files written plus a stray temporary file. The next Open must create
// a working CA instead of failing forever.
func TestInitAfterCrash(t *testing.T) {
	_, src := newTestCA(t)
	dir := filepath.Join(t.TempDir(), "ca")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{interCertFile, interKeyFile, rootKeyFile} {
		write(t, dir, name, read(t, src, name))
	}
	write(t, dir, tmpPrefix+rootCertFile+"-123", []byte("partial"))
	if _, err := Load(dir, testPass); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("Load(crashed init) = %v, want ErrNotInitialized", err)
	}
	c, err := open(dir, testPass, testNow, testIterations)
	if err != nil {
		t.Fatalf("Open(crashed init) = %v", err)
	}
	if _, err := Load(dir, testPass); err != nil {
		t.Errorf("Load after recovery = %v", err)
	}
	for name := range snapshot(t, dir) {
		if strings.HasPrefix(name, tmpPrefix) {
			t.Errorf("stale temporary file %s left", name)
		}
	}
	if old, err := Load(src, testPass); err != nil || old.Fingerprint() == c.Fingerprint() {
		t.Error("recovered CA reused the crashed one's root")
	}
}

func TestCACertificates(t *testing.T) {
	c, _ := newTestCA(t)
	root, inter := c.Root(), c.Intermediate()
	if !root.IsCA || root.KeyUsage != (x509.KeyUsageCertSign|x509.KeyUsageCRLSign) || root.CheckSignatureFrom(root) != nil {
		t.Errorf("root: IsCA=%v KeyUsage=%v, want self-signed CA with certSign|crlSign", root.IsCA, root.KeyUsage)
	}
	if !inter.IsCA || inter.MaxPathLen != 0 || !inter.MaxPathLenZero || inter.KeyUsage != (x509.KeyUsageCertSign|x509.KeyUsageCRLSign) {
		t.Errorf("intermediate: IsCA=%v MaxPathLen=%d MaxPathLenZero=%v KeyUsage=%v, want CA, path length 0",
			inter.IsCA, inter.MaxPathLen, inter.MaxPathLenZero, inter.KeyUsage)
	}
	if err := inter.CheckSignatureFrom(root); err != nil {
		t.Errorf("intermediate.CheckSignatureFrom(root) = %v", err)
	}
	if want := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}; !slices.Equal(inter.ExtKeyUsage, want) {
		t.Errorf("intermediate ExtKeyUsage = %v, want %v", inter.ExtKeyUsage, want)
	}
	if len(root.ExtKeyUsage) != 0 {
		t.Errorf("root ExtKeyUsage = %v, want none", root.ExtKeyUsage)
	}
	if len(root.SubjectKeyId) != 20 || !bytes.Equal(inter.AuthorityKeyId, root.SubjectKeyId) || len(inter.SubjectKeyId) != 20 {
		t.Errorf("key ids: root SKI %x, intermediate AKI %x SKI %x", root.SubjectKeyId, inter.AuthorityKeyId, inter.SubjectKeyId)
	}
	for _, tc := range []struct {
		name      string
		got, want time.Time
	}{
		{"root NotBefore", root.NotBefore, testNow.Add(-time.Hour)},
		{"root NotAfter", root.NotAfter, testNow.Add(-time.Hour).AddDate(10, 0, 0)},
		{"intermediate NotAfter", inter.NotAfter, testNow.Add(-time.Hour).AddDate(5, 0, 0)},
	} {
		if !tc.got.Equal(tc.want) {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if got := protocol.KeyAlgorithmOf(inter.PublicKey); got != protocol.KeyP256 {
		t.Errorf("KeyAlgorithmOf(intermediate) = %q, want %q", got, protocol.KeyP256)
	}
	if root.Subject.CommonName != RootCommonName || inter.Subject.CommonName != IntermediateCommonName {
		t.Errorf("subjects = %q, %q", root.Subject, inter.Subject)
	}
	// ChainPEM is intermediate then root.
	rest := c.ChainPEM()
	for i, want := range [][]byte{inter.Raw, root.Raw} {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil || !bytes.Equal(b.Bytes, want) {
			t.Errorf("ChainPEM block %d is not the expected certificate", i)
		}
	}
	if len(rest) != 0 {
		t.Errorf("ChainPEM has %d trailing bytes", len(rest))
	}
}

func TestCACertificatesOpenSSL(t *testing.T) {
	c, _ := newTestCA(t)
	tmp := t.TempDir()
	rootPath, interPath := writeChain(t, c, tmp)
	out, err := openssl(t, "verify", "-CAfile", rootPath, interPath)
	if err != nil || !strings.Contains(out, ": OK") {
		t.Fatalf("openssl verify intermediate = %v\n%s", err, out)
	}
	out, err = openssl(t, "x509", "-in", interPath, "-noout", "-text")
	if err != nil {
		t.Fatalf("openssl x509 = %v\n%s", err, out)
	}
	for _, want := range []string{"CA:TRUE, pathlen:0", "Certificate Sign, CRL Sign",
		"X509v3 Extended Key Usage: \n                TLS Web Client Authentication, TLS Web Server Authentication", "X509v3 Subject Key Identifier", "X509v3 Authority Key Identifier", "ASN1 OID: prime256v1"} {
		if !strings.Contains(out, want) {
			t.Errorf("openssl x509 -text intermediate lacks %q:\n%s", want, out)
		}
	}
}

func remove(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func write(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}
