package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
)

// TestMigrateSQLiteToPostgres runs `migrate sqlite-to-postgres` on a single hub's data
// directory: the counts it prints are the target's, the target reads the same devices and
// a verified chain, and a second run into the now full target is refused. So is a run while
// a hub serves the data directory.
func TestMigrateSQLiteToPostgres(t *testing.T) {
	ctx := t.Context()
	data := t.TempDir()
	store, err := inventory.Open(ctx, filepath.Join(data, "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	for _, id := range []string{"plug-1", "plug-2", "cam-1"} {
		if err := store.UpsertDevice(ctx, inventory.Device{ID: id, Mechanism: inventory.MechanismAgent}); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.CreateToken(ctx, inventory.Token{Hash: "h", DeviceID: "cam-2", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	store.Close()
	dsn := testkit.SharedPostgres(t).NewDatabase(t)
	env := func(string) string { return "" }
	migrate := func() (string, error) {
		var out, errb bytes.Buffer
		err := run(ctx, []string{"migrate", "sqlite-to-postgres", "--from", data, "--to", dsn}, nil, &out, &errb, env)
		return out.String() + errb.String(), err
	}
	out, err := migrate()
	if err != nil {
		t.Fatalf("migrate sqlite-to-postgres = %v\n%s", err, out)
	}
	for _, want := range []string{"devices            3 rows", "tokens             1 rows", "events             1 rows", "the audit chain verifies"} {
		if !strings.Contains(out, want) {
			t.Errorf("migrate output lacks %q:\n%s", want, out)
		}
	}
	pg, err := inventory.OpenPostgres(ctx, inventory.PostgresOptions{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	if n, err := pg.CountDevices(ctx); err != nil || n != 3 {
		t.Errorf("devices on the target = %d, %v, want 3", n, err)
	}
	if _, err := migrate(); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("second migrate = %v, want refused: the target is not empty", err)
	}

	// A hub serving the data directory: its control socket answers.
	ln, err := net.Listen("unix", (&config.Config{DataDir: data}).SocketPath())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if _, err := migrate(); err == nil || !strings.Contains(err.Error(), "stop it first") {
		t.Errorf("migrate while a hub runs = %v, want refused", err)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	testkit.StopSharedPostgres()
	os.Exit(code)
}
