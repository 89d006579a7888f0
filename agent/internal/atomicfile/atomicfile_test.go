package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(dir, name string, data []byte) error
	}{
		{"durable", WriteFile},
		{"no sync", WriteFileNoSync},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			// A leftover temporary file of a crashed write, with a wider mode.
			if err := os.WriteFile(filepath.Join(dir, "state.json"+TempSuffix), []byte("junk"), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, data := range []string{"first", "second"} {
				if err := tc.write(dir, "state.json", []byte(data)); err != nil {
					t.Fatalf("write(%q) = %v", data, err)
				}
				got, err := os.ReadFile(filepath.Join(dir, "state.json"))
				if err != nil || string(got) != data {
					t.Fatalf("after write(%q): file holds %q, %v", data, got, err)
				}
			}
			fi, err := os.Stat(filepath.Join(dir, "state.json"))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != Mode {
				t.Errorf("mode = %v, want %v", fi.Mode().Perm(), Mode)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 {
				t.Errorf("directory holds %d entries, want only state.json (no temporary file left)", len(entries))
			}
		})
	}
}

func TestWriteFileMissingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	if err := WriteFile(dir, "ca.pem", []byte("x")); err == nil {
		t.Error("WriteFile into a missing directory = nil error")
	}
}

// TestReplaceSameFile covers rename(2) over a hard link to the same file, which succeeds
// without removing the source name.
func TestReplaceSameFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "current.pem"), []byte("gen 1"), Mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "current.pem"), filepath.Join(dir, "previous.tmp")); err != nil {
		t.Skipf("no hard links here: %v", err)
	}
	if err := Replace(dir, "previous.tmp", "current.pem"); err != nil {
		t.Fatalf("Replace() = %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "previous.tmp")); !os.IsNotExist(err) {
		t.Errorf("previous.tmp still exists after Replace (Lstat = %v)", err)
	}
}

// TestSyncDir pins the policy of the package documentation: a filesystem that cannot fsync
// a directory (procfs answers EINVAL, as some flash and FUSE filesystems do) is accepted;
// other errors are not.
func TestSyncDir(t *testing.T) {
	if err := SyncDir(t.TempDir()); err != nil {
		t.Errorf("SyncDir(temp dir) = %v", err)
	}
	if _, err := os.Stat("/proc/self"); err == nil {
		if err := SyncDir("/proc/self"); err != nil {
			t.Errorf("SyncDir(/proc/self) = %v, want nil: EINVAL means the filesystem cannot sync directories", err)
		}
	}
	if err := SyncDir(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("SyncDir(missing directory) = nil error")
	}
}
