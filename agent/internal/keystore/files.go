package keystore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/hearth-pki/hearth/agent/internal/atomicfile"
)

// File names inside the state directory.
const (
	currentName  = "current.pem"
	previousName = "previous.pem"
	failedName   = "failed.pem"
	caName       = "ca.pem"
	stateName    = "state.json"
	certName     = "cert.pem"
	keyName      = "key.pem"

	tmpSuffix   = atomicfile.TempSuffix
	newTmp      = "new.tmp"
	previousTmp = "previous.tmp"
)

// Modes of the directory and of every file in it.
const (
	dirMode  fs.FileMode = 0o700
	fileMode fs.FileMode = atomicfile.Mode
)

// maxFileSize bounds every file this package reads: a chain and a key are a few KiB, and a
// damaged file must not make a small board allocate without limit.
const maxFileSize = 256 << 10

// readFile reads a file of the directory, refusing one larger than maxFileSize (ErrCorrupt).
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrCorrupt, filepath.Base(path), maxFileSize)
	}
	return data, nil
}

// writeAtomic replaces dir/name with data through dir/name.tmp. If the file already holds
// exactly data it is left alone: the CA and state are re-sent often, and flash wears.
func writeAtomic(dir, name string, data []byte) error {
	if old, err := readFile(filepath.Join(dir, name)); err == nil && bytes.Equal(old, data) {
		return nil
	}
	if err := atomicfile.WriteFile(dir, name, data); err != nil {
		return fmt.Errorf("keystore: write %s: %w", name, err)
	}
	return nil
}

// clone makes dir/tmp a durable copy of dir/src: a hard link when the filesystem has them (no
// data is rewritten, sparing the flash; src was fsynced when written), else a copy, fsynced.
func clone(dir, src, tmp string) error {
	srcPath, tmpPath := filepath.Join(dir, src), filepath.Join(dir, tmp)
	if err := removeIfExists(tmpPath); err != nil {
		return err
	}
	if os.Link(srcPath, tmpPath) == nil {
		return nil
	}
	data, err := readFile(srcPath)
	if err != nil {
		return fmt.Errorf("keystore: copy %s: %w", src, err)
	}
	if err := atomicfile.WriteTemp(tmpPath, data); err != nil {
		return fmt.Errorf("keystore: copy %s: %w", src, err)
	}
	return nil
}

// removeIfExists removes path; a missing file is not an error.
func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("keystore: %w", err)
	}
	return nil
}

// removeTemps removes every *.tmp file in dir, left by a write that was interrupted, and
// reports whether it removed any.
func removeTemps(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("keystore: %w", err)
	}
	removed := false
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), tmpSuffix) {
			if err := removeIfExists(filepath.Join(dir, e.Name())); err != nil {
				return removed, err
			}
			removed = true
		}
	}
	return removed, nil
}
