package backup

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
)

var testNow = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

// newDataDir makes a hub data directory: a CA, an inventory holding one token, a policy, a
// CRL and the fallback passphrase file (which a backup must leave out).
func newDataDir(t testing.TB) (string, *inventory.Store) {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	if _, err := ca.InitWithIterations(ca.Dir(data), []byte(hubkit.Passphrase), testNow, ca.MinIterations); err != nil {
		t.Fatal(err)
	}
	store, err := inventory.Open(t.Context(), filepath.Join(data, "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if err := store.CreateToken(t.Context(), inventory.Token{Hash: "h", DeviceID: "porch-camera", CreatedAt: testNow, ExpiresAt: testNow.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"policy.yaml": "version: 1\n", "crl.pem": "-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n", "ca/passphrase": hubkit.Passphrase + "\n"} {
		if err := os.WriteFile(filepath.Join(data, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return data, store
}

func archive(t testing.TB, data string, store *inventory.Store) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := Create(t.Context(), data, store.Snapshot, t.TempDir(), &buf, testNow); err != nil {
		t.Fatalf("Create() = %v", err)
	}
	return buf.Bytes()
}

func TestCreateRestore(t *testing.T) {
	data, store := newDataDir(t)
	b := archive(t, data, store)
	if bytes.Contains(b, []byte(hubkit.Passphrase)) {
		t.Fatal("the archive contains the CA passphrase")
	}
	target := filepath.Join(t.TempDir(), "restored")
	m, err := Restore(bytes.NewReader(b), target, nil)
	if err != nil {
		t.Fatalf("Restore() = %v", err)
	}
	orig, err := ca.Load(ca.Dir(data), []byte(hubkit.Passphrase))
	if err != nil {
		t.Fatal(err)
	}
	if m.Fingerprint != orig.Fingerprint() {
		t.Errorf("manifest fingerprint %s, want %s", m.Fingerprint, orig.Fingerprint())
	}
	for _, name := range []string{"ca/root.pem", "ca/intermediate.pem", "ca/root.key", "ca/intermediate.key", "policy.yaml", "crl.pem"} {
		want, _ := os.ReadFile(filepath.Join(data, name))
		got, err := os.ReadFile(filepath.Join(target, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("restored %s = %d bytes, %v; want the original's %d bytes", name, len(got), err, len(want))
		}
	}
	if _, err := os.Stat(filepath.Join(target, "ca", "passphrase")); err == nil {
		t.Error("the restore wrote a passphrase file")
	}
	if info, err := os.Stat(target); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("restored directory mode = %v, %v; want 0700", info.Mode().Perm(), err)
	}
	restored, err := ca.Load(ca.Dir(target), []byte(hubkit.Passphrase))
	if err != nil || restored.Fingerprint() != orig.Fingerprint() {
		t.Fatalf("restored CA: %v, fingerprint %v; want %s", err, restored, orig.Fingerprint())
	}
	again, err := inventory.Open(t.Context(), filepath.Join(target, "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if toks, err := again.Tokens(t.Context()); err != nil || len(toks) != 1 || toks[0].DeviceID != "porch-camera" {
		t.Errorf("restored tokens = %+v, %v; want porch-camera's", toks, err)
	}

	// An existing empty directory is a fine target too.
	empty := t.TempDir()
	if _, err := Restore(bytes.NewReader(b), empty, nil); err != nil {
		t.Errorf("Restore(into an empty directory) = %v", err)
	}
}

// rewrite copies a valid archive entry by entry through edit, which may change an entry's
// header and body or drop it (nil header); extra entries are appended.
func rewrite(t *testing.T, b []byte, edit func(h *tar.Header, body []byte) (*tar.Header, []byte), extra ...tarEntry) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	put := func(h *tar.Header, body []byte) {
		h.Size = int64(len(body))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		if h, body = edit(h, body); h != nil {
			put(h, body)
		}
	}
	for _, e := range extra {
		put(&tar.Header{Name: e.name, Mode: 0o600, Typeflag: e.typ, Linkname: e.link}, e.body)
	}
	tw.Close()
	return out.Bytes()
}

type tarEntry struct {
	name string
	typ  byte
	link string
	body []byte
}

// editManifest changes the manifest in a valid archive.
func editManifest(t *testing.T, b []byte, f func(*Manifest)) []byte {
	return rewrite(t, b, func(h *tar.Header, body []byte) (*tar.Header, []byte) {
		if h.Name == ManifestName {
			var m Manifest
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatal(err)
			}
			f(&m)
			body, _ = json.Marshal(m)
		}
		return h, body
	})
}

func TestRestoreRefuses(t *testing.T) {
	data, store := newDataDir(t)
	good := archive(t, data, store)
	other, otherStore := newDataDir(t)
	otherArchive := archive(t, other, otherStore)
	otherRoot, _ := os.ReadFile(filepath.Join(other, "ca", "root.pem"))
	keep := func(h *tar.Header, body []byte) (*tar.Header, []byte) { return h, body }
	flip := func(name string) func(h *tar.Header, body []byte) (*tar.Header, []byte) {
		return func(h *tar.Header, body []byte) (*tar.Header, []byte) {
			if h.Name == name {
				body = bytes.Clone(body)
				body[len(body)/2] ^= 1
			}
			return h, body
		}
	}
	drop := func(name string) func(h *tar.Header, body []byte) (*tar.Header, []byte) {
		return func(h *tar.Header, body []byte) (*tar.Header, []byte) {
			if h.Name == name {
				return nil, nil
			}
			return h, body
		}
	}
	tests := []struct {
		name    string
		archive []byte
	}{
		{"empty input", nil},
		{"junk", []byte("this is not a tar file at all, not even close")},
		{"truncated", good[:len(good)/2]},
		{"no manifest first", rewrite(t, good, drop(ManifestName))},
		{"inventory altered", rewrite(t, good, flip("hearth.db"))},
		{"intermediate key altered", rewrite(t, good, flip("ca/intermediate.key"))},
		{"intermediate key missing", rewrite(t, good, drop("ca/intermediate.key"))},
		{"listed policy missing", rewrite(t, good, drop("policy.yaml"))},
		{"entry outside the data directory", rewrite(t, good, keep, tarEntry{name: "../escape", typ: tar.TypeReg, body: []byte("x")})},
		{"absolute path", rewrite(t, good, keep, tarEntry{name: "/etc/passwd", typ: tar.TypeReg, body: []byte("x")})},
		{"symlink", rewrite(t, good, drop("crl.pem"), tarEntry{name: "crl.pem", typ: tar.TypeSymlink, link: "/etc/shadow"})},
		{"duplicate entry", rewrite(t, good, keep, tarEntry{name: "policy.yaml", typ: tar.TypeReg, body: []byte("version: 1\n")})},
		{"unknown format", editManifest(t, good, func(m *Manifest) { m.Format = 99 })},
		{"fingerprint mismatch", editManifest(t, good, func(m *Manifest) { m.Fingerprint = "SHA256:00" })},
		{"root of another CA", rewrite(t, editManifest(t, good, func(m *Manifest) {
			var om Manifest
			tr := tar.NewReader(bytes.NewReader(otherArchive))
			tr.Next()
			json.NewDecoder(tr).Decode(&om)
			m.Files["ca/root.pem"] = om.Files["ca/root.pem"]
			m.Fingerprint = om.Fingerprint
		}), func(h *tar.Header, body []byte) (*tar.Header, []byte) {
			if h.Name == "ca/root.pem" {
				body = otherRoot
			}
			return h, body
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			target := filepath.Join(parent, "restored")
			_, err := Restore(bytes.NewReader(tt.archive), target, nil)
			if !errors.Is(err, ErrBadArchive) {
				t.Errorf("Restore(%s) = %v, want ErrBadArchive", tt.name, err)
			}
			if des, _ := os.ReadDir(parent); len(des) != 0 {
				t.Errorf("Restore(%s) left %s behind", tt.name, des[0].Name())
			}
		})
	}

	t.Run("check refuses", func(t *testing.T) {
		parent := t.TempDir()
		target := filepath.Join(parent, "restored")
		wrong := func(dir string) error {
			_, err := ca.Load(ca.Dir(dir), []byte("not the passphrase"))
			return err
		}
		if _, err := Restore(bytes.NewReader(good), target, wrong); !errors.Is(err, ca.ErrWrongPassphrase) {
			t.Errorf("Restore(check with a wrong passphrase) = %v, want ca.ErrWrongPassphrase", err)
		}
		if des, _ := os.ReadDir(parent); len(des) != 0 {
			t.Errorf("a refused check left %s behind", des[0].Name())
		}
	})

	t.Run("target not empty", func(t *testing.T) {
		target := t.TempDir()
		os.WriteFile(filepath.Join(target, "hearth.db"), []byte("live"), 0o600)
		if _, err := Restore(bytes.NewReader(good), target, nil); !errors.Is(err, ErrNotEmpty) {
			t.Errorf("Restore(non-empty target) = %v, want ErrNotEmpty", err)
		}
		if b, _ := os.ReadFile(filepath.Join(target, "hearth.db")); string(b) != "live" {
			t.Errorf("the target's file was changed to %q", b)
		}
	})
}

// FuzzRestore: junk never panics, and a refused archive leaves nothing behind.
func FuzzRestore(f *testing.F) {
	data, store := newDataDir(f)
	good := archive(f, data, store)
	f.Add(good)
	f.Add(good[:len(good)/3])
	f.Add([]byte{})
	f.Add([]byte("hearth-backup.json"))
	f.Fuzz(func(t *testing.T, b []byte) {
		parent := t.TempDir()
		target := filepath.Join(parent, "d")
		if _, err := Restore(bytes.NewReader(b), target, nil); err != nil {
			if des, _ := os.ReadDir(parent); len(des) != 0 {
				t.Fatalf("Restore = %v and left %s behind", err, des[0].Name())
			}
		}
	})
}
