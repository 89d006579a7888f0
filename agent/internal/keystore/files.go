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
	"syscall"
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

	tmpSuffix   = ".tmp"
	newTmp      = "new.tmp"
	previousTmp = "previous.tmp"
)

// Modes of the directory and of every file in it.
const (
	dirMode  fs.FileMode = 0o700
	fileMode fs.FileMode = 0o600
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

// writeTemp creates path afresh with mode 0600, writes data and fsyncs it. A leftover file of
// the same name is removed first, so its mode cannot leak into the new one.
func writeTemp(path string, data []byte) (err error) {
	if err := removeIfExists(path); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}

// syncDir fsyncs a directory so that renames in it survive a power loss. Filesystems that
// cannot sync a directory (EINVAL, ENOTSUP) are accepted as they are.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return fmt.Errorf("keystore: sync %s: %w", dir, err)
	}
	return nil
}

// replace renames dir/tmp over dir/name and syncs the directory.
func replace(dir, tmp, name string) error {
	if err := os.Rename(filepath.Join(dir, tmp), filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	// rename(2) does nothing when both names are links to the same file, leaving tmp behind.
	if err := removeIfExists(filepath.Join(dir, tmp)); err != nil {
		return err
	}
	return syncDir(dir)
}

// writeAtomic replaces dir/name with data through dir/name.tmp. If the file already holds
// exactly data it is left alone: the CA and state are re-sent often, and flash wears.
func writeAtomic(dir, name string, data []byte) error {
	if old, err := readFile(filepath.Join(dir, name)); err == nil && bytes.Equal(old, data) {
		return nil
	}
	tmp := name + tmpSuffix
	if err := writeTemp(filepath.Join(dir, tmp), data); err != nil {
		return fmt.Errorf("keystore: write %s: %w", name, err)
	}
	return replace(dir, tmp, name)
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
	if err := writeTemp(tmpPath, data); err != nil {
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
