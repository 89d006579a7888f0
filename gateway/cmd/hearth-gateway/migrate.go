package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
)

const migrateAbout = `Copies a single hub's SQLite inventory (DATA_DIR/hearth.db) into an empty
PostgreSQL database, for hub replicas that share it (gateway/README.md, "Replicas
on PostgreSQL"). The copy is one transaction: the target holds all of it or
none of it. Afterwards the rows of every table are counted on both sides and the
audit chain is verified on the target; the command prints the counts.

Stop the hub first (the command refuses while its control socket answers). The
target database must exist and be empty (the schema is created by this command);
a target with rows is refused. The DSN carries no password: give it with
--password-file, PGPASSWORD or ~/.pgpass. The SQLite file is left as it was.`

func setupMigrate(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	from := fs.String("from", "", "the single hub's data `DIR` (holding hearth.db); required")
	to := fs.String("to", "", "the PostgreSQL `DSN` (\"host=db user=hearth dbname=hearth\"); required")
	pwFile := fs.String("password-file", "", "read the PostgreSQL password from `FILE`")
	return func(ctx context.Context, args []string) error {
		const cmd = "migrate sqlite-to-postgres"
		if err := exactArgs(cmd, args); err != nil {
			return err
		}
		if *from == "" || *to == "" {
			return &usageError{cmd: cmd, err: errors.New("--from DIR and --to DSN are required")}
		}
		db := filepath.Join(*from, "hearth.db")
		if _, err := os.Stat(db); err != nil {
			return fmt.Errorf("%s: no inventory in %s: %w", cmd, *from, err)
		}
		sock := (&config.Config{DataDir: *from}).SocketPath()
		if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
			c.Close()
			return fmt.Errorf("%s: a hub is running on %s (its control socket %s answers): stop it first", cmd, *from, sock)
		}
		src, err := inventory.Open(ctx, db)
		if err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
		defer src.Close()
		dst, err := inventory.OpenPostgres(ctx, inventory.PostgresOptions{DSN: *to, PasswordFile: *pwFile})
		if err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
		defer dst.Close()
		rep, err := src.CopyTo(ctx, dst)
		if err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
		for _, t := range inventory.CopyTables() {
			fmt.Fprintf(s.stdout, "%-18s %d rows\n", t, rep.Rows[t])
		}
		fmt.Fprintln(s.stdout, "row counts match, the audit chain verifies on the target")
		return nil
	}
}
