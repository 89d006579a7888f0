package ca

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// PassphraseEnv is the environment variable holding the CA passphrase.
const PassphraseEnv = "HEARTH_CA_PASSPHRASE"

// maxPassphraseFile bounds what is read from a passphrase file.
const maxPassphraseFile = 4096

// PassphraseSource says where ResolvePassphrase found the passphrase.
type PassphraseSource int

// Passphrase sources, from the most to the least explicit.
const (
	// PassphraseFromFile is a file the operator named.
	PassphraseFromFile PassphraseSource = iota + 1
	// PassphraseFromEnv is the HEARTH_CA_PASSPHRASE variable.
	PassphraseFromEnv
	// PassphraseFromDataDir is the existing fallback file <data>/ca/passphrase.
	PassphraseFromDataDir
	// PassphraseGenerated is the fallback file, created by this call.
	PassphraseGenerated
)

// String names the source for logs and CLI output.
func (s PassphraseSource) String() string {
	switch s {
	case PassphraseFromFile:
		return "passphrase file"
	case PassphraseFromEnv:
		return PassphraseEnv
	case PassphraseFromDataDir:
		return "fallback file in the data directory"
	case PassphraseGenerated:
		return "fallback file in the data directory, generated now"
	default:
		return fmt.Sprintf("PassphraseSource(%d)", int(s))
	}
}

// Fallback reports whether the passphrase is stored beside the keys it
// protects, which defeats encryption at rest for anyone holding a copy of
// the data directory.
func (s PassphraseSource) Fallback() bool {
	return s == PassphraseFromDataDir || s == PassphraseGenerated
}

// PassphrasePath returns the fallback passphrase file of a data directory,
// <data>/ca/passphrase.
func PassphrasePath(dataDir string) string {
	return filepath.Join(Dir(dataDir), PassphraseFile)
}

// ResolvePassphrase returns the CA passphrase for the hub data directory
// dataDir. In order: the contents of file if file is not empty (one
// trailing newline removed), env (the HEARTH_CA_PASSPHRASE value) if not
// empty, the fallback file <data>/ca/passphrase if it exists, or else a new
// fallback file of 32 random bytes in base64, mode 0600. It never generates
// a passphrase for a CA that already exists: that fails with
// ErrNoPassphrase. See the package documentation for what the fallback
// does and does not protect.
func ResolvePassphrase(dataDir, file, env string) ([]byte, PassphraseSource, error) {
	if file != "" {
		p, err := readPassphrase(file)
		return p, PassphraseFromFile, err
	}
	if env != "" {
		return []byte(env), PassphraseFromEnv, nil
	}
	path := PassphrasePath(dataDir)
	p, err := readPassphrase(path)
	if err == nil {
		return p, PassphraseFromDataDir, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, 0, err
	}
	dir := Dir(dataDir)
	exists, err := initialized(dir)
	if err != nil {
		return nil, 0, err
	}
	if exists {
		return nil, 0, fmt.Errorf("%w: the CA in %s exists but neither %s, a passphrase file nor %s is given",
			ErrNoPassphrase, dir, PassphraseEnv, path)
	}
	if err := ensureDir(dir); err != nil {
		return nil, 0, err
	}
	p = []byte(base64.StdEncoding.EncodeToString(randomBytes(32)))
	if err := writeFile(dir, PassphraseFile, append(bytes.Clone(p), '\n')); err != nil {
		return nil, 0, fmt.Errorf("generate passphrase: %w", err)
	}
	return p, PassphraseGenerated, nil
}

// readPassphrase reads a passphrase file, dropping one trailing newline.
func readPassphrase(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("passphrase: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPassphraseFile+1))
	if err != nil {
		return nil, fmt.Errorf("passphrase: read %s: %w", path, err)
	}
	if len(b) > maxPassphraseFile {
		return nil, fmt.Errorf("passphrase: %s is larger than %d bytes", path, maxPassphraseFile)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: %s is empty", ErrNoPassphrase, path)
	}
	return b, nil
}
