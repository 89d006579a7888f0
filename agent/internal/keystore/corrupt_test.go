package keystore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// corruptions damage a valid current.pem the ways flash and power loss do.
var corruptions = []struct {
	name   string
	damage func(good, other []byte) []byte
}{
	{"empty", func(good, _ []byte) []byte { return nil }},
	{"truncated to half", func(good, _ []byte) []byte { return good[:len(good)/2] }},
	{"truncated in the key's END line", func(good, _ []byte) []byte { return good[:len(good)-3] }},
	{"truncated after the chain", func(good, _ []byte) []byte { return good[:bytes.Index(good, []byte("-----BEGIN PRIVATE KEY"))] }},
	{"zeroed", func(good, _ []byte) []byte { return make([]byte, len(good)) }},
	{"erased flash", func(good, _ []byte) []byte { return bytes.Repeat([]byte{0xff}, len(good)) }},
	{"bit flip in the key", func(good, _ []byte) []byte {
		b := slices.Clone(good)
		i := bytes.Index(b, []byte("-----BEGIN PRIVATE KEY")) + 60
		b[i] ^= 0x01
		return b
	}},
	{"key of another generation", func(good, other []byte) []byte {
		i, j := bytes.Index(good, []byte("-----BEGIN PRIVATE KEY")), bytes.Index(other, []byte("-----BEGIN PRIVATE KEY"))
		return append(slices.Clone(good[:i]), other[j:]...)
	}},
	{"junk between blocks", func(good, _ []byte) []byte {
		i := bytes.Index(good, []byte("-----BEGIN PRIVATE KEY"))
		return slices.Concat(good[:i], []byte("junk\n"), good[i:])
	}},
}

func TestCorruptCurrentFallsBackToPrevious(t *testing.T) {
	ca := newTestCA(t)
	for _, tt := range corruptions {
		t.Run(tt.name, func(t *testing.T) {
			path := t.TempDir()
			d := mustOpen(t, path, Options{})
			for serial := range int64(2) {
				p := newPair(t, ca, serial+1)
				if err := d.Install(p.Key, p.Chain); err != nil {
					t.Fatal(err)
				}
			}
			cur, err := os.ReadFile(filepath.Join(path, currentName))
			if err != nil {
				t.Fatal(err)
			}
			prev, err := os.ReadFile(filepath.Join(path, previousName))
			if err != nil {
				t.Fatal(err)
			}
			damaged := tt.damage(cur, prev)
			if err := os.WriteFile(filepath.Join(path, currentName), damaged, fileMode); err != nil {
				t.Fatal(err)
			}

			d = mustOpen(t, path, Options{})
			p, err := d.Current()
			var fb *FallbackError
			if !errors.As(err, &fb) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Current() error = %v, want *FallbackError wrapping ErrCorrupt", err)
			}
			if p.Serial() != "1" {
				t.Errorf("Current() serial = %q, want previous %q", p.Serial(), "1")
			}

			// Installing over a corrupt current keeps the good previous generation.
			next := newPair(t, ca, 3)
			if err := d.Install(next.Key, next.Chain); err != nil {
				t.Fatalf("Install() = %v", err)
			}
			checkGeneration(t, "Current()", d.Current, "3", nil)
			checkGeneration(t, "Previous()", d.Previous, "1", nil)
			if got, _ := os.ReadFile(filepath.Join(path, failedName)); !bytes.Equal(got, damaged) {
				t.Errorf("failed.pem = %d bytes, want the %d damaged bytes", len(got), len(damaged))
			}
		})
	}
}

func TestRollbackRepairsCorruptCurrent(t *testing.T) {
	ca := newTestCA(t)
	path := t.TempDir()
	d := mustOpen(t, path, Options{})
	for serial := range int64(2) {
		p := newPair(t, ca, serial+1)
		if err := d.Install(p.Key, p.Chain); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Truncate(filepath.Join(path, currentName), 100); err != nil {
		t.Fatal(err)
	}
	d = mustOpen(t, path, Options{})
	if err := d.Rollback(); err != nil {
		t.Fatalf("Rollback() = %v", err)
	}
	checkGeneration(t, "Current()", d.Current, "1", nil)
	checkGeneration(t, "Previous()", d.Previous, "", nil)
}

func TestBothGenerationsCorrupt(t *testing.T) {
	path := t.TempDir()
	for _, name := range []string{currentName, previousName} {
		if err := os.WriteFile(filepath.Join(path, name), []byte("-----BEGIN CERTIFICATE-----\n"), fileMode); err != nil {
			t.Fatal(err)
		}
	}
	d := mustOpen(t, path, Options{})
	p, err := d.Current()
	var fb *FallbackError
	if !errors.Is(err, ErrCorrupt) || errors.As(err, &fb) {
		t.Errorf("Current() = %v, %v; want ErrCorrupt and no fallback", p, err)
	}
	if err := d.Rollback(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Rollback() = %v, want ErrCorrupt", err)
	}
}
