package keystore

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteCA(t *testing.T) {
	ca := newTestCA(t)
	leaf := newPair(t, ca, 1).Leaf()
	tests := []struct {
		name    string
		chain   []*x509.Certificate
		wantErr bool
	}{
		{name: "root only", chain: []*x509.Certificate{ca.Root}},
		{name: "intermediate and root", chain: []*x509.Certificate{ca.Intermediate, ca.Root}},
		{name: "empty", wantErr: true},
		{name: "leaf", chain: []*x509.Certificate{leaf}, wantErr: true},
		{name: "leaf among CAs", chain: []*x509.Certificate{ca.Intermediate, leaf}, wantErr: true},
		{name: "nil", chain: []*x509.Certificate{nil}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := t.TempDir()
			d := mustOpen(t, path, Options{})
			err := d.WriteCA(tt.chain)
			if (err != nil) != tt.wantErr {
				t.Fatalf("WriteCA(%s) = %v, want error %v", tt.name, err, tt.wantErr)
			}
			got, err := mustOpen(t, path, Options{}).CA()
			if tt.wantErr {
				if !errors.Is(err, ErrNoCA) {
					t.Errorf("CA() after a refused WriteCA = %v, want ErrNoCA", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("CA() = %v", err)
			}
			if len(got) != len(tt.chain) {
				t.Fatalf("CA() = %d certificates, want %d", len(got), len(tt.chain))
			}
			for i := range got {
				if !got[i].Equal(tt.chain[i]) {
					t.Errorf("CA()[%d] = %q, want %q", i, got[i].Subject, tt.chain[i].Subject)
				}
			}
		})
	}
}

func TestWriteCAUnchangedWritesNothing(t *testing.T) {
	ca := newTestCA(t)
	path := t.TempDir()
	d := mustOpen(t, path, Options{})
	if err := d.WriteCA([]*x509.Certificate{ca.Root}); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(filepath.Join(path, caName))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.WriteCA([]*x509.Certificate{ca.Root}); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(filepath.Join(path, caName))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Errorf("WriteCA of the pinned chain replaced ca.pem, want it untouched")
	}
	if err := d.WriteCA([]*x509.Certificate{ca.Intermediate, ca.Root}); err != nil {
		t.Fatal(err)
	}
	if got, err := d.CA(); err != nil || len(got) != 2 {
		t.Errorf("CA() after a new chain = %d certificates, %v; want 2", len(got), err)
	}
}

func TestCACorrupt(t *testing.T) {
	path := t.TempDir()
	d := mustOpen(t, path, Options{})
	if _, err := d.CA(); !errors.Is(err, ErrNoCA) {
		t.Errorf("CA() on an empty directory = %v, want ErrNoCA", err)
	}
	for _, data := range []string{"", "junk", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"} {
		if err := os.WriteFile(filepath.Join(path, caName), []byte(data), fileMode); err != nil {
			t.Fatal(err)
		}
		if got, err := d.CA(); !errors.Is(err, ErrCorrupt) {
			t.Errorf("CA() of %q = %v, %v; want ErrCorrupt", data, got, err)
		}
	}
}
