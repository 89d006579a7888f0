package keystore

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/hearth-pki/hearth/agent/internal/atomicfile"
)

// Options configures a Dir. The zero value is the default.
type Options struct {
	// ExportPEM makes the Dir also keep cert.pem (the chain, leaf first) and key.pem (PKCS #8)
	// for local services that want the device's identity. They are written after each change
	// of generation and refreshed by Open. When false, Open removes any left from before so that
	// no stale copy of a private key lingers.
	ExportPEM bool
}

// Dir is the agent's state directory. Create it with Open.
type Dir struct {
	path string
	opts Options

	mu  sync.Mutex
	cur *Pair // current.pem as last validated, or nil to read it again
}

// Open opens the state directory at path, creating it (mode 0700) if needed and tightening its
// mode to 0700 if it is wider. It removes leftover *.tmp files, restores current.pem from
// previous.pem if current.pem is missing, and refreshes or removes the exports according to
// opts. Open does not fail because the identity is corrupt or absent; Current reports that.
func Open(path string, opts Options) (*Dir, error) {
	if err := os.MkdirAll(path, dirMode); err != nil {
		return nil, fmt.Errorf("keystore: open: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("keystore: open: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("keystore: open: %s is not a directory", path)
	}
	if fi.Mode().Perm() != dirMode {
		if err := os.Chmod(path, dirMode); err != nil {
			return nil, fmt.Errorf("keystore: open: %w", err)
		}
	}
	d := &Dir{path: path, opts: opts}
	removed, err := removeTemps(path)
	if err != nil {
		return nil, fmt.Errorf("keystore: open: %w", err)
	}
	if removed {
		if err := atomicfile.SyncDir(path); err != nil {
			return nil, fmt.Errorf("keystore: open: %w", err)
		}
	}
	if err := d.restoreCurrent(); err != nil {
		return nil, fmt.Errorf("keystore: open: %w", err)
	}
	if err := d.refreshExports(); err != nil {
		return nil, fmt.Errorf("keystore: open: %w", err)
	}
	return d, nil
}

// restoreCurrent recreates a missing current.pem from a valid previous.pem, keeping
// previous.pem.
func (d *Dir) restoreCurrent() error {
	if _, err := os.Lstat(d.file(currentName)); !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if _, err := d.load(previousName); err != nil {
		return nil // nothing usable to restore from; Current says why
	}
	const tmp = currentName + tmpSuffix
	if err := clone(d.path, previousName, tmp); err != nil {
		return err
	}
	return atomicfile.Replace(d.path, tmp, currentName)
}

// Current returns the identity in use.
//
// If current.pem is missing or fails validation but previous.pem is a valid pair, Current
// returns that pair together with a *FallbackError saying what was wrong: the pair is usable,
// and Rollback makes the fallback permanent. With neither file present the error is
// ErrNoIdentity; with neither usable it wraps ErrCorrupt.
func (d *Dir) Current() (Pair, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cur != nil {
		return d.cur.clone(), nil
	}
	p, curErr := d.load(currentName)
	if curErr == nil {
		d.cur = &p
		return p.clone(), nil
	}
	prev, prevErr := d.load(previousName)
	switch {
	case prevErr == nil:
		return prev, &FallbackError{Err: curErr}
	case errors.Is(curErr, ErrNoIdentity):
		return Pair{}, prevErr
	case errors.Is(prevErr, ErrNoIdentity):
		return Pair{}, curErr
	}
	return Pair{}, fmt.Errorf("%w; previous generation: %w", curErr, prevErr)
}

// Previous returns the generation the current one replaced, or ErrNoIdentity if there is none
// (before the second Install, and after a Rollback).
func (d *Dir) Previous() (Pair, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.load(previousName)
}

// Install makes key and chain (leaf first) the current generation and the current one the
// previous generation. It first checks that key matches the leaf (ErrKeyMismatch) and that the
// chain is linked (ErrChain), writing nothing if not. Installing the current generation again
// changes nothing.
//
// If current.pem is corrupt, it is set aside as failed.pem instead of becoming the previous
// generation, so the last good one stays available. An error wrapping ErrExport means the
// identity was installed and only the exports failed.
func (d *Dir) Install(key crypto.Signer, chain []*x509.Certificate) error {
	p := Pair{Key: key, Chain: slices.Clone(chain)}
	if err := p.check(); err != nil {
		return fmt.Errorf("keystore: install: %w", err)
	}
	data, err := encodeBundle(p)
	if err != nil {
		return fmt.Errorf("keystore: install: %w", err)
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	old, oldErr := readFile(d.file(currentName))
	if oldErr == nil && bytes.Equal(old, data) {
		d.cur = &p
		return d.writeExports(p)
	}
	if err := atomicfile.WriteTemp(d.file(newTmp), data); err != nil {
		return fmt.Errorf("keystore: install: write %s: %w", newTmp, err)
	}
	if err := d.install(); err != nil {
		os.Remove(d.file(newTmp))
		return fmt.Errorf("keystore: install: %w", err)
	}
	d.cur = &p
	return d.writeExports(p)
}

// install moves the current generation aside and renames new.tmp to current.pem.
func (d *Dir) install() error {
	d.cur = nil
	_, err := d.load(currentName)
	switch {
	case err == nil:
		if err := clone(d.path, currentName, previousTmp); err != nil {
			return err
		}
		if err := atomicfile.Replace(d.path, previousTmp, previousName); err != nil {
			return err
		}
	case errors.Is(err, ErrNoIdentity):
		// First generation: nothing to keep.
	default:
		if err := d.setAsideFailed(); err != nil {
			return err
		}
	}
	return atomicfile.Replace(d.path, newTmp, currentName)
}

// Rollback makes the previous generation current again, atomically, keeping the generation it
// replaces as failed.pem for diagnosis. Afterwards there is no previous generation. It returns
// an error wrapping ErrNoIdentity if there is no previous generation, or ErrCorrupt if it is
// unusable; current.pem is untouched then. As with Install, an error wrapping ErrExport means
// the rollback itself succeeded.
func (d *Dir) Rollback() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	prev, err := d.load(previousName)
	if err != nil {
		return fmt.Errorf("keystore: rollback: %w", err)
	}
	d.cur = nil
	if _, err := os.Lstat(d.file(currentName)); err == nil {
		if err := d.setAsideFailed(); err != nil {
			return fmt.Errorf("keystore: rollback: %w", err)
		}
	}
	if err := atomicfile.Replace(d.path, previousName, currentName); err != nil {
		return fmt.Errorf("keystore: rollback: %w", err)
	}
	d.cur = &prev
	return d.writeExports(prev)
}

// setAsideFailed keeps a copy of current.pem as failed.pem.
func (d *Dir) setAsideFailed() error {
	const tmp = failedName + tmpSuffix
	if err := clone(d.path, currentName, tmp); err != nil {
		return err
	}
	return atomicfile.Replace(d.path, tmp, failedName)
}

// load reads and validates one generation file: ErrNoIdentity if it does not exist, an error
// wrapping ErrCorrupt if it cannot be used.
func (d *Dir) load(name string) (Pair, error) {
	data, err := readFile(d.file(name))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Pair{}, fmt.Errorf("%w: no %s", ErrNoIdentity, name)
	case err != nil:
		return Pair{}, fmt.Errorf("keystore: read %s: %w", name, err)
	}
	p, err := decodeBundle(data)
	if err != nil {
		return Pair{}, fmt.Errorf("%s: %w", name, err)
	}
	return p, nil
}

// refreshExports brings cert.pem and key.pem in line with current.pem, or removes them when
// exports are off.
func (d *Dir) refreshExports() error {
	if !d.opts.ExportPEM {
		for _, name := range []string{certName, keyName} {
			if err := removeIfExists(d.file(name)); err != nil {
				return err
			}
		}
		return nil
	}
	p, err := d.load(currentName)
	if err != nil {
		return nil // nothing trustworthy to export
	}
	return d.writeExports(p)
}

// writeExports writes cert.pem and key.pem for p if exports are on; each write is atomic and
// skipped when the file already holds the same bytes.
func (d *Dir) writeExports(p Pair) error {
	if !d.opts.ExportPEM {
		return nil
	}
	key, err := encodeKey(p.Key)
	if err == nil {
		err = writeAtomic(d.path, certName, encodeChain(p.Chain))
	}
	if err == nil {
		err = writeAtomic(d.path, keyName, key)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrExport, err)
	}
	return nil
}

// file returns the path of a file of the directory.
func (d *Dir) file(name string) string { return filepath.Join(d.path, name) }

// clone returns a copy of p whose chain slice the caller may modify.
func (p Pair) clone() Pair {
	return Pair{Key: p.Key, Chain: slices.Clone(p.Chain)}
}
