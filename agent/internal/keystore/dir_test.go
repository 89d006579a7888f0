package keystore

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// op is one step of a lifecycle scenario: install a generation with a serial, install the
// current one again, or roll back.
type op struct {
	install   int64 // serial to install; 0 with rollback/reinstall false means nothing
	reinstall bool
	rollback  bool
	wantErr   error
}

func TestLifecycle(t *testing.T) {
	ca := newTestCA(t)
	tests := []struct {
		name                   string
		ops                    []op
		wantCur, wantPrev      string // serials; "" means ErrNoIdentity
		wantFailed             string // serial in failed.pem; "" means absent
		wantCurErr, wantRbErrs error
	}{
		{name: "empty", wantCurErr: ErrNoIdentity},
		{name: "first install", ops: []op{{install: 1}}, wantCur: "1"},
		{name: "second install keeps previous", ops: []op{{install: 1}, {install: 2}}, wantCur: "2", wantPrev: "1"},
		{name: "third install drops oldest", ops: []op{{install: 1}, {install: 2}, {install: 3}}, wantCur: "3", wantPrev: "2"},
		{name: "reinstall same is a no-op", ops: []op{{install: 1}, {install: 2}, {reinstall: true}}, wantCur: "2", wantPrev: "1"},
		{name: "rollback", ops: []op{{install: 1}, {install: 2}, {rollback: true}}, wantCur: "1", wantFailed: "2"},
		{name: "rollback twice", ops: []op{{install: 1}, {install: 2}, {rollback: true}, {rollback: true, wantErr: ErrNoIdentity}}, wantCur: "1", wantFailed: "2"},
		{name: "rollback without previous", ops: []op{{install: 1}, {rollback: true, wantErr: ErrNoIdentity}}, wantCur: "1"},
		{name: "rollback on empty", ops: []op{{rollback: true, wantErr: ErrNoIdentity}}, wantCurErr: ErrNoIdentity},
		{name: "install after rollback", ops: []op{{install: 1}, {install: 2}, {rollback: true}, {install: 3}}, wantCur: "3", wantPrev: "1", wantFailed: "2"},
		{name: "large serial", ops: []op{{install: 0xabcdef}}, wantCur: "abcdef"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := t.TempDir()
			d := mustOpen(t, path, Options{})
			var last Pair
			for i, o := range tt.ops {
				var err error
				switch {
				case o.rollback:
					err = d.Rollback()
				case o.reinstall:
					err = d.Install(last.Key, last.Chain)
				default:
					last = newPair(t, ca, o.install)
					err = d.Install(last.Key, last.Chain)
				}
				if !errors.Is(err, o.wantErr) || (err != nil) != (o.wantErr != nil) {
					t.Fatalf("op %d (%+v) = %v, want %v", i, o, err, o.wantErr)
				}
			}
			// The same state must be seen through this Dir and after a restart.
			for _, d := range []*Dir{d, mustOpen(t, path, Options{})} {
				checkGeneration(t, "Current()", d.Current, tt.wantCur, tt.wantCurErr)
				checkGeneration(t, "Previous()", d.Previous, tt.wantPrev, nil)
			}
			gotFailed := ""
			if data, err := os.ReadFile(filepath.Join(path, failedName)); err == nil {
				p, err := decodeBundle(data)
				if err != nil {
					t.Fatalf("failed.pem does not decode: %v", err)
				}
				gotFailed = p.Serial()
			}
			if gotFailed != tt.wantFailed {
				t.Errorf("failed.pem serial = %q, want %q", gotFailed, tt.wantFailed)
			}
			checkModes(t, path)
		})
	}
}

// checkGeneration asserts that get returns a valid pair with serial want, or an error wrapping
// wantErr (ErrNoIdentity when want is "" and wantErr nil).
func checkGeneration(t *testing.T, name string, get func() (Pair, error), want string, wantErr error) {
	t.Helper()
	if want == "" && wantErr == nil {
		wantErr = ErrNoIdentity
	}
	p, err := get()
	if wantErr != nil {
		if !errors.Is(err, wantErr) {
			t.Errorf("%s = %v, %v; want error %v", name, p, err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("%s error = %v, want serial %s", name, err, want)
	}
	if p.Serial() != want {
		t.Errorf("%s serial = %q, want %q", name, p.Serial(), want)
	}
	if err := p.check(); err != nil {
		t.Errorf("%s returned an invalid pair: %v", name, err)
	}
}

func mustOpen(t *testing.T, path string, opts Options) *Dir {
	t.Helper()
	d, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%q) = %v", path, err)
	}
	return d
}

// checkModes asserts the directory is 0700 and every file in it 0600.
func checkModes(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != dirMode {
		t.Errorf("mode of %s = %v, want %v", path, got, dirMode)
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Mode().Perm(); got != fileMode {
			t.Errorf("mode of %s = %v, want %v", e.Name(), got, fileMode)
		}
	}
}

// snapshot returns every file of the directory with its content.
func snapshot(t *testing.T, path string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(path, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = string(b)
	}
	return m
}

func TestInstallRefusesBadPair(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	good := newPair(t, ca, 1)
	stranger := newPair(t, ca, 2)
	foreign := newPair(t, other, 3)
	tests := []struct {
		name string
		pair Pair
		want error
	}{
		{name: "key of another leaf", pair: Pair{Key: stranger.Key, Chain: good.Chain}, want: ErrKeyMismatch},
		{name: "leaf of another CA", pair: Pair{Key: foreign.Key, Chain: []*x509.Certificate{foreign.Chain[0], ca.Intermediate}}, want: ErrChain},
		{name: "intermediate before leaf", pair: Pair{Key: good.Key, Chain: []*x509.Certificate{ca.Intermediate, good.Chain[0]}}, want: ErrKeyMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := t.TempDir()
			d := mustOpen(t, path, Options{ExportPEM: true})
			installed := newPair(t, ca, 9)
			if err := d.Install(installed.Key, installed.Chain); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, path)
			if err := d.Install(tt.pair.Key, tt.pair.Chain); !errors.Is(err, tt.want) {
				t.Errorf("Install(%v) = %v, want %v", tt.pair, err, tt.want)
			}
			if after := snapshot(t, path); !maps.Equal(before, after) {
				t.Errorf("Install(%v) changed the directory: files %v, want %v", tt.pair, slices.Sorted(maps.Keys(after)), slices.Sorted(maps.Keys(before)))
			}
			checkGeneration(t, "Current()", d.Current, "9", nil)
		})
	}
	t.Run("no chain", func(t *testing.T) {
		d := mustOpen(t, t.TempDir(), Options{})
		if err := d.Install(good.Key, nil); err == nil {
			t.Errorf("Install(key, nil) = nil, want error")
		}
	})
}

func TestOpenRestoresMissingCurrent(t *testing.T) {
	ca := newTestCA(t)
	path := t.TempDir()
	d := mustOpen(t, path, Options{})
	for serial := range int64(2) {
		p := newPair(t, ca, serial+1)
		if err := d.Install(p.Key, p.Chain); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(path, currentName)); err != nil {
		t.Fatal(err)
	}
	d = mustOpen(t, path, Options{})
	checkGeneration(t, "Current()", d.Current, "1", nil)
	checkGeneration(t, "Previous()", d.Previous, "1", nil)
	if _, err := os.Stat(filepath.Join(path, currentName)); err != nil {
		t.Errorf("current.pem not restored: %v", err)
	}
	// current.pem and previous.pem may now share an inode: rotating and rolling back must still
	// leave exactly the expected generations.
	next := newPair(t, ca, 3)
	if err := d.Install(next.Key, next.Chain); err != nil {
		t.Fatal(err)
	}
	if err := d.Rollback(); err != nil {
		t.Fatal(err)
	}
	checkGeneration(t, "Current()", d.Current, "1", nil)
	checkGeneration(t, "Previous()", d.Previous, "", nil)
	checkNoTemps(t, path)
}

func checkNoTemps(t *testing.T, path string) {
	t.Helper()
	if m, _ := filepath.Glob(filepath.Join(path, "*.tmp")); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}
}

func TestOpenCleansTempFiles(t *testing.T) {
	ca := newTestCA(t)
	path := t.TempDir()
	d := mustOpen(t, path, Options{})
	p := newPair(t, ca, 1)
	if err := d.Install(p.Key, p.Chain); err != nil {
		t.Fatal(err)
	}
	leftovers := []string{newTmp, previousTmp, "current.pem.tmp", "failed.pem.tmp", "cert.pem.tmp", "state.json.tmp"}
	for _, name := range leftovers {
		if err := os.WriteFile(filepath.Join(path, name), []byte("half"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	keep := filepath.Join(path, "notes.txt")
	if err := os.WriteFile(keep, []byte("mine"), fileMode); err != nil {
		t.Fatal(err)
	}
	mustOpen(t, path, Options{})
	checkNoTemps(t, path)
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("Open removed a file that is not temporary: %v", err)
	}
}

func TestOpenTightensModes(t *testing.T) {
	parent := t.TempDir()
	path := filepath.Join(parent, "state")
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	ca := newTestCA(t)
	d := mustOpen(t, path, Options{ExportPEM: true})
	for serial := range int64(3) {
		p := newPair(t, ca, serial+1)
		if err := d.Install(p.Key, p.Chain); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteCA([]*x509.Certificate{ca.Intermediate, ca.Root}); err != nil {
		t.Fatal(err)
	}
	if err := d.SaveState(State{LastError: "x"}); err != nil {
		t.Fatal(err)
	}
	want := []string{caName, certName, currentName, failedName, keyName, stateName}
	if got := slices.Sorted(maps.Keys(snapshot(t, path))); !slices.Equal(got, want) {
		t.Errorf("files = %v, want %v", got, want)
	}
	checkModes(t, path)

	nested := filepath.Join(parent, "a", "b")
	mustOpen(t, nested, Options{})
	checkModes(t, nested)
}

func TestExports(t *testing.T) {
	ca := newTestCA(t)
	path := t.TempDir()
	d := mustOpen(t, path, Options{ExportPEM: true})
	for serial := range int64(2) {
		p := newPair(t, ca, serial+1)
		if err := d.Install(p.Key, p.Chain); err != nil {
			t.Fatal(err)
		}
	}
	checkExports(t, path, "2")
	if err := d.Rollback(); err != nil {
		t.Fatal(err)
	}
	checkExports(t, path, "1")

	// A crash between the identity and the exports is repaired by the next Open.
	if err := os.Remove(filepath.Join(path, keyName)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(path, certName), []byte("stale"), fileMode); err != nil {
		t.Fatal(err)
	}
	mustOpen(t, path, Options{ExportPEM: true})
	checkExports(t, path, "1")

	// Turning exports off removes the copies of the key.
	mustOpen(t, path, Options{})
	for _, name := range []string{certName, keyName} {
		if _, err := os.Stat(filepath.Join(path, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after Open without exports: %v, want it removed", name, err)
		}
	}
}

// checkExports loads cert.pem and key.pem the way a local service would.
func checkExports(t *testing.T, path, wantSerial string) {
	t.Helper()
	c, err := tls.LoadX509KeyPair(filepath.Join(path, certName), filepath.Join(path, keyName))
	if err != nil {
		t.Fatalf("tls.LoadX509KeyPair(cert.pem, key.pem) = %v", err)
	}
	if len(c.Certificate) != 2 {
		t.Errorf("cert.pem holds %d certificates, want 2", len(c.Certificate))
	}
	if got := c.Leaf.SerialNumber.Text(16); got != wantSerial {
		t.Errorf("cert.pem serial = %q, want %q", got, wantSerial)
	}
}

func TestCurrentIsCachedButFresh(t *testing.T) {
	ca := newTestCA(t)
	d := mustOpen(t, t.TempDir(), Options{})
	for serial := range int64(3) {
		p := newPair(t, ca, serial+1)
		if err := d.Install(p.Key, p.Chain); err != nil {
			t.Fatal(err)
		}
		checkGeneration(t, "Current()", d.Current, fmt.Sprint(serial+1), nil)
	}
	got, err := d.Current()
	if err != nil {
		t.Fatal(err)
	}
	got.Chain[0] = nil // the caller's copy must not alias the Dir's
	checkGeneration(t, "Current()", d.Current, "3", nil)
}
