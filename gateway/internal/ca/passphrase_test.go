package ca

import (
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestResolvePassphrase(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(t *testing.T, data string) (file string)
		env      string
		want     string // "" means: the generated or stored fallback
		wantSrc  PassphraseSource
		wantErr  error
		wantFile bool // whether <data>/ca/passphrase exists afterwards
	}{
		{"file with trailing newline", func(t *testing.T, data string) string {
			return writeTemp(t, "from-file\r\n")
		}, "", "from-file", PassphraseFromFile, nil, false},
		{"file beats env", func(t *testing.T, data string) string {
			return writeTemp(t, "from-file")
		}, "from-env", "from-file", PassphraseFromFile, nil, false},
		{"env", func(*testing.T, string) string { return "" }, "from-env", "from-env", PassphraseFromEnv, nil, false},
		{"missing file", func(t *testing.T, data string) string {
			return filepath.Join(data, "nope")
		}, "from-env", "", 0, fs.ErrNotExist, false},
		{"empty file", func(t *testing.T, data string) string {
			return writeTemp(t, "\n")
		}, "", "", 0, ErrNoPassphrase, false},
		{"generated", func(*testing.T, string) string { return "" }, "", "", PassphraseGenerated, nil, true},
		{"existing fallback", func(t *testing.T, data string) string {
			if err := os.MkdirAll(Dir(data), 0o700); err != nil {
				t.Fatal(err)
			}
			write(t, Dir(data), PassphraseFile, []byte("stored\n"))
			return ""
		}, "", "stored", PassphraseFromDataDir, nil, true},
		{"CA exists, no passphrase anywhere", func(t *testing.T, data string) string {
			if _, err := create(Dir(data), testPass, testNow, testIterations); err != nil {
				t.Fatal(err)
			}
			return ""
		}, "", "", 0, ErrNoPassphrase, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			file := tt.setup(t, data)
			got, src, err := ResolvePassphrase(data, file, tt.env)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ResolvePassphrase = %q, %v, %v; want error %v", got, src, err, tt.wantErr)
			}
			_, statErr := os.Stat(PassphrasePath(data))
			if exists := statErr == nil; exists != tt.wantFile {
				t.Errorf("fallback file exists = %v, want %v", exists, tt.wantFile)
			}
			if err != nil {
				return
			}
			if src != tt.wantSrc || src.Fallback() != tt.wantFile {
				t.Errorf("source = %v (fallback %v), want %v", src, src.Fallback(), tt.wantSrc)
			}
			if tt.want != "" && string(got) != tt.want {
				t.Errorf("passphrase = %q, want %q", got, tt.want)
			}
			if src != PassphraseGenerated {
				return
			}
			if raw, err := base64.StdEncoding.DecodeString(string(got)); err != nil || len(raw) != 32 {
				t.Errorf("generated passphrase %q: want base64 of 32 bytes (%v)", got, err)
			}
			info, err := os.Stat(PassphrasePath(data))
			if err != nil || info.Mode().Perm() != 0o600 {
				t.Errorf("generated file: %v, mode %v, want 0600", err, info.Mode().Perm())
			}
			again, src, err := ResolvePassphrase(data, "", "")
			if err != nil || string(again) != string(got) || src != PassphraseFromDataDir {
				t.Errorf("second ResolvePassphrase = %q, %v, %v; want the stored %q", again, src, err, got)
			}
		})
	}
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
