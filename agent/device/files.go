package device

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// readSmall reads a file of at most max bytes; a larger one is an error, so that a damaged
// file cannot make a small board allocate without limit.
func readSmall(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, max)
	}
	return data, nil
}

// writeAtomic replaces dir/name with data: write name.tmp (0600), fsync, rename, fsync the
// directory. A crash leaves the old file or the new one, never a mix; the keystore removes a
// leftover name.tmp when it opens the directory.
func writeAtomic(dir, name string, data []byte) error { return writeFile(dir, name, data, true) }

// writeInformative replaces dir/name with data like writeAtomic but without the fsyncs: for
// status.json, rewritten after every event and read only by people. A process crash still
// leaves the old file or the new one; a power loss may leave an empty one, which ReadStatus
// reports as unknown. Skipping the syncs spares the device's flash.
func writeInformative(dir, name string, data []byte) error { return writeFile(dir, name, data, false) }

func writeFile(dir, name string, data []byte, durable bool) (err error) {
	tmp := filepath.Join(dir, name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if durable {
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if !durable {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write %s: sync directory: %w", name, err)
	}
	return nil
}

// lockName is the lock file that keeps two agent processes (run, renew, enroll) from using
// one state directory at once.
const lockName = "lock"

// lockDir takes an exclusive, non-blocking flock(2) on dir/lock and writes the holder's pid
// into it. The lock is released by the returned func or when the process dies, so a crash
// never leaves the directory locked. It fails with ErrLocked if another holder exists (in this
// process or another).
func lockDir(dir string) (func(), error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("device: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder, _ := os.ReadFile(path)
			return nil, fmt.Errorf("%w: %s (pid %s)", ErrLocked, dir, strings.TrimSpace(string(holder)))
		}
		return nil, fmt.Errorf("device: lock: %w", err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
