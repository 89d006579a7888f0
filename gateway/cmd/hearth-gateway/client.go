package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/gateway/internal/control"
	"github.com/hearth-pki/hearth/gateway/internal/secret"
	"github.com/hearth-pki/hearth/protocol"
)

// runClient runs a command against the running hub's control socket.
func runClient(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer, env func(string) string) error {
	name := cmd
	if (cmd == "token" || cmd == "device" || cmd == "audit") && len(args) > 0 {
		name, args = cmd+" "+args[0], args[1:]
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "data `directory` of the running hub")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	device := fs.String("device", "", "device `id`")
	ttl := fs.String("ttl", "", "token lifetime, e.g. 24h")
	devName := fs.String("name", "", "device name")
	family := fs.String("family", "", "device family (token create), or the family a renew campaign selects")
	reason := fs.String("reason", "", "why, for the audit log")
	limit := fs.Int("limit", 50, "at most this many events")
	camp := campaignFlags(fs, family)
	outFile := fs.String("out", "", "device sign: write the chain to this `file`")
	if err := fs.Parse(interleave(args)); err != nil {
		return err
	}
	client := control.NewClient(config.DataDirFrom(*data, env) + "/hearth.sock")
	id := func() (string, error) {
		if *device != "" {
			return *device, nil
		}
		if fs.NArg() == 1 {
			return fs.Arg(0), nil
		}
		return "", fmt.Errorf("%s: give one device id", name)
	}
	var (
		raw json.RawMessage
		err error
	)
	switch name {
	case "token create":
		if *device == "" {
			return fmt.Errorf("token create: --device is required")
		}
		raw, err = client.Do(ctx, "token/create", protocol.TokenRequest{ID: *device, Name: *devName, Family: *family, TTL: *ttl})
		if err == nil && !*asJSON {
			var t protocol.TokenCreated
			if err := json.Unmarshal(raw, &t); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Enrollment token for %s (single use, expires %s):\n  %s\n\nOn the device, run:\n  %s\n",
				t.ID, t.ExpiresAt.Local().Format(time.RFC1123), t.Token, t.Command)
			return nil
		}
	case "devices":
		var list []protocol.DeviceSummary
		if list, err = listDevices(ctx, client); err == nil {
			if !*asJSON {
				return printDevices(stdout, list, time.Now())
			}
			raw, err = json.Marshal(list)
		}
	case "device import", "device sign":
		args := fs.Args()
		if *outFile != "" {
			args = append([]string{"--out=" + *outFile}, args...)
		}
		return runManual(ctx, client, name, *device, *devName, *family, args, *asJSON, stdout)
	case "device show":
		var d string
		if d, err = id(); err != nil {
			return err
		}
		raw, err = client.Do(ctx, "device/get", protocol.DeviceRequest{ID: d})
		if err == nil && !*asJSON {
			var det protocol.DeviceDetail
			if err := json.Unmarshal(raw, &det); err != nil {
				return err
			}
			return printDetail(stdout, det, time.Now())
		}
	case "renew", "revoke", "remove":
		if name == "renew" && camp.selected() {
			c, err := camp.campaign()
			if err != nil {
				return err
			}
			raw, err = client.Do(ctx, "campaign/start", c)
			if err == nil && !*asJSON {
				var st protocol.CampaignStatus
				_ = json.Unmarshal(raw, &st)
				fmt.Fprintf(stdout, "campaign %s started: %d device(s), %d canary first; follow it with `hearth-gateway campaigns`\n", st.ID, st.Total, st.Canary)
				return nil
			}
			break
		}
		var d string
		if d, err = id(); err != nil {
			return err
		}
		op := map[string]string{"renew": "device/renew", "revoke": "device/revoke", "remove": "device/remove"}[name]
		raw, err = client.Do(ctx, op, protocol.DeviceRequest{ID: d, Reason: *reason})
		if err == nil && !*asJSON {
			switch name {
			case "renew":
				var r protocol.DeviceRenewed
				_ = json.Unmarshal(raw, &r)
				if r.Queued {
					fmt.Fprintf(stdout, "renewal of %s queued: the hub commands it now if it is online, else when it reconnects, and retries until it commits\n", r.ID)
				} else {
					fmt.Fprintf(stdout, "renew command %s sent to %s (the agent has until %s)\n", r.CommandID, r.ID, r.Deadline.Local().Format(time.Kitchen))
				}
			default:
				var r protocol.DeviceRevoked
				_ = json.Unmarshal(raw, &r)
				fmt.Fprintf(stdout, "%s: %d certificate(s) revoked, %d session(s) dropped%s\n", r.ID, r.Revoked, r.Disconnected,
					map[bool]string{true: ", removed from the inventory"}[r.Removed])
			}
			return nil
		}
	case "campaigns":
		raw, err = client.Do(ctx, "campaign/list", struct{}{})
		if err == nil && !*asJSON {
			var list []protocol.CampaignStatus
			if err := json.Unmarshal(raw, &list); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "CAMPAIGN\tSTATE\tSTARTED\tTOTAL\tCOMMITTED\tFAILED\tIN FLIGHT\tPENDING\tCAUSE")
			for _, c := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", c.ID, c.State, c.Started.Local().Format(time.DateTime),
					c.Total, c.Committed, c.Failed, c.InFlight, c.Pending, orDash(c.Cause))
			}
			return tw.Flush()
		}
	case "events":
		raw, err = client.Do(ctx, "events", protocol.EventsRequest{ID: *device, Limit: *limit})
		if err == nil && !*asJSON {
			var evs []protocol.AuditEvent
			if err := json.Unmarshal(raw, &evs); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tKIND\tDEVICE\tACTOR\tDETAIL")
			for _, e := range evs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format(time.DateTime), e.Kind, e.DeviceID, e.Actor, eventDetail(e))
			}
			return tw.Flush()
		}
	case "audit verify":
		raw, err = client.Do(ctx, "audit/verify", struct{}{})
		if err == nil && !*asJSON {
			fmt.Fprintln(stdout, "audit log intact: every event's hash chains to the one before")
			return nil
		}
	default:
		return fmt.Errorf("unknown command %q", name)
	}
	if err != nil {
		if errors.Is(err, control.ErrNotRunning) {
			return fmt.Errorf("%w", err)
		}
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", indentJSON(raw))
	return err
}

// interleave moves flags before positional arguments, so `device show ID --json` works.
func interleave(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			flags = append(flags, a)
			if !strings.Contains(a, "=") && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") && !isBoolFlag(a) {
				flags = append(flags, args[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(flags, pos...)
}

func isBoolFlag(a string) bool {
	a = strings.TrimLeft(a, "-")
	return a == "json" || a == "h" || a == "help"
}

func indentJSON(raw json.RawMessage) []byte {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return raw
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	return b
}

// listDevices reads every device, page after page of device/list.
func listDevices(ctx context.Context, client *control.Client) ([]protocol.DeviceSummary, error) {
	list := []protocol.DeviceSummary{}
	req := protocol.DeviceListRequest{Limit: protocol.MaxDeviceListLimit}
	for {
		raw, err := client.Do(ctx, "device/list", req)
		if err != nil {
			return nil, err
		}
		var page protocol.DeviceList
		if err := json.Unmarshal(raw, &page); err != nil {
			return nil, fmt.Errorf("device/list: %w", err)
		}
		list = append(list, page.Devices...)
		if page.NextCursor == "" {
			return list, nil
		}
		req.Cursor = page.NextCursor
	}
}

func printDevices(w io.Writer, list []protocol.DeviceSummary, now time.Time) error {
	if len(list) == 0 {
		fmt.Fprintln(w, "no devices yet: create an enrollment token with `hearth-gateway token create --device ID`")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tNAME\tSTATE\tONLINE\tEXPIRES\tIN\tRENEWAL\tPROBLEMS")
	for _, d := range list {
		exp, left := "-", "-"
		if !d.NotAfter.IsZero() {
			exp, left = d.NotAfter.Local().Format(time.DateOnly), humanDuration(d.NotAfter.Sub(now))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, orDash(d.Name), d.State, yesNo(d.Online), exp, left,
			orDash(d.RenewalState), orDash(strings.Join(d.Problems, ",")))
	}
	return tw.Flush()
}

func printDetail(w io.Writer, d protocol.DeviceDetail, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("Device", d.ID)
	row("Name", orDash(d.Name))
	row("Family / class", orDash(d.Family)+" / "+orDash(d.Class))
	row("State", fmt.Sprintf("%s, %s", d.State, map[bool]string{true: "online", false: "offline"}[d.Online]))
	if !d.NotAfter.IsZero() {
		row("Certificate", fmt.Sprintf("%s, expires %s (in %s)", d.Serial, d.NotAfter.Local().Format(time.DateTime), humanDuration(d.NotAfter.Sub(now))))
	}
	row("Renewal", orDash(d.Device.Renewal.State)+" "+d.Device.Renewal.LastCause)
	row("Problems", orDash(strings.Join(d.Problems, ", ")))
	for _, p := range d.ProblemDetails {
		row("  "+p.Code, p.Text)
	}
	if h := d.Device.Health; !h.At.IsZero() {
		row("Last health", fmt.Sprintf("%s ago: agent %s, chain ok %v, clock skew %s", humanDuration(now.Sub(h.At)), h.AgentVersion, h.ChainOK, h.ClockSkew))
	}
	tw.Flush()
	fmt.Fprintln(w, "\nCertificates:")
	tw = tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "  SERIAL\tSTATUS\tKEY\tNOT AFTER")
	for _, c := range d.Certificates {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", c.Serial, c.Status, c.KeyAlgorithm, c.NotAfter.Local().Format(time.DateTime))
	}
	tw.Flush()
	fmt.Fprintln(w, "\nRecent attempts:")
	tw = tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "  STARTED\tREQUEST\tREASON\tOUTCOME\tCODE")
	for _, a := range d.Attempts {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", a.StartedAt.Local().Format(time.DateTime), a.RequestID, a.Reason, a.Outcome, orDash(string(a.ErrorCode)))
	}
	return tw.Flush()
}

func eventDetail(e protocol.AuditEvent) string {
	if e.Message != "" {
		return e.Message
	}
	var parts []string
	for k, v := range e.Data {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, " ")
}

func humanDuration(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	var s string
	switch {
	case d >= 48*time.Hour:
		s = fmt.Sprintf("%dd", int(d.Hours()/24))
	case d >= time.Hour:
		s = fmt.Sprintf("%dh", int(d.Hours()))
	default:
		s = fmt.Sprintf("%dm", int(d.Minutes()))
	}
	if neg {
		return s + " ago"
	}
	return s
}

func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// runAdmin implements `admin hash`: a password on stdin, its hash on stdout.
func runAdmin(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) != 1 || args[0] != "hash" {
		return fmt.Errorf("admin: want `admin hash` (password on standard input)")
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	hash, err := secret.HashPassword(strings.TrimRight(line, "\r\n"))
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, hash)
	return err
}
