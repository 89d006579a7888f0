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
	legacy := func(content string) func(t *testing.T, data, store string) {
		return func(t *testing.T, data, store string) {
			if err := os.MkdirAll(Dir(data), 0o700); err != nil {
				t.Fatal(err)
			}
			write(t, Dir(data), PassphraseFile, []byte(content+"\n"))
		}
	}
	inStore := func(content string) func(t *testing.T, data, store string) {
		return func(t *testing.T, data, store string) {
			if err := writeStore(store, []byte(content)); err != nil {
				t.Fatal(err)
			}
		}
	}
	both := func(a, b func(t *testing.T, data, store string)) func(t *testing.T, data, store string) {
		return func(t *testing.T, data, store string) { a(t, data, store); b(t, data, store) }
	}
	withCA := func(t *testing.T, data, store string) {
		if _, err := create(Dir(data), testPass, testNow, testIterations); err != nil {
			t.Fatal(err)
		}
	}
	none := func(*testing.T, string, string) {}
	tests := []struct {
		name        string
		setup       func(t *testing.T, data, store string)
		file        func(data string) string // "" for none
		env         string
		noStore     bool
		want        string // "" means: a generated one
		wantSrc     PassphraseSource
		wantErr     error
		wantLegacy  bool   // whether <data>/ca/passphrase exists afterwards
		wantInStore string // what the store holds afterwards ("" none, "=" the result)
	}{
		{name: "file with trailing newline", setup: none, file: func(string) string { return writeTemp(t, "from-file\r\n") },
			want: "from-file", wantSrc: PassphraseFromFile},
		{name: "file beats env", setup: none, file: func(string) string { return writeTemp(t, "from-file") }, env: "from-env",
			want: "from-file", wantSrc: PassphraseFromFile},
		{name: "env", setup: none, env: "from-env", want: "from-env", wantSrc: PassphraseFromEnv},
		{name: "missing file", setup: none, file: func(string) string { return filepath.Join(t.TempDir(), "nope") }, env: "from-env",
			wantErr: fs.ErrNotExist},
		{name: "empty file", setup: none, file: func(string) string { return writeTemp(t, "\n") }, wantErr: ErrNoPassphrase},
		{name: "file inside the data directory", setup: legacy("stored"), file: PassphrasePath, wantErr: ErrPassphraseBesideKeys, wantLegacy: true},
		{name: "generated into the store", setup: none, wantSrc: PassphraseGenerated, wantInStore: "="},
		{name: "existing store", setup: inStore("kept"), want: "kept", wantSrc: PassphraseFromStore, wantInStore: "kept"},
		{name: "legacy moved into the store", setup: legacy("stored"), want: "stored", wantSrc: PassphraseMigrated, wantInStore: "stored"},
		{name: "legacy equal to the store", setup: both(legacy("stored"), inStore("stored")), want: "stored", wantSrc: PassphraseMigrated, wantInStore: "stored"},
		{name: "legacy and store disagree", setup: both(legacy("stored"), inStore("other")), want: "stored", wantSrc: PassphraseFromDataDir,
			wantLegacy: true, wantInStore: "other"},
		{name: "legacy without a store", setup: legacy("stored"), noStore: true, want: "stored", wantSrc: PassphraseFromDataDir, wantLegacy: true},
		{name: "CA exists, no passphrase anywhere", setup: withCA, wantErr: ErrNoPassphrase},
		{name: "no CA, no store", setup: none, noStore: true, wantErr: ErrNoPassphrase},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			store := filepath.Join(t.TempDir(), "etc", "hearth", "ca-passphrase")
			tt.setup(t, data, store)
			o := PassphraseOptions{Env: tt.env, Store: store}
			if tt.file != nil {
				o.File = tt.file(data)
			}
			if tt.noStore {
				o.Store = ""
			}
			got, src, err := ResolvePassphrase(data, o)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ResolvePassphrase = %q, %v, %v; want error %v", got, src, err, tt.wantErr)
			}
			if _, statErr := os.Stat(PassphrasePath(data)); (statErr == nil) != tt.wantLegacy {
				t.Errorf("legacy file exists = %v, want %v", statErr == nil, tt.wantLegacy)
			}
			stored, storeErr := readPassphrase(store)
			switch {
			case tt.wantInStore == "" && storeErr == nil:
				t.Errorf("the store holds %q, want no file", stored)
			case tt.wantInStore == "=" && (storeErr != nil || string(stored) != string(got)):
				t.Errorf("the store holds %q (%v), want the passphrase %q", stored, storeErr, got)
			case tt.wantInStore != "" && tt.wantInStore != "=" && string(stored) != tt.wantInStore:
				t.Errorf("the store holds %q (%v), want %q", stored, storeErr, tt.wantInStore)
			}
			if err != nil {
				return
			}
			if src != tt.wantSrc {
				t.Errorf("source = %v, want %v", src, tt.wantSrc)
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
			if info, err := os.Stat(store); err != nil || info.Mode().Perm() != 0o600 {
				t.Errorf("generated file: %v, mode %v, want 0600", err, info.Mode().Perm())
			}
			if info, err := os.Stat(filepath.Dir(store)); err != nil || info.Mode().Perm() != 0o700 {
				t.Errorf("store directory: %v, mode %v, want 0700", err, info.Mode().Perm())
			}
			again, src, err := ResolvePassphrase(data, o)
			if err != nil || string(again) != string(got) || src != PassphraseFromStore {
				t.Errorf("second ResolvePassphrase = %q, %v, %v; want the stored %q", again, src, err, got)
			}
		})
	}
}

// TestResolvePassphraseStoreInsideDataDir: a store in the data directory would put the
// passphrase back beside the keys.
func TestResolvePassphraseStoreInsideDataDir(t *testing.T) {
	data := t.TempDir()
	for _, store := range []string{filepath.Join(data, "pass"), filepath.Join(data, "ca", "x", "..", "pass")} {
		if _, _, err := ResolvePassphrase(data, PassphraseOptions{Store: store}); !errors.Is(err, ErrPassphraseBesideKeys) {
			t.Errorf("ResolvePassphrase(store %s) = %v, want ErrPassphraseBesideKeys", store, err)
		}
	}
	if _, _, err := ResolvePassphrase(data, PassphraseOptions{Store: data + "-elsewhere/pass"}); err != nil {
		t.Errorf("ResolvePassphrase(store beside, not inside, the data directory) = %v", err)
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

// TestResolvePassphraseAddon: the add-on, with no store outside its backup, generates a new
// CA's passphrase into <data>/ca/passphrase and reads it from there afterwards; it still
// never generates one for a CA that exists.
func TestResolvePassphraseAddon(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	o := PassphraseOptions{GenerateBeside: true}
	got, src, err := ResolvePassphrase(data, o)
	if err != nil || src != PassphraseGenerated {
		t.Fatalf("ResolvePassphrase = %q, %v, %v; want a generated passphrase", got, src, err)
	}
	if info, err := os.Stat(PassphrasePath(data)); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("generated file: %v, want %s with mode 0600", err, PassphrasePath(data))
	}
	again, src, err := ResolvePassphrase(data, o)
	if err != nil || string(again) != string(got) || src != PassphraseFromDataDir {
		t.Errorf("second ResolvePassphrase = %q, %v, %v; want the generated %q from the data directory", again, src, err, got)
	}

	withCA := filepath.Join(t.TempDir(), "data")
	if _, err := create(Dir(withCA), testPass, testNow, testIterations); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ResolvePassphrase(withCA, o); !errors.Is(err, ErrNoPassphrase) {
		t.Errorf("ResolvePassphrase for an existing CA without its passphrase = %v, want ErrNoPassphrase", err)
	}
}
