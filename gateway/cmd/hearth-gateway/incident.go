package main

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"

	"github.com/hearth-pki/hearth/protocol"
)

const incidentDeviceLostAbout = `Runbook for a device that was lost or stolen: revokes every certificate it
has (reason keyCompromise), drops its session and quarantines it, so the key
it carries opens nothing. It comes back only when enrolled again with a new
token. Residents are told in plain language (an incident.notice event on
bridge/event, kept in the audit log). --dry-run lists what would happen and
changes nothing. What to check afterwards: gateway/README.md, "Incidents".`

const incidentFamilyAbout = `Runbook for a family whose keys may have leaked: starts a re-key campaign
over every agent device of the family (one canary first, abort once 20 %
failed) and, as each device commits its new key, revokes the certificate it
leaves (keyCompromise). Residents are told in plain language. --dry-run lists
the devices the campaign would take and changes nothing. Follow it with
` + "`hearth-gateway campaigns`" + `; what to check afterwards: gateway/README.md,
"Incidents".`

func setupIncidentDeviceLost(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	h := newHubFlags(fs, s, true)
	dry := fs.Bool("dry-run", false, "list who would be affected and what residents would be told; change nothing")
	return func(ctx context.Context, args []string) error {
		if err := exactArgs("incident device-lost", args, "ID"); err != nil {
			return err
		}
		var plan protocol.IncidentPlan
		if err := h.do(ctx, "incident/device-lost", protocol.IncidentRequest{ID: args[0], DryRun: *dry}, &plan); err != nil {
			return h.unknownDevice(ctx, err)
		}
		return writeIncidentPlan(s, *h.asJSON, plan)
	}
}

func setupIncidentFamily(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	h := newHubFlags(fs, s, true)
	family := fs.String("family", "", "the compromised device `FAMILY`; required")
	dry := fs.Bool("dry-run", false, "list the devices the campaign would take and what residents would be told; change nothing")
	return func(ctx context.Context, args []string) error {
		if err := exactArgs("incident family-compromised", args); err != nil {
			return err
		}
		if *family == "" {
			return &usageError{cmd: "incident family-compromised", err: fmt.Errorf("--family FAMILY is required")}
		}
		var plan protocol.IncidentPlan
		if err := h.do(ctx, "incident/family-compromised", protocol.IncidentRequest{Family: *family, DryRun: *dry}, &plan); err != nil {
			return err
		}
		return writeIncidentPlan(s, *h.asJSON, plan)
	}
}

// writeIncidentPlan prints an incident's plan or outcome for people, or as JSON.
func writeIncidentPlan(s *stdio, asJSON bool, p protocol.IncidentPlan) error {
	if asJSON {
		return writeJSON(s.stdout, p)
	}
	verb := "affected"
	if p.DryRun {
		verb = "would be affected (dry run: nothing changed)"
	}
	fmt.Fprintf(s.stdout, "incident %s: %d device(s) %s\n", p.Incident, len(p.Devices), verb)
	if len(p.Devices) > 0 {
		tw := tabwriter.NewWriter(s.stdout, 0, 2, 2, ' ', 0)
		fmt.Fprintln(tw, "DEVICE\tNAME\tONLINE\tSERIAL\tACTION")
		for _, d := range p.Devices {
			fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\n", d.ID, d.Name, d.Online, d.Serial, d.Action)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if p.Revoked > 0 {
		fmt.Fprintf(s.stdout, "%d certificate(s) revoked\n", p.Revoked)
	}
	if p.Campaign != "" {
		fmt.Fprintf(s.stdout, "re-key campaign %s started: follow it with `hearth-gateway campaigns`\n", p.Campaign)
	}
	told := "Residents are told"
	if p.DryRun {
		told = "Residents would be told"
	}
	_, err := fmt.Fprintf(s.stdout, "%s: %s\n", told, p.Notice)
	return err
}
