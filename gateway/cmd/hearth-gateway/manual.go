package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/atomicfile"
	"github.com/hearth-pki/hearth/gateway/internal/control"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/protocol"
)

// maxManualFile bounds the certificate or CSR file `device import` and `device sign` read.
const maxManualFile = 64 << 10

// manualArgs is one `device import` or `device sign` command line.
type manualArgs struct {
	cmd    string // "device import" or "device sign"
	device string
	name   string
	family string
	file   string // "-" reads standard input
	out    string // device sign: where the chain goes; "" prints it
	asJSON bool
}

// runManual implements `device import --device ID [--name N] [--family F] FILE` and
// `device sign --device ID [--name N] FILE [--out FILE]`. args are the positional words of
// the command line: the FILE and anything after "--" (flags given there are parsed here), with
// --out prepended by setupManual. FILE "-" is standard input.
func runManual(ctx context.Context, client *control.Client, name, device, devName, family string, args []string, asJSON bool, stdout io.Writer) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	out := fs.String("out", "", "write the signed chain to `FILE` (device sign)")
	// Flags after "--" on the command line arrive here, positional.
	dev, nm, fam := fs.String("device", device, ""), fs.String("name", devName, ""), fs.String("family", family, "")
	js := fs.Bool("json", asJSON, "")
	if err := fs.Parse(manualInterleave(args)); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%s: give one FILE (- for standard input), got %d", name, fs.NArg())
	}
	return manual(ctx, client, manualArgs{cmd: name, device: *dev, name: *nm, family: *fam, file: fs.Arg(0),
		out: *out, asJSON: *js}, os.Stdin, stdout)
}

// manualInterleave puts flags before the positional words, like interleave, but keeps a lone
// "-" (standard input) positional.
func manualInterleave(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "-" || !strings.HasPrefix(a, "-") {
			pos = append(pos, a)
			continue
		}
		if a == "--" {
			continue
		}
		flags = append(flags, a)
		if !strings.Contains(a, "=") && !isBoolFlag(a) && i+1 < len(args) {
			flags = append(flags, args[i+1])
			i++
		}
	}
	return append(flags, pos...)
}

func isBoolFlag(a string) bool {
	a = strings.TrimLeft(a, "-")
	return a == "json" || a == "h" || a == "help"
}

// manual runs one parsed command against the hub.
func manual(ctx context.Context, client *control.Client, a manualArgs, stdin io.Reader, stdout io.Writer) error {
	if a.device == "" {
		return fmt.Errorf("%s: --device is required", a.cmd)
	}
	if a.out != "" && a.cmd != "device sign" {
		return fmt.Errorf("%s: --out is for device sign", a.cmd)
	}
	if a.out != "" {
		// Fail before the hub signs anything, not after.
		if fi, err := os.Stat(filepath.Dir(a.out)); err != nil || !fi.IsDir() {
			return fmt.Errorf("%s: --out %s: its directory does not exist", a.cmd, a.out)
		}
	}
	text, err := readManualFile(a.file, stdin)
	if err != nil {
		return fmt.Errorf("%s: %w", a.cmd, err)
	}
	dev := protocol.ManualDevice{ID: a.device, Name: a.name, Family: a.family}
	var raw json.RawMessage
	if a.cmd == "device import" {
		raw, err = client.Do(ctx, "device/import", protocol.ImportRequest{ManualDevice: dev, PEM: text})
	} else {
		raw, err = client.Do(ctx, "device/sign", protocol.SignRequest{ManualDevice: dev, CSR: text})
	}
	if err != nil {
		return fmt.Errorf("%s: %w", a.cmd, err)
	}
	if a.cmd == "device import" {
		var r protocol.DeviceImported
		if err := json.Unmarshal(raw, &r); err != nil {
			return fmt.Errorf("%s: bad answer: %w", a.cmd, err)
		}
		if a.asJSON {
			return writeJSON(stdout, r)
		}
		return printImported(stdout, r, time.Now())
	}
	var r protocol.DeviceSigned
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("%s: bad answer: %w", a.cmd, err)
	}
	if a.out != "" {
		if err := atomicfile.WriteFile(a.out, []byte(r.Chain), 0o644); err != nil {
			// The hub has recorded the certificate as active: do not lose it.
			fmt.Fprint(stdout, r.Chain)
			return fmt.Errorf("%s: certificate %s is signed and active, chain printed above; %w", a.cmd, r.Serial, err)
		}
	}
	if a.asJSON {
		return writeJSON(stdout, r)
	}
	return printSigned(stdout, r, a.out, time.Now())
}

// readManualFile reads a certificate or CSR file ("-": stdin) of at most maxManualFile bytes.
// A file holding a private key is refused before anything is sent: the hub never needs one.
func readManualFile(path string, stdin io.Reader) (string, error) {
	var r io.Reader = stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return "", err
		}
		defer f.Close()
		r = f
	} else if stdin == nil {
		return "", errors.New("no standard input to read")
	}
	data, err := io.ReadAll(io.LimitReader(r, maxManualFile+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	switch {
	case len(data) > maxManualFile:
		return "", fmt.Errorf("%s is over %d KiB: a certificate chain or CSR is a few KiB", path, maxManualFile>>10)
	case len(bytes.TrimSpace(data)) == 0:
		return "", fmt.Errorf("%s is empty", path)
	}
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if strings.Contains(b.Type, "PRIVATE KEY") {
			return "", fmt.Errorf("%s holds a private key: give a file with only the certificates or the CSR; the key stays on the device", path)
		}
	}
	return string(data), nil
}

func printImported(w io.Writer, r protocol.DeviceImported, now time.Time) error {
	what := "imported"
	if r.AlreadyImported {
		what = "already imported"
	}
	_, err := fmt.Fprintf(w, "%s certificate %s of %s (issuer %s), expires %s (in %s); %s%s\n", what, r.Serial, r.ID, r.Issuer,
		r.NotAfter.Local().Format(time.DateTime), humanDuration(r.NotAfter.Sub(now)), r.Status, supersededNote(r.Superseded))
	if err == nil && r.Status == string(inventory.StatusActive) && !r.AlreadyImported {
		_, err = fmt.Fprintln(w, "no agent renews it: the hub sends reminders before it expires")
	}
	return err
}

func printSigned(w io.Writer, r protocol.DeviceSigned, out string, now time.Time) error {
	where := "written to " + out
	if out == "" {
		where = "follows"
	}
	_, err := fmt.Fprintf(w, "signed certificate %s of %s (class %s), expires %s (in %s); active%s; chain (leaf + intermediate) %s\n",
		r.Serial, r.ID, r.Class, r.NotAfter.Local().Format(time.DateTime), humanDuration(r.NotAfter.Sub(now)),
		supersededNote(r.Superseded), where)
	if err == nil && out == "" {
		_, err = fmt.Fprint(w, r.Chain)
	}
	return err
}

func supersededNote(prev string) string {
	if prev == "" {
		return ""
	}
	return ", " + prev + " superseded"
}
