package ca

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// File names inside a CA directory; see the package documentation.
const (
	rootCertFile  = "root.pem"
	interCertFile = "intermediate.pem"
	rootKeyFile   = "root.key"
	interKeyFile  = "intermediate.key"

	// PassphraseFile is the name, inside the CA directory, of the fallback
	// passphrase file that ResolvePassphrase generates when none is given.
	PassphraseFile = "passphrase"

	// tmpPrefix starts the names of temporary files, so Init can remove those a crash
	// left behind.
	tmpPrefix = ".tmp-"
)

// Dir returns the CA directory inside a hub data directory.
func Dir(dataDir string) string { return filepath.Join(dataDir, "ca") }

// ensureDir creates dir (and parents) and makes dir itself 0700.
func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("chmod %s: %w", dir, err)
	}
	return nil
}

// writeFile writes data to dir/name atomically with mode 0600: temporary
// file in dir, fsync, rename. When syncDir is set the directory is synced
// too, making the rename durable before writeFile returns.
func writeFile(dir, name string, data []byte, syncDir bool) (err error) {
	f, err := os.CreateTemp(dir, tmpPrefix+name+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: sync: %w", name, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err = os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if syncDir {
		return syncDirectory(dir)
	}
	return nil
}

// syncDirectory fsyncs a directory so renames in it survive a crash.
func syncDirectory(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// removeTemps deletes temporary files a crashed write left in dir.
func removeTemps(dir string) error {
	matches, err := filepath.Glob(filepath.Join(dir, tmpPrefix+"*"))
	if err != nil {
		return err
	}
	for _, m := range matches {
		if err := os.Remove(m); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove stale %s: %w", m, err)
		}
	}
	return nil
}

// initialized reports whether dir holds a committed CA (its root.pem).
func initialized(dir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dir, rootCertFile))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("stat %s: %w", rootCertFile, err)
	}
}

// readCAFile reads one file of a committed CA; a missing file is corruption.
func readCAFile(dir, name string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s is missing", ErrCorrupt, name)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return b, nil
}
