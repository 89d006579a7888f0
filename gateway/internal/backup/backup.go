// Package backup writes a hub's data directory into one archive and restores it into an
// empty one: what a hub needs to come back on another disk with every enrolled device able to
// log in as before.
//
// # The archive
//
// An uncompressed tar (the inventory is most of it and compresses poorly; keys must not be
// recompressed by tools that might log them) holding, in this order:
//
//	hearth-backup.json   the manifest: format 1, creation time, the CA fingerprint and the
//	                     SHA-256 and size of every other entry
//	ca/root.pem, ca/intermediate.pem
//	ca/root.key, ca/intermediate.key   the CA keys, still encrypted with the CA passphrase
//	hearth.db            a consistent snapshot of the inventory (SQLite VACUUM INTO)
//	policy.yaml          when the data directory has one
//	crl.pem              when the data directory has one
//	ca/previous.pem, ca/previous.key, ca/previous-root.pem, ca/cross.pem,
//	crl-previous.pem, crl-root.pem     during and after a CA rotation, when present
//
// The CA passphrase is never in the archive, not even when the hub keeps its fallback
// passphrase file in the data directory: a backup leaks no key to whoever holds it, and the
// operator keeps the passphrase elsewhere.
//
// # Restoring
//
// Restore reads untrusted bytes: it accepts only the entries above, each once, of regular
// type and bounded size, checks every entry against the manifest, and checks that the CA
// certificates belong together and match the manifest's fingerprint. It writes into a
// temporary directory beside the target and renames it into place only when everything
// checked, so a bad archive leaves the target as it was (absent or empty), never half
// restored. It refuses a target that holds anything.
//
// Nothing here keeps state; Create and Restore are safe to call concurrently on different
// directories.
package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/atomicfile"
	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/protocol"
)

// ManifestName is the archive's first entry.
const ManifestName = "hearth-backup.json"

// Format is the manifest's format number this package writes and reads.
const Format = 1

// entry is one file an archive may hold besides the manifest.
type entry struct {
	name     string // slash-separated, relative to the data directory
	required bool
	max      int64 // the largest size Restore accepts
}

// entries are the files of an archive, in archive order.
var entries = []entry{
	{"ca/root.pem", true, 64 << 10},
	{"ca/intermediate.pem", true, 64 << 10},
	{"ca/root.key", true, 64 << 10},
	{"ca/intermediate.key", true, 64 << 10},
	{"hearth.db", true, 8 << 30},
	{"policy.yaml", false, 1 << 20},
	{"crl.pem", false, 64 << 20},
	// During a CA rotation (gateway/internal/ca, rotate.go and rootrotate.go): the previous
	// intermediate, root and cross-certificate still trusted, and the kept CRLs.
	{"ca/previous.pem", false, 64 << 10},
	{"ca/previous.key", false, 64 << 10},
	{"ca/previous-root.pem", false, 64 << 10},
	{"ca/cross.pem", false, 64 << 10},
	{"crl-previous.pem", false, 64 << 20},
	{"crl-root.pem", false, 64 << 20},
}

// maxManifest bounds the manifest Restore reads.
const maxManifest = 64 << 10

// Errors Restore returns; each is wrapped with detail.
var (
	// ErrNotEmpty means the target data directory holds files.
	ErrNotEmpty = errors.New("backup: target data directory is not empty")
	// ErrBadArchive means the archive is not a hub backup, is damaged, or does not match
	// its manifest.
	ErrBadArchive = errors.New("backup: not a valid hub backup")
)

// Manifest describes an archive.
type Manifest struct {
	Format  int       `json:"format"`
	Created time.Time `json:"created"`
	// Fingerprint is the CA root's, the value agents pin.
	Fingerprint string `json:"fingerprint"`
	// Files maps each entry's name to its size and SHA-256.
	Files map[string]File `json:"files"`
}

// File is one entry in the manifest.
type File struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Snapshotter writes a consistent copy of the live inventory to path
// (inventory.Store.Snapshot).
type Snapshotter func(ctx context.Context, path string) error

// Create writes a backup of dataDir to w, taking the inventory from snapshot while the hub
// may keep running, and returns its manifest. tmpDir receives the snapshot for the time of
// the call.
func Create(ctx context.Context, dataDir string, snapshot Snapshotter, tmpDir string, w io.Writer, now time.Time) (Manifest, error) {
	root, _, err := ca.ReadCertificates(ca.Dir(dataDir))
	if err != nil {
		return Manifest{}, fmt.Errorf("backup: %w", err)
	}
	tmp, err := os.MkdirTemp(tmpDir, "hearth-backup-")
	if err != nil {
		return Manifest{}, fmt.Errorf("backup: %w", err)
	}
	defer os.RemoveAll(tmp)
	snap := filepath.Join(tmp, "hearth.db")
	if err := snapshot(ctx, snap); err != nil {
		return Manifest{}, fmt.Errorf("backup: inventory: %w", err)
	}
	src := func(name string) string {
		if name == "hearth.db" {
			return snap
		}
		return filepath.Join(dataDir, filepath.FromSlash(name))
	}
	m := Manifest{Format: Format, Created: now.UTC().Truncate(time.Second), Fingerprint: protocol.FingerprintOf(root).String(), Files: map[string]File{}}
	var present []string
	for _, e := range entries {
		f, err := hashFile(src(e.name))
		if errors.Is(err, fs.ErrNotExist) && !e.required {
			continue
		}
		if err != nil {
			return Manifest{}, fmt.Errorf("backup: %w", err)
		}
		m.Files[e.name] = f
		present = append(present, e.name)
	}
	tw := tar.NewWriter(w)
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Manifest{}, err
	}
	if err := writeEntry(tw, ManifestName, m.Created, int64(len(mb)), bytes.NewReader(mb)); err != nil {
		return Manifest{}, err
	}
	for _, name := range present {
		f, err := os.Open(src(name))
		if err != nil {
			return Manifest{}, fmt.Errorf("backup: %w", err)
		}
		err = writeEntry(tw, name, m.Created, m.Files[name].Size, f)
		f.Close()
		if err != nil {
			return Manifest{}, err
		}
	}
	if err := tw.Close(); err != nil {
		return Manifest{}, fmt.Errorf("backup: %w", err)
	}
	return m, nil
}

func writeEntry(tw *tar.Writer, name string, mod time.Time, size int64, r io.Reader) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: size, ModTime: mod, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
		return fmt.Errorf("backup: %s: %w", name, err)
	}
	// A file that grew since it was hashed fails here (tar refuses to write past Size), and
	// one that shrank fails at the next header: no entry disagrees with the manifest.
	if _, err := io.CopyN(tw, r, size); err != nil {
		return fmt.Errorf("backup: %s: %w", name, err)
	}
	return nil
}

func hashFile(path string) (File, error) {
	f, err := os.Open(path)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return File{}, fmt.Errorf("read %s: %w", path, err)
	}
	return File{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// Restore unpacks the backup read from r into dataDir, which must not exist or be empty, and
// returns its manifest. check, when not nil, is called on the unpacked directory before it is
// moved into place (the CLI opens the CA with the passphrase there); its error aborts the
// restore. On any error dataDir is left as it was.
func Restore(r io.Reader, dataDir string, check func(dir string) error) (Manifest, error) {
	if err := checkEmpty(dataDir); err != nil {
		return Manifest{}, err
	}
	parent := filepath.Dir(filepath.Clean(dataDir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return Manifest{}, fmt.Errorf("backup: %w", err)
	}
	stage, err := os.MkdirTemp(parent, atomicfile.TempPrefix+"restore-")
	if err != nil {
		return Manifest{}, fmt.Errorf("backup: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			os.RemoveAll(stage)
		}
	}()
	m, err := unpack(r, stage)
	if err != nil {
		return Manifest{}, err
	}
	root, _, err := ca.ReadCertificates(ca.Dir(stage))
	if err != nil {
		return Manifest{}, fmt.Errorf("%w: %w", ErrBadArchive, err)
	}
	if fp := protocol.FingerprintOf(root).String(); fp != m.Fingerprint {
		return Manifest{}, fmt.Errorf("%w: root fingerprint %s, manifest says %s", ErrBadArchive, fp, m.Fingerprint)
	}
	if check != nil {
		if err := check(stage); err != nil {
			return Manifest{}, err
		}
	}
	if err := os.Chmod(stage, 0o700); err != nil {
		return Manifest{}, fmt.Errorf("backup: %w", err)
	}
	for _, d := range []string{ca.Dir(stage), stage} {
		if err := atomicfile.SyncDir(d); err != nil {
			return Manifest{}, fmt.Errorf("backup: %w", err)
		}
	}
	// os.Rename does not replace a directory: remove the empty target (Remove fails on a
	// directory that is not empty, so nothing that appeared since checkEmpty is lost).
	if err := os.Remove(dataDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Manifest{}, fmt.Errorf("backup: %w", err)
	}
	if err := os.Rename(stage, dataDir); err != nil {
		return Manifest{}, fmt.Errorf("backup: move the restored files into %s: %w", dataDir, err)
	}
	committed = true
	if err := atomicfile.SyncDir(parent); err != nil {
		return m, fmt.Errorf("backup: %w", err)
	}
	return m, nil
}

// checkEmpty accepts a missing directory or an empty one.
func checkEmpty(dir string) error {
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if len(des) > 0 {
		return fmt.Errorf("%w: %s holds %s", ErrNotEmpty, dir, des[0].Name())
	}
	return nil
}

// unpack reads the archive into dir, checking every entry against the manifest.
func unpack(r io.Reader, dir string) (Manifest, error) {
	tr := tar.NewReader(r)
	h, err := tr.Next()
	if err != nil {
		return Manifest{}, fmt.Errorf("%w: %v", ErrBadArchive, err)
	}
	if h.Name != ManifestName || h.Typeflag != tar.TypeReg || h.Size > maxManifest {
		return Manifest{}, fmt.Errorf("%w: first entry is %q, want the manifest %s", ErrBadArchive, h.Name, ManifestName)
	}
	var m Manifest
	if err := json.NewDecoder(io.LimitReader(tr, maxManifest)).Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("%w: manifest: %v", ErrBadArchive, err)
	}
	if m.Format != Format {
		return Manifest{}, fmt.Errorf("%w: manifest format %d, this hub reads %d", ErrBadArchive, m.Format, Format)
	}
	seen := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Manifest{}, fmt.Errorf("%w: %v", ErrBadArchive, err)
		}
		i := slices.IndexFunc(entries, func(e entry) bool { return e.name == h.Name })
		if i < 0 || h.Typeflag != tar.TypeReg {
			return Manifest{}, fmt.Errorf("%w: unexpected entry %q", ErrBadArchive, h.Name)
		}
		want, ok := m.Files[h.Name]
		switch {
		case seen[h.Name]:
			return Manifest{}, fmt.Errorf("%w: %s twice", ErrBadArchive, h.Name)
		case !ok:
			return Manifest{}, fmt.Errorf("%w: %s is not in the manifest", ErrBadArchive, h.Name)
		case h.Size != want.Size || h.Size < 0 || h.Size > entries[i].max:
			return Manifest{}, fmt.Errorf("%w: %s is %d bytes, manifest says %d (at most %d)", ErrBadArchive, h.Name, h.Size, want.Size, entries[i].max)
		}
		seen[h.Name] = true
		if err := extract(tr, dir, h.Name, want); err != nil {
			return Manifest{}, err
		}
	}
	for _, e := range entries {
		_, listed := m.Files[e.name]
		if (e.required || listed) && !seen[e.name] {
			return Manifest{}, fmt.Errorf("%w: %s is missing", ErrBadArchive, e.name)
		}
	}
	if len(m.Files) != len(seen) {
		return Manifest{}, fmt.Errorf("%w: the manifest lists %d files, the archive holds %d", ErrBadArchive, len(m.Files), len(seen))
	}
	return m, nil
}

// extract writes one entry (a name from entries, so no path escapes dir) and checks its hash.
func extract(r io.Reader, dir, name string, want File) error {
	path := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, want.Size))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || (err == nil && n != want.Size):
		return fmt.Errorf("%w: %s is cut short (%d of %d bytes)", ErrBadArchive, name, n, want.Size)
	case err != nil:
		return fmt.Errorf("backup: %s: %w", name, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want.SHA256 {
		return fmt.Errorf("%w: %s has SHA-256 %s, manifest says %s", ErrBadArchive, name, got, want.SHA256)
	}
	return nil
}
