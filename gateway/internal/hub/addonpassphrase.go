package hub

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hearth-pki/hearth/gateway/internal/atomicfile"
	"github.com/hearth-pki/hearth/gateway/internal/ca"
)

// dropGeneratedPassphrase removes the add-on's generated passphrase file (DATA/ca/passphrase,
// inside every backup of the add-on) once the option ca_passphrase gives the same passphrase
// and it opened the CA: typically `!secret` of Home Assistant's secrets.yaml, which the
// add-on's backups do not hold (addon/DOCS.md, "The CA passphrase"). A file holding another
// passphrase is left alone and reported: it may be the only copy of something.
func (h *Hub) dropGeneratedPassphrase(pass []byte, src ca.PassphraseSource) error {
	if !h.cfg.Addon || src != ca.PassphraseFromEnv {
		return nil
	}
	path := ca.PassphrasePath(h.cfg.DataDir)
	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("read the generated passphrase file: %w", err)
	}
	if !bytes.Equal(bytes.TrimSuffix(old, []byte("\n")), pass) {
		h.log.Warn("the option ca_passphrase differs from the generated passphrase file, which is left in place (and in backups)", "file", path)
		return nil
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove the generated passphrase file: %w", err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(path)); err != nil {
		return err
	}
	h.log.Info("generated passphrase file removed: the option ca_passphrase gives the same passphrase", "file", path)
	return nil
}
