// Package atomicfile replaces files in the agent's state directory so that a kill -9 or a
// power loss leaves either the old content or the new, never a mix: write name.tmp (mode
// 0600), fsync it, rename it over name, fsync the directory. It is the agent's only writer of
// files that must survive a crash (the keystore's generations, ca.pem, state.json,
// config.json); status.json, which only people read, uses the same steps without the fsyncs.
//
// # Directory fsync errors
//
// A device's state directory sits on flash: UBIFS, JFFS2 or F2FS on raw NAND/NOR, ext4 or vfat
// on eMMC, SD cards and USB sticks, sometimes under overlayfs, sometimes on a FUSE or 9p mount.
// SyncDir, and so every durable write, treats the two outcomes differently:
//
//   - EINVAL or ENOTSUP: the filesystem cannot fsync a directory at all (fsync(2) documents
//     EINVAL for "fd is bound to a special file which does not support synchronization").
//     Such a filesystem orders or commits its metadata its own way, and refusing would leave
//     the agent unable ever to install a certificate there. The write succeeds.
//   - Any other error (EIO above all) is returned: the rename may not survive a power loss,
//     and on flash an I/O error usually means a failing medium. The caller must not report
//     the write as durable — the keystore then fails the install and the agent rolls back and
//     retries, rather than committing a certificate whose key may be gone after a reboot — and
//     the error reaches the logs and the hub's health report, the only way anyone learns.
//
// The gateway has its own gateway/internal/atomicfile for the hub's data directory, where no
// such filesystems are expected and every fsync error is fatal.
//
// The functions hold no state and are safe for concurrent use on different names; two writers
// of one name must be serialized by the caller (the agent's directory lock does this).
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// TempSuffix ends the name of every temporary file (name.tmp), so that leftovers of a crash
// can be found and removed when the directory is next opened.
const TempSuffix = ".tmp"

// Mode is the mode of every file written.
const Mode fs.FileMode = 0o600

// WriteFile durably replaces dir/name with data, through dir/name.tmp.
func WriteFile(dir, name string, data []byte) error {
	tmp := name + TempSuffix
	if err := WriteTemp(filepath.Join(dir, tmp), data); err != nil {
		return err
	}
	return Replace(dir, tmp, name)
}

// WriteFileNoSync replaces dir/name with data like WriteFile but without any fsync, sparing
// the flash for files rewritten often and read only by people. A process crash still leaves
// the old file or the new one; a power loss may leave an empty or missing file, which the
// reader must accept.
func WriteFileNoSync(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, name+TempSuffix)
	if err := create(tmp, data, false); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// WriteTemp creates path afresh with mode 0600, writes data and fsyncs it, for a caller that
// renames it into place later with Replace. A leftover file of the same name is removed
// first, so that its mode cannot leak into the new one. On error nothing is left at path.
func WriteTemp(path string, data []byte) error {
	return create(path, data, true)
}

func create(path string, data []byte, sync bool) (err error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, Mode)
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
	if sync {
		return f.Sync()
	}
	return nil
}

// Replace renames dir/tmp over dir/name and fsyncs dir, making the rename durable.
func Replace(dir, tmp, name string) error {
	tmpPath := filepath.Join(dir, tmp)
	if err := os.Rename(tmpPath, filepath.Join(dir, name)); err != nil {
		return err
	}
	// rename(2) does nothing when both names are links to the same file, leaving tmp behind.
	if err := os.Remove(tmpPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory so that the renames and removals in it survive a power loss.
// A filesystem that cannot fsync a directory (EINVAL, ENOTSUP) is accepted as it is; any
// other error is returned (see the package documentation).
func SyncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
