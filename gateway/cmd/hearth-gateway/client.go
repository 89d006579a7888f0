package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/gateway/internal/control"
	"github.com/hearth-pki/hearth/gateway/internal/secret"
	"github.com/hearth-pki/hearth/protocol"
)

// hubFlags are the flags every client command has: the data directory of the running hub
// and, for most, --json.
type hubFlags struct {
	data   *string
	asJSON *bool
	s      *stdio
}

func newHubFlags(fs *flag.FlagSet, s *stdio, withJSON bool) *hubFlags {
	h := &hubFlags{s: s, data: fs.String("data", "", "data `DIR` of the running hub ($HEARTH_DATA, else ./hearth-data)")}
	h.asJSON = new(bool)
	if withJSON {
		fs.BoolVar(h.asJSON, "json", false, "print JSON for scripts (protocol/README.md, \"JSON conventions\")")
	}
	return h
}

func (h *hubFlags) client() *control.Client {
	return control.NewClient(config.DataDirFrom(*h.data, h.s.env) + "/hearth.sock")
}

// do runs op on the hub and decodes its data into out.
func (h *hubFlags) do(ctx context.Context, op string, payload, out any) error {
	raw, err := h.client().Do(ctx, op, payload)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s: the hub answered what this CLI cannot read: %w", op, err)
	}
	return nil
}

// writeJSON prints v indented: the --json output of every command.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// isNotFound reports a hub answer that the named device (or campaign) does not exist.
func isNotFound(err error) bool {
	var ce *control.Error
	return errors.As(err, &ce) && ce.Code == protocol.CodeNotFound
}

// unknownDevice turns a not-found answer about id into an error that lists the devices the
// hub has; other errors pass through.
func (h *hubFlags) unknownDevice(ctx context.Context, err error) error {
	if !isNotFound(err) {
		return err
	}
	list, lerr := listDevices(ctx, h.client())
	if lerr != nil {
		return err
	}
	return fmt.Errorf("%w; %s", err, known("devices", deviceIDs(list), "hearth-gateway devices"))
}

// known lists what exists, at most 10, e.g. "devices: a, b, c (and 4 more: `hearth-gateway
// devices`)"; "no devices yet" when there are none.
func known(what string, names []string, listCmd string) string {
	if len(names) == 0 {
		return "no " + what + " yet"
	}
	const max = 10
	more := ""
	if len(names) > max {
		more = fmt.Sprintf(" (and %d more: `%s`)", len(names)-max, listCmd)
		names = names[:max]
	}
	return what + ": " + strings.Join(names, ", ") + more
}

func deviceIDs(list []protocol.DeviceSummary) []string {
	ids := make([]string, len(list))
	for i, d := range list {
		ids[i] = d.ID
	}
	return ids
}

func setupTokenCreate(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	h := newHubFlags(fs, s, true)
	device := fs.String("device", "", "device `ID` the token enrolls (or give it as the argument)")
	ttl := fs.String("ttl", "", "token lifetime, e.g. 30m or 24h (default the hub's token_ttl, 24h)")
	name := fs.String("name", "", "device `NAME` people read")
	family := fs.String("family", "", "device `FAMILY`, for campaigns (renew --family)")
	replace := fs.Bool("replace", false, "allow a token for a device that is already enrolled: its next enrollment replaces its identity")
	return func(ctx context.Context, args []string) error {
		id := *device
		if id == "" && len(args) == 1 {
			id, args = args[0], nil
		}
		if id == "" {
			return usagef("token create", "give the device id: --device ID")
		}
		if len(args) > 0 {
			return usagef("token create", "unexpected argument %q", args[0])
		}
		if !*replace {
			var det protocol.DeviceDetail
			err := h.do(ctx, "device/get", protocol.DeviceRequest{ID: id}, &det)
			switch {
			case err == nil && (det.Serial != "" || len(det.Certificates) > 0):
				return fmt.Errorf("%s is already enrolled (state %s): a new token lets whoever holds it replace the device's identity; "+
					"to do that, run `hearth-gateway token create --device %s --replace`", id, det.State, id)
			case err != nil && !isNotFound(err):
				return err
			}
		}
		var t protocol.TokenCreated
		if err := h.do(ctx, "token/create", protocol.TokenRequest{ID: id, Name: *name, Family: *family, TTL: *ttl}, &t); err != nil {
			return err
		}
		if *h.asJSON {
			return writeJSON(s.stdout, t)
		}
		_, err := fmt.Fprintf(s.stdout, "Enrollment token for %s (single use, expires %s):\n  %s\n\nOn the device, run:\n  %s\n",
			t.ID, t.ExpiresAt.Local().Format(time.RFC1123), t.Token, t.Command)
		return err
	}
}

func setupDevices(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	h := newHubFlags(fs, s, true)
	return func(ctx context.Context, args []string) error {
		if err := exactArgs("devices", args); err != nil {
			return err
		}
		list, err := listDevices(ctx, h.client())
		if err != nil {
			return err
		}
		if *h.asJSON {
			return writeJSON(s.stdout, list)
		}
		return printDevices(s.stdout, list, time.Now())
	}
}

func setupDeviceShow(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	h := newHubFlags(fs, s, true)
	return func(ctx context.Context, args []string) error {
		if err := exactArgs("device show", args, "ID"); err != nil {
			return err
		}
		var det protocol.DeviceDetail
		if err := h.do(ctx, "device/get", protocol.DeviceRequest{ID: args[0]}, &det); err != nil {
			return h.unknownDevice(ctx, err)
		}
		if *h.asJSON {
			return writeJSON(s.stdout, det)
		}
		return printDetail(s.stdout, det, time.Now())
	}
}

func setupManual(name string) func(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	return func(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
		h := newHubFlags(fs, s, true)
		device := fs.String("device", "", "device `ID` (required)")
		devName := fs.String("name", "", "device `NAME` people read")
		family := fs.String("family", "", "device `FAMILY`")
		var out *string
		if name == "device sign" {
			out = fs.String("out", "", "write the signed chain to `FILE` instead of standard output")
		}
		return func(ctx context.Context, args []string) error {
			if len(args) == 0 {
				return usagef(name, "give the FILE to read (- for standard input)")
			}
			if out != nil && *out != "" {
				args = append([]string{"--out=" + *out}, args...)
			}
			return runManual(ctx, h.client(), name, *device, *devName, *family, args, *h.asJSON, s.stdout)
		}
	}
}

func setupRenew(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	h := newHubFlags(fs, s, true)
	family := fs.String("family", "", "campaign: every device of this `FAMILY`")
	camp := campaignFlags(fs, family)
	return func(ctx context.Context, args []string) error {
		if camp.selected() {
			if len(args) > 0 {
				return usagef("renew", "give a device ID or a selection (--all, --family, --class), not both")
			}
			return h.startCampaign(ctx, camp)
		}
		if err := exactArgs("renew", args, "ID"); err != nil {
			return usagef("renew", "give a device ID, or --all, --family F or --class C for a campaign")
		}
		var r protocol.DeviceRenewed
		if err := h.do(ctx, "device/renew", protocol.DeviceRequest{ID: args[0]}, &r); err != nil {
			return h.unknownDevice(ctx, err)
		}
		if *h.asJSON {
			return writeJSON(s.stdout, r)
		}
		if r.Queued {
			_, err := fmt.Fprintf(s.stdout, "renewal of %s queued: the hub commands it now if it is online, else when it reconnects, and retries until it commits\n", r.ID)
			return err
		}
		_, err := fmt.Fprintf(s.stdout, "renew command %s sent to %s (the agent has until %s)\n", r.CommandID, r.ID, r.Deadline.Local().Format(time.Kitchen))
		return err
	}
}

// startCampaign starts the campaign the flags describe. A family or class no device has is
// an error listing those that exist, before anything starts.
func (h *hubFlags) startCampaign(ctx context.Context, camp *campaignOptions) error {
	c, err := camp.campaign()
	if err != nil {
		return &usageError{cmd: "renew", err: err}
	}
	var st protocol.CampaignStatus
	if err := h.do(ctx, "campaign/start", c, &st); err != nil {
		var ce *control.Error
		if errors.As(err, &ce) && ce.Code == protocol.CodeBadRequest && (c.Selector.Family != "" || c.Selector.Class != "") {
			if list, lerr := listDevices(ctx, h.client()); lerr == nil {
				return fmt.Errorf("%w; %s", err, selectorsKnown(list))
			}
		}
		return err
	}
	if *h.asJSON {
		return writeJSON(h.s.stdout, st)
	}
	_, err = fmt.Fprintf(h.s.stdout, "campaign %s started: %d device(s), %d canary first; follow it with `hearth-gateway campaigns`\n", st.ID, st.Total, st.Canary)
	return err
}

// selectorsKnown lists the families and classes the devices have.
func selectorsKnown(list []protocol.DeviceSummary) string {
	var fams, classes []string
	for _, d := range list {
		if d.Family != "" && !slices.Contains(fams, d.Family) {
			fams = append(fams, d.Family)
		}
		if d.Class != "" && !slices.Contains(classes, d.Class) {
			classes = append(classes, d.Class)
		}
	}
	slices.Sort(fams)
	slices.Sort(classes)
	return known("families", fams, "hearth-gateway devices") + "; " + known("classes", classes, "hearth-gateway devices")
}

func setupRevoke(name string) func(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	return func(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
		h := newHubFlags(fs, s, true)
		var reason, serial, note *string
		if name == "revoke" {
			words := make([]string, 0, 6)
			for _, r := range protocol.RevocationReasons() {
				words = append(words, string(r))
			}
			reason = fs.String("reason", "", "the RFC 5280 reason `WORD`: "+strings.Join(words, ", ")+" (default unspecified)")
			serial = fs.String("serial", "", "revoke only the certificate with this `SERIAL` (hex), not the whole device")
			note = fs.String("note", "", "why, in plain `TEXT`, for the audit log")
		} else {
			note = fs.String("reason", "", "why, for the audit log")
		}
		return func(ctx context.Context, args []string) error {
			if err := exactArgs(name, args, "ID"); err != nil {
				return err
			}
			req := protocol.DeviceRequest{ID: args[0], Note: *note}
			if reason != nil {
				if _, err := protocol.ParseRevocationReason(*reason); err != nil {
					return &usageError{cmd: name, err: err}
				}
				req.Reason, req.Serial = *reason, *serial
			}
			var r protocol.DeviceRevoked
			if err := h.do(ctx, "device/"+name, req, &r); err != nil {
				return h.unknownDevice(ctx, err)
			}
			if *h.asJSON {
				return writeJSON(s.stdout, r)
			}
			var err error
			switch {
			case r.Removed:
				_, err = fmt.Fprintf(s.stdout, "%s: %d certificate(s) revoked, %d session(s) dropped, removed from the inventory\n", r.ID, r.Revoked, r.Disconnected)
			case r.Serial != "":
				_, err = fmt.Fprintf(s.stdout, "%s: certificate %s revoked (%s), %d session(s) dropped\n", r.ID, r.Serial, r.Reason, r.Disconnected)
			default:
				_, err = fmt.Fprintf(s.stdout, "%s: %d certificate(s) revoked (%s), %d session(s) dropped; quarantined until enrolled again with a new token\n",
					r.ID, r.Revoked, r.Reason, r.Disconnected)
			}
			return err
		}
	}
}

func setupCampaigns(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	h := newHubFlags(fs, s, true)
	return func(ctx context.Context, args []string) error {
		if err := exactArgs("campaigns", args); err != nil {
			return err
		}
		list := []protocol.CampaignStatus{}
		if err := h.do(ctx, "campaign/list", struct{}{}, &list); err != nil {
			return err
		}
		if *h.asJSON {
			return writeJSON(s.stdout, list)
		}
		if len(list) == 0 {
			_, err := fmt.Fprintln(s.stdout, "no campaigns yet: start one with `hearth-gateway renew --all`")
			return err
		}
		tw := tabwriter.NewWriter(s.stdout, 0, 2, 2, ' ', 0)
		fmt.Fprintln(tw, "CAMPAIGN\tSTATE\tSTARTED\tTOTAL\tCOMMITTED\tFAILED\tIN FLIGHT\tPENDING\tCAUSE")
		for _, c := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", c.ID, c.State, c.Started.Local().Format(time.DateTime),
				c.Total, c.Committed, c.Failed, c.InFlight, c.Pending, orDash(c.Cause))
		}
		return tw.Flush()
	}
}

func setupEvents(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	h := newHubFlags(fs, s, true)
	device := fs.String("device", "", "only the events of device `ID`")
	limit := fs.Int("limit", 50, "at most `N` events, the newest (1 to 1000)")
	return func(ctx context.Context, args []string) error {
		if err := exactArgs("events", args); err != nil {
			return err
		}
		if *limit < 1 || *limit > 1000 {
			return usagef("events", "--limit %d: want 1 to 1000", *limit)
		}
		evs := []protocol.AuditEvent{}
		if err := h.do(ctx, "events", protocol.EventsRequest{ID: *device, Limit: *limit}, &evs); err != nil {
			return err
		}
		if len(evs) == 0 && *device != "" {
			// An unknown device has no events: say so rather than print nothing.
			var det protocol.DeviceDetail
			if err := h.do(ctx, "device/get", protocol.DeviceRequest{ID: *device}, &det); isNotFound(err) {
				return h.unknownDevice(ctx, err)
			}
		}
		if *h.asJSON {
			return writeJSON(s.stdout, evs)
		}
		tw := tabwriter.NewWriter(s.stdout, 0, 2, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tKIND\tDEVICE\tACTOR\tDETAIL")
		for _, e := range evs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format(time.DateTime), e.Kind, orDash(e.DeviceID), e.Actor, eventDetail(e))
		}
		return tw.Flush()
	}
}

func setupAuditVerify(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	h := newHubFlags(fs, s, true)
	return func(ctx context.Context, args []string) error {
		if err := exactArgs("audit verify", args); err != nil {
			return err
		}
		var v protocol.AuditVerified
		if err := h.do(ctx, "audit/verify", struct{}{}, &v); err != nil {
			return err
		}
		if *h.asJSON {
			return writeJSON(s.stdout, v)
		}
		_, err := fmt.Fprintln(s.stdout, "audit log intact: every event's hash chains to the one before")
		return err
	}
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
	fmt.Fprintln(tw, "  STARTED\tREQUEST\tREASON\tOUTCOME\tCODE\tCAUSE\tDETAIL")
	for _, a := range d.Attempts {
		cause := "-"
		if a.Cause != "" {
			cause = fmt.Sprintf("%s (%s)", a.Cause, a.CauseClass)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.StartedAt.Local().Format(time.DateTime), a.RequestID, a.Reason, a.Outcome,
			orDash(string(a.ErrorCode)), cause, orDash(protocol.Clip(a.Detail, 80)))
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

// setupAdminHash is `admin hash`: a password on stdin, its hash on stdout.
func setupAdminHash(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := exactArgs("admin hash", args); err != nil {
			return err
		}
		if s.stdin == nil {
			return errors.New("admin hash: no standard input to read the password from")
		}
		line, err := bufio.NewReader(io.LimitReader(s.stdin, 4096)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		hash, err := secret.HashPassword(strings.TrimRight(line, "\r\n"))
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(s.stdout, hash)
		return err
	}
}
