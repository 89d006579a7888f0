package inventory

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// Snapshot writes a consistent copy of the database to path while the hub keeps running
// (SQLite's VACUUM INTO reads one snapshot of the WAL database), then checks the copy's
// integrity. The copy appears at path only once complete: it is written beside it and
// renamed. Home Assistant's backups take this copy instead of the live file. On PostgreSQL
// it is an error: the database's own backups (pg_dump, base backups) cover it.
func (s *Store) Snapshot(ctx context.Context, path string) error {
	if s.pg {
		return errSnapshotPostgres
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	tmp := path + ".tmp"
	_ = os.Remove(tmp)
	if err := s.w.WithContext(ctx).Exec("VACUUM INTO ?", tmp).Error; err != nil {
		os.Remove(tmp)
		return fmt.Errorf("snapshot: %w", err)
	}
	if err := checkIntegrity(ctx, tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	f, err := os.OpenFile(tmp, os.O_RDWR, 0)
	if err == nil {
		err = f.Sync()
		f.Close()
	}
	if err == nil {
		err = os.Chmod(tmp, 0o600)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("snapshot: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// checkIntegrity opens the database file at path and runs SQLite's integrity check.
func checkIntegrity(ctx context.Context, path string) error {
	snap, err := Open(ctx, path)
	if err != nil {
		return fmt.Errorf("snapshot check: %w", err)
	}
	defer snap.Close()
	var result string
	if err := snap.read(ctx).Raw("PRAGMA integrity_check").Scan(&result).Error; err != nil {
		return fmt.Errorf("snapshot check: %w", err)
	}
	if result != "ok" {
		return fmt.Errorf("snapshot check: integrity_check says %q", result)
	}
	if err := snap.VerifyAudit(ctx); err != nil {
		return fmt.Errorf("snapshot check: %w", err)
	}
	return nil
}
