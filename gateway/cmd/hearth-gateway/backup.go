package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

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
