package ca

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hearth-pki/hearth/gateway/internal/atomicfile"
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
	tmpPrefix = atomicfile.TempPrefix
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

// writeFile writes data to dir/name atomically with mode 0600, and syncs the directory so the
// rename is durable before it returns.
func writeFile(dir, name string, data []byte) error {
	return atomicfile.WriteFile(filepath.Join(dir, name), data, 0o600)
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
