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

// runBackup implements the add-on's backup hooks. `backup prepare` writes a consistent
// snapshot of the inventory to DATA/backup/hearth-snapshot.db while the hub keeps running
// (the live database files are excluded from Home Assistant's backup); `backup finish`
// removes it. On restore, the hub starts from the snapshot (config.RestoreSnapshot).
func runBackup(ctx context.Context, args []string, stdout, stderr io.Writer, env func(string) string) error {
	if len(args) == 0 || (args[0] != "prepare" && args[0] != "finish") {
		return fmt.Errorf("backup: want `backup prepare` or `backup finish`")
	}
	fs := flag.NewFlagSet("backup "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "data `directory`")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	dir := config.DataDirFrom(*data, env)
	snap := config.SnapshotPath(dir)
	if args[0] == "finish" {
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
