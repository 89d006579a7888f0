package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/atomicfile"
	backuppkg "github.com/hearth-pki/hearth/gateway/internal/backup"
	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
)

// setupBackup implements the add-on's backup hooks. `backup prepare` writes a consistent
// snapshot of the inventory to DATA/backup/hearth-snapshot.db while the hub keeps running
// (the live database files are excluded from Home Assistant's backup); `backup finish`
// removes it. On restore, the hub starts from the snapshot (config.RestoreSnapshot).
func setupBackup(which string) func(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	return func(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
		data := fs.String("data", "", "data `DIR` ($HEARTH_DATA, else ./hearth-data)")
		return func(ctx context.Context, args []string) error {
			if err := exactArgs("backup "+which, args); err != nil {
				return err
			}
			return backup(ctx, which, config.DataDirFrom(*data, s.env), s.stdout)
		}
	}
}

// backup runs `backup prepare` or `backup finish` on data directory dir.
func backup(ctx context.Context, which, dir string, stdout io.Writer) error {
	snap := config.SnapshotPath(dir)
	if which == "finish" {
		for _, p := range []string{snap, snap + ".tmp"} {
			if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
				return fmt.Errorf("backup finish: %w", err)
			}
		}
		fmt.Fprintln(stdout, "backup snapshot removed")
		return nil
	}
	store, err := inventory.Open(ctx, filepath.Join(dir, "hearth.db"))
	if err != nil {
		return fmt.Errorf("backup prepare: %w", err)
	}
	defer store.Close()
	if err := store.Snapshot(ctx, snap); err != nil {
		return fmt.Errorf("backup prepare: %w", err)
	}
	fmt.Fprintln(stdout, "inventory snapshot written to", snap)
	return nil
}

const backupCreateAbout = `Writes one archive with everything a hub needs to come back on another
disk: the CA certificates and keys (still encrypted with the CA passphrase),
a consistent snapshot of the inventory (taken while the hub keeps running),
the policy file and the CRL. The CA passphrase is never in it: keep a copy of
the passphrase apart from the archive, or the archive cannot be used.`

func setupBackupCreate(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	data := fs.String("data", "", "data `DIR` ($HEARTH_DATA, else ./hearth-data)")
	out := fs.String("out", "", "write the archive to `FILE` (- for stdout); required")
	return func(ctx context.Context, args []string) error {
		if err := exactArgs("backup create", args); err != nil {
			return err
		}
		if *out == "" {
			return &usageError{cmd: "backup create", err: errors.New("--out FILE is required")}
		}
		dir := config.DataDirFrom(*data, s.env)
		store, err := inventory.Open(ctx, filepath.Join(dir, "hearth.db"))
		if err != nil {
			return fmt.Errorf("backup create: %w", err)
		}
		defer store.Close()
		if *out == "-" {
			m, err := backuppkg.Create(ctx, dir, store.Snapshot, dir, s.stdout, time.Now())
			if err != nil {
				return fmt.Errorf("backup create: %w", err)
			}
			fmt.Fprintf(s.stderr, "backup of the hub with CA %s written (%d files)\n", m.Fingerprint, len(m.Files))
			return nil
		}
		m, size, err := writeBackup(*out, func(w io.Writer) (backuppkg.Manifest, error) {
			return backuppkg.Create(ctx, dir, store.Snapshot, dir, w, time.Now())
		})
		if err != nil {
			return fmt.Errorf("backup create: %w", err)
		}
		fmt.Fprintf(s.stdout, "backup written to %s: CA %s, %d files, %d bytes\n", *out, m.Fingerprint, len(m.Files), size)
		fmt.Fprintln(s.stdout, "The CA passphrase is not in the backup: restoring needs it.")
		return nil
	}
}

const backupRestoreAbout = `Unpacks an archive from backup create into an empty data directory (or one
that does not exist yet), checking every file against the archive's manifest.
With the CA passphrase (--passphrase-file or $HEARTH_CA_PASSPHRASE) it also
checks that both CA keys, the root's too, open before anything is moved into
place. Then start the hub on that directory: enrolled devices log in with the
certificates they have, without enrolling again. Devices that renewed after the backup
was taken hold certificates the restored inventory does not know: they are
refused and must enroll again, so take a backup after every campaign.`

func setupBackupRestore(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	data := fs.String("data", "", "empty data `DIR` to restore into ($HEARTH_DATA, else ./hearth-data)")
	from := fs.String("from", "", "read the archive from `FILE` (- for stdin); required")
	passFile := fs.String("passphrase-file", "", "read the CA passphrase from `FILE` to check the keys open")
	return func(ctx context.Context, args []string) error {
		if err := exactArgs("backup restore", args); err != nil {
			return err
		}
		if *from == "" {
			return &usageError{cmd: "backup restore", err: errors.New("--from FILE is required")}
		}
		var r io.Reader = s.stdin
		if *from != "-" {
			f, err := os.Open(*from)
			if err != nil {
				return fmt.Errorf("backup restore: %w", err)
			}
			defer f.Close()
			r = f
		}
		dir := config.DataDirFrom(*data, s.env)
		var pass []byte
		switch env := s.env(ca.PassphraseEnv); {
		case *passFile != "":
			p, _, err := ca.ResolvePassphrase(dir, ca.PassphraseOptions{File: *passFile})
			if err != nil {
				return fmt.Errorf("backup restore: %w", err)
			}
			pass = p
		case env != "":
			pass = []byte(env)
		}
		check := func(dir string) error {
			if pass == nil {
				return nil
			}
			if err := ca.CheckKeys(ca.Dir(dir), pass); err != nil {
				return fmt.Errorf("the CA keys in the backup do not open with this passphrase: %w", err)
			}
			return nil
		}
		m, err := backuppkg.Restore(r, dir, check)
		if err != nil {
			return fmt.Errorf("backup restore: %w", err)
		}
		fmt.Fprintf(s.stdout, "restored the backup of %s into %s: CA %s, %d files\n",
			m.Created.Format(time.RFC3339), dir, m.Fingerprint, len(m.Files))
		if pass == nil {
			fmt.Fprintln(s.stdout, "The CA keys were not checked (no passphrase given); the hub checks them when it starts.")
		}
		return nil
	}
}

// writeBackup streams an archive into path through a temporary file in the same directory,
// synced and renamed into place only when complete: a failed or interrupted backup never
// leaves a truncated archive under the name asked for.
func writeBackup(path string, create func(io.Writer) (backuppkg.Manifest, error)) (backuppkg.Manifest, int64, error) {
	f, err := os.CreateTemp(filepath.Dir(path), atomicfile.TempPrefix+"backup-")
	if err != nil {
		return backuppkg.Manifest{}, 0, err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	m, err := create(f)
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = f.Sync()
	}
	var size int64
	if info, serr := f.Stat(); serr == nil {
		size = info.Size()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = atomicfile.SyncDir(filepath.Dir(path))
	}
	return m, size, err
}
