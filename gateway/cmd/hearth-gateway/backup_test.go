package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
)

func TestBackupPrepareRestore(t *testing.T) {
	ctx := t.Context()
	data := t.TempDir()
	store, err := inventory.Open(ctx, filepath.Join(data, "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if err := store.CreateToken(ctx, inventory.Token{Hash: "h", DeviceID: "cam", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if err := run(ctx, []string{"backup", "prepare", "--data", data}, nil, &out, &errb, func(string) string { return "" }); err != nil {
		t.Fatalf("backup prepare: %v %s", err, errb.String())
	}
	store.Close()
	snap := config.SnapshotPath(data)
	if _, err := os.Stat(snap); err != nil {
		t.Fatalf("snapshot: %v", err)
	}

	// A restore brings back the snapshot but not the live files.
	for _, f := range []string{"hearth.db", "hearth.db-wal", "hearth.db-shm"} {
		os.Remove(filepath.Join(data, f))
	}
	cfg := config.Config{DataDir: data}
	restored, err := cfg.RestoreSnapshot()
	if err != nil || !restored {
		t.Fatalf("RestoreSnapshot() = %v, %v; want true", restored, err)
	}
	again, err := inventory.Open(ctx, cfg.DatabasePath())
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if toks, err := again.Tokens(ctx); err != nil || len(toks) != 1 {
		t.Errorf("restored tokens = %v, %v; want the one token", toks, err)
	}
	if restored, _ := cfg.RestoreSnapshot(); restored {
		t.Error("RestoreSnapshot() with a live database restored again")
	}
	if err := run(ctx, []string{"backup", "finish", "--data", data}, nil, &out, &errb, func(string) string { return "" }); err != nil {
		t.Errorf("backup finish: %v", err)
	}
}
