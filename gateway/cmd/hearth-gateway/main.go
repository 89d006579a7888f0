// Command hearth-gateway is the Hearth hub: an MQTT broker, a certificate authority and a
// renewal orchestrator that keep a smart home's device certificates valid. `serve` runs it;
// the other subcommands manage the CA and talk to a running hub through its control socket.
//
// Exit status: 0 success (and --help); 1 failure; 2 usage error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/hearth-pki/hearth/gateway/internal/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(exitStatus(err, os.Stderr))
}

// exitStatus prints err, if any, and returns the process's exit status for it.
func exitStatus(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "hearth-gateway:", err)
	var ue *usageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "Run `%s` for usage.\n", ue.hint())
		return 2
	case errors.Is(err, config.ErrUsage):
		fmt.Fprintln(stderr, "Run `hearth-gateway serve --help` for usage.")
		return 2
	}
	var ec exitCode
	if errors.As(err, &ec) {
		return int(ec)
	}
	return 1
}

// errUsage is matched by every usage error (errors.Is).
var errUsage = errors.New("usage error")

// Is makes errors.Is(err, errUsage) true for a usage error.
func (e *usageError) Is(target error) bool { return target == errUsage }

// exitCode is an error carrying a specific exit status.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// run dispatches a command line. It is main without the process: tests call it.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, env func(string) string) error {
	s := &stdio{stdin: stdin, stdout: stdout, stderr: stderr, env: env}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return usagef("", "no command given")
	}
	switch args[0] {
	case "version", "--version", "-version":
		_, err := fmt.Fprintln(stdout, "hearth-gateway", version)
		return err
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && !isHelpFlag(args[1]) {
			c, _, err := lookup(append(args[1:len(args):len(args)], "--help"))
			if err != nil {
				return err
			}
			return c.help(stdout)
		}
		_, err := fmt.Fprint(stdout, usage())
		return err
	}
	c, rest, err := lookup(args)
	if err != nil {
		return err
	}
	return runCommand(ctx, c, s, rest)
}

// commands is every subcommand, in the order of the overview.
var commands = []command{
	{name: "serve", synopsis: "[--config FILE] [--data DIR] [--listen ADDR] [--hostnames NAMES] [--advertise HOST:PORT] ...",
		group: "Run the hub", summary: "run the hub: broker, CA, renewals, dashboard",
		about: `Settings come from, lowest first: defaults, the YAML file (--config), the add-on
options (--addon), HEARTH_* environment variables, these flags. gateway/README.md
lists them all. On start it prints the address agents dial, the dashboard URL,
the CA fingerprint and the command that enrolls a first device.`,
		examples: []string{
			"hearth-gateway serve",
			"hearth-gateway serve --data /var/lib/hearth --hostnames hub.lan,192.168.1.10",
			"hearth-gateway serve --config /etc/hearth/gateway.yaml",
		},
		raw: func(ctx context.Context, s *stdio, args []string) error {
			return runServe(ctx, args, s.stdout, s.stderr, s.env)
		},
		flags: config.ServeFlags},

	{name: "ca init", synopsis: "[--data DIR] [--passphrase-file FILE] [--kdf-iterations N]", group: "Certificate authority",
		summary: "create the CA without starting the hub", about: caInitAbout, setup: setupCAInit,
		examples: []string{"hearth-gateway ca init --data /var/lib/hearth --passphrase-file /etc/hearth/ca-passphrase"}},
	{name: "ca show", synopsis: "[--data DIR] [--json]", group: "Certificate authority",
		summary: "show the root and intermediate, and the fingerprint agents pin", setup: setupCAShow,
		about:    "Reads the certificates only: no passphrase is needed, and the hub need not run.",
		examples: []string{"hearth-gateway ca show", "hearth-gateway ca show --json | jq -r .fingerprint"}},
	{name: "ca status", synopsis: "[--json]", group: "Certificate authority",
		summary: "ask the running hub for its intermediates and the latest rotation's progress", setup: setupCAStatus,
		about: caStatusAbout, examples: []string{"hearth-gateway ca status", "hearth-gateway ca status --json | jq .rotation.remaining"}},
	{name: "ca rotate-intermediate", synopsis: "[--dry-run] [--rate 100/min] [--canary N] [--abort-after 20%] [--json]", group: "Certificate authority",
		summary: "put a new intermediate in force and move every device onto it", setup: setupCARotate, about: caRotateAbout,
		examples: []string{"hearth-gateway ca rotate-intermediate --dry-run", "hearth-gateway ca rotate-intermediate --rate 30/min"}},
	{name: "ca rotate-root", synopsis: "[--dry-run] [--rate 100/min] [--canary N] [--abort-after 20%] [--json]", group: "Certificate authority",
		summary: "put a new root, cross-signed by the old one, in force and move every device onto it", setup: setupCARotateRoot,
		about: caRotateRootAbout, examples: []string{"hearth-gateway ca rotate-root --dry-run", "hearth-gateway ca rotate-root"}},
	{name: "ca broker-cert", synopsis: "--hosts NAMES [--out DIR] [--data DIR] [--passphrase-file FILE]", group: "Certificate authority",
		summary: "issue an external broker node's MQTT certificate", about: caBrokerCertAbout, setup: setupCABrokerCert,
		examples: []string{"hearth-gateway ca broker-cert --hosts nats-1.lan,10.0.0.11 --out /etc/nats"}},

	{name: "token create", synopsis: "--device ID [--name NAME] [--family F] [--ttl 24h] [--replace] [--json]",
		group: "Devices (talk to the running hub)", summary: "create a one-time enrollment token and print the agent command",
		about: `The token is shown once; the hub keeps only its hash. A device that is already
enrolled needs --replace: whoever enrolls with the new token takes over its name.`,
		setup: setupTokenCreate,
		examples: []string{
			"hearth-gateway token create --device thermostat-hall --name 'Hall thermostat' --family thermostat",
			"hearth-gateway token create --device camera-door --ttl 1h --json | jq -r .command",
			"hearth-gateway token create --device camera-door --replace",
		}},
	{name: "devices", synopsis: "[--json]", group: "Devices (talk to the running hub)",
		summary: "list the devices and their certificates", setup: setupDevices,
		examples: []string{"hearth-gateway devices", "hearth-gateway devices --json | jq -r '.[] | select(.problems) | .id'"}},
	{name: "device show", synopsis: "ID [--json]", group: "Devices (talk to the running hub)",
		summary: "one device: certificates, attempts, events", setup: setupDeviceShow,
		examples: []string{"hearth-gateway device show thermostat-hall", "hearth-gateway device show thermostat-hall --json"}},
	{name: "device import", synopsis: "--device ID [--name N] [--family F] [--json] FILE", group: "Devices (talk to the running hub)",
		summary: "track a device without an agent by its certificate chain (PEM; - reads stdin)", setup: setupManual("device import"),
		examples: []string{"hearth-gateway device import --device porch-cam --name 'Porch camera' porch-cam.pem",
			"cat chain.pem | hearth-gateway device import --device printer -"}},
	{name: "device sign", synopsis: "--device ID [--name N] [--family F] [--out FILE] [--json] FILE", group: "Devices (talk to the running hub)",
		summary: "sign a CSR (PEM; - reads stdin) for a device without an agent", setup: setupManual("device sign"),
		examples: []string{"hearth-gateway device sign --device printer --out printer-chain.pem printer.csr"}},
	{name: "renew", synopsis: "ID | --all | --family F | --class C [--rate 100/min] [--canary 5] [--abort-after 10%] [--rekey] [--json]",
		group: "Devices (talk to the running hub)", summary: "renew a device now, or a campaign of many",
		about: `With an ID: the hub commands the device at once if it is online, else when it
reconnects, and retries until it commits. With --all, --family or --class: a
campaign, canaries first, stopped at the abort threshold; follow it with
` + "`hearth-gateway campaigns`" + `.`,
		setup: setupRenew,
		examples: []string{"hearth-gateway renew thermostat-hall", "hearth-gateway renew --all --rate 100/min --canary 5 --abort-after 10%",
			"hearth-gateway renew --family acme-cam --rekey"}},
	{name: "campaigns", synopsis: "[--json]", group: "Devices (talk to the running hub)",
		summary: "campaigns and their progress", setup: setupCampaigns,
		examples: []string{"hearth-gateway campaigns", "hearth-gateway campaigns --json"}},
	{name: "revoke", synopsis: "ID [--serial SERIAL] [--reason WORD] [--note TEXT] [--json]", group: "Devices (talk to the running hub)",
		summary: "revoke a device (every certificate; quarantined until enrolled again) or one certificate, and drop its sessions",
		setup:   setupRevoke("revoke"),
		examples: []string{"hearth-gateway revoke camera-door --reason keyCompromise --note 'SD card lost'",
			"hearth-gateway revoke camera-door --serial 3f09c2… --reason superseded"}},
	{name: "remove", synopsis: "ID [--reason TEXT] [--json]", group: "Devices (talk to the running hub)",
		summary: "revoke and delete a device (its audit records stay)", setup: setupRevoke("remove"),
		examples: []string{"hearth-gateway remove camera-door"}},
	{name: "events", synopsis: "[--device ID] [--limit N] [--json]", group: "Devices (talk to the running hub)",
		summary: "the newest audit events", setup: setupEvents,
		examples: []string{"hearth-gateway events --limit 20", "hearth-gateway events --device thermostat-hall --json"}},
	{name: "audit verify", synopsis: "[--json]", group: "Devices (talk to the running hub)",
		summary: "check the audit log's hash chain", setup: setupAuditVerify,
		examples: []string{"hearth-gateway audit verify"}},

	{name: "policy check", synopsis: "FILE", group: "Policy", summary: "validate a policy file without applying it",
		setup: setupPolicyCheck, examples: []string{"hearth-gateway policy check hearth-data/policy.yaml"}},
	{name: "policy reload", synopsis: "[--data DIR] [--json]", group: "Policy",
		summary: "apply the policy file to the running hub (recorded with its diff)", setup: setupPolicyReload,
		examples: []string{"hearth-gateway policy reload"}},

	{name: "policy diff", synopsis: "FILE|CHANGE [--canary CLASS] [--json]", group: "Policy",
		summary: "show what a policy file or a proposed change does: settings, and devices that move",
		about:   "Lists the settings that change and the devices whose class changes, before anyone approves.",
		setup:   setupPolicyDiff, examples: []string{"hearth-gateway policy diff new-policy.yaml", "hearth-gateway policy diff chg-5f2a9c01d3e4"}},
	{name: "policy propose", synopsis: "FILE [--canary CLASS] [--json]", group: "Policy",
		summary: "propose a policy change for a second admin to approve (change approve)",
		about: "With --canary only that class's settings are taken from FILE, to try the change on it first.\n" +
			"With change_approval on, this is the only way to change the policy.",
		setup: setupPolicyPropose, examples: []string{"hearth-gateway policy propose new-policy.yaml --canary camera"}},
	{name: "change list", synopsis: "[--json]", group: "Policy",
		summary: "list proposed changes: open ones, then the last decided", setup: setupChangeList,
		examples: []string{"hearth-gateway change list"}},
	{name: "change approve", synopsis: "ID [--json]", group: "Policy",
		summary: "approve and apply a proposed change (with change_approval on, not your own)", setup: setupChangeDecide("approve"),
		examples: []string{"hearth-gateway change approve chg-5f2a9c01d3e4"}},
	{name: "change reject", synopsis: "ID [--json]", group: "Policy",
		summary: "reject (or withdraw) a proposed change", setup: setupChangeDecide("reject"),
		examples: []string{"hearth-gateway change reject chg-5f2a9c01d3e4"}},

	{name: "user add", synopsis: "NAME [--role viewer|operator|admin] [--json] < PASSWORD", group: "Users",
		summary: "add a user of the dashboard and the hub's broker; the password is read from stdin", setup: setupUserAdd,
		examples: []string{"printf '%s' 'correct horse' | hearth-gateway user add alice --role operator"}},
	{name: "user remove", synopsis: "NAME [--json]", group: "Users",
		summary: "remove a user and end their dashboard sessions", setup: setupUserRemove,
		examples: []string{"hearth-gateway user remove alice"}},
	{name: "user list", synopsis: "[--json]", group: "Users",
		summary: "list users and their roles", setup: setupUserList, examples: []string{"hearth-gateway user list"}},
	{name: "user set-role", synopsis: "NAME viewer|operator|admin [--json]", group: "Users",
		summary: "change a user's role (recorded in the audit log)", setup: setupUserSetRole,
		examples: []string{"hearth-gateway user set-role alice admin"}},

	{name: "incident device-lost", synopsis: "ID [--dry-run] [--json]", group: "Incidents",
		summary: "a device was lost or stolen: revoke it (keyCompromise) and quarantine it",
		about:   incidentDeviceLostAbout, setup: setupIncidentDeviceLost,
		examples: []string{"hearth-gateway incident device-lost porch-camera --dry-run", "hearth-gateway incident device-lost porch-camera"}},
	{name: "incident family-compromised", synopsis: "--family F [--dry-run] [--json]", group: "Incidents",
		summary: "a family's keys may have leaked: re-key it, revoking each old certificate at commit",
		about:   incidentFamilyAbout, setup: setupIncidentFamily,
		examples: []string{"hearth-gateway incident family-compromised --family acme-cam --dry-run"}},
	{name: "incident intermediate-compromised", synopsis: "[--dry-run] [--json]", group: "Incidents",
		summary: "the intermediate's key may have leaked: rotate it, then revoke the old one once devices moved",
		about:   incidentIntermediateAbout, setup: setupIncidentIntermediate,
		examples: []string{"hearth-gateway incident intermediate-compromised --dry-run", "hearth-gateway incident intermediate-compromised"}},

	{name: "backup prepare", synopsis: "[--data DIR]", group: "Maintenance",
		summary: "write a consistent inventory snapshot for a backup (add-on hook)", setup: setupBackup("prepare"),
		examples: []string{"hearth-gateway backup prepare --data /data"}},
	{name: "backup finish", synopsis: "[--data DIR]", group: "Maintenance",
		summary: "remove the snapshot after the backup", setup: setupBackup("finish"),
		examples: []string{"hearth-gateway backup finish --data /data"}},
	{name: "backup create", synopsis: "--out FILE|- [--data DIR]", group: "Maintenance",
		summary: "write the CA (keys encrypted), an inventory snapshot and the policy into one archive",
		about:   backupCreateAbout, setup: setupBackupCreate,
		examples: []string{"hearth-gateway backup create --out /mnt/usb/hearth-$(date +%F).tar"}},
	{name: "backup restore", synopsis: "--from FILE|- [--data DIR] [--passphrase-file FILE]", group: "Maintenance",
		summary: "unpack a backup into an empty data directory, checked file by file",
		about:   backupRestoreAbout, setup: setupBackupRestore,
		examples: []string{"HEARTH_CA_PASSPHRASE=… hearth-gateway backup restore --from hearth-2026-12-03.tar --data /var/lib/hearth"}},
	{name: "migrate sqlite-to-postgres", synopsis: "--from DATA_DIR --to DSN [--password-file FILE]", group: "Maintenance",
		summary: "copy a single hub's inventory into an empty PostgreSQL database (replicas)",
		about:   migrateAbout, setup: setupMigrate,
		examples: []string{"PGPASSWORD=… hearth-gateway migrate sqlite-to-postgres --from /var/lib/hearth --to 'host=db.lan user=hearth dbname=hearth sslmode=verify-full'"}},
	{name: "admin hash", synopsis: "< PASSWORD", group: "Maintenance",
		summary: "read a password on stdin, print its hash for the config file's admins", setup: setupAdminHash,
		examples: []string{"printf '%s' 'correct horse' | hearth-gateway admin hash"}},
}
