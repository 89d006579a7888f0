package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/hearth-pki/hearth/protocol"
)

const caRotateAbout = `Creates a new intermediate under the root (the root key is opened with the CA
passphrase at this moment, from the sources the hub read at start) and puts it in
force at once, crash-safely: a stop at any point leaves the old or the new
intermediate in force, never a mix. The bundle with both intermediates is
published retained on the CA topic, so agents trust both, and a re-key campaign
(one canary, abort once 20 % failed unless --canary/--abort-after say
otherwise, under --rate) moves every device onto the new one. Once no device's
active certificate is the old intermediate's it is retired: its last CRL, valid
until it expires, stays served at crl-previous; it is no longer trusted.
Follow it with ` + "`hearth-gateway ca status`" + `. Run again while devices are still
moving, it starts a new campaign over those left (after an aborted one).
--dry-run counts the devices and checks that the passphrase opens the keys.
With change approval on, it runs only as an approved change.`

const caStatusAbout = `Asks the running hub (unlike ca show, which reads the files): the intermediate
in force, the previous one while a rotation keeps it trusted, and the latest
rotation with its campaign and how many devices are still on the previous
intermediate. Asking also retires the previous intermediate if no device uses it.`

const incidentIntermediateAbout = `Runbook for an intermediate whose key may have leaked: rotates the
intermediate (see ca rotate-intermediate; campaign incident-intermediate-<time>)
and, once every device moved onto the new one, revokes the old intermediate on
the root's CRL (keyCompromise, served at crl-root) and stops trusting it.
Residents are told in plain language. --dry-run lists the devices the campaign
would take and changes nothing. What to check afterwards: gateway/README.md,
"Incidents".`

const caRotateRootAbout = `Creates a new root (the old root key is opened with the CA passphrase at this
moment), a cross-certificate by which the old root certifies the new root's
subject and key, and a new intermediate under the new root, and puts them in
force at once, crash-safely. The bundle on the CA topic carries both roots,
both intermediates and the cross-certificate: an agent moves its pin to the new
root only when the cross-certificate verifies under the root it pinned, and
refuses a bundle with any other new root. The broker trusts both roots and
sends the cross-certificate in its chain, so agents still pinned to the old
root connect. Then, as ca rotate-intermediate, a re-key campaign moves every
device; once none uses the old intermediate, the old root and intermediate
retire together and agents pin the new root alone. New enrollments use the new
root's fingerprint (ca status). --dry-run counts the devices and checks that
the passphrase opens the keys.`

func setupCARotate(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	return setupRotate(fs, s, "ca rotate-intermediate", "ca/rotate-intermediate")
}

func setupCARotateRoot(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	return setupRotate(fs, s, "ca rotate-root", "ca/rotate-root")
}

func setupRotate(fs *flag.FlagSet, s *stdio, name, op string) func(context.Context, []string) error {
	h := newHubFlags(fs, s, true)
	dry := fs.Bool("dry-run", false, "count the devices and check the passphrase; change nothing")
	rate := fs.String("rate", "", "campaign pace, e.g. 100/min or 2/s")
	canary := fs.Int("canary", 0, "devices re-keyed first (default 1)")
	abortAfter := fs.String("abort-after", "", "stop the campaign when this share failed (default 20%)")
	return func(ctx context.Context, args []string) error {
		if err := exactArgs(name, args); err != nil {
			return err
		}
		req := protocol.CARotateRequest{DryRun: *dry, Canary: *canary}
		var err error
		if req.Rate, err = parseRate(*rate); err != nil {
			return &usageError{cmd: name, err: err}
		}
		if req.AbortAfter, err = parseShare(*abortAfter); err != nil {
			return &usageError{cmd: name, err: err}
		}
		var rot protocol.CARotation
		if err := h.do(ctx, op, req, &rot); err != nil {
			return err
		}
		if *h.asJSON {
			return writeJSON(s.stdout, rot)
		}
		return writeRotation(s.stdout, rot)
	}
}

func setupCAStatus(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	h := newHubFlags(fs, s, true)
	return func(ctx context.Context, args []string) error {
		if err := exactArgs("ca status", args); err != nil {
			return err
		}
		var info protocol.CAInfo
		if err := h.do(ctx, "ca/show", struct{}{}, &info); err != nil {
			return err
		}
		if *h.asJSON {
			return writeJSON(s.stdout, info)
		}
		tw := tabwriter.NewWriter(s.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "Root\t%s\t(until %s)\n", info.Root.Subject, info.Root.NotAfter.UTC().Format(time.RFC3339))
		fmt.Fprintf(tw, "Intermediate in force\t%s\t(serial %s, until %s)\n", info.Intermediate.Subject, info.Intermediate.Serial,
			info.Intermediate.NotAfter.UTC().Format(time.RFC3339))
		if info.Previous != nil {
			fmt.Fprintf(tw, "Previous, still trusted\t%s\t(serial %s)\n", info.Previous.Subject, info.Previous.Serial)
		}
		if info.PreviousRoot != nil {
			fmt.Fprintf(tw, "Previous root, still trusted\t%s\t(cross-signs the root in force)\n", info.PreviousRoot.Subject)
		}
		fmt.Fprintf(tw, "Fingerprint\t%s\t(new enrollments pin this)\n", info.Root.Fingerprint)
		if err := tw.Flush(); err != nil {
			return err
		}
		if info.Rotation == nil {
			_, err := fmt.Fprintln(s.stdout, "No intermediate rotation yet.")
			return err
		}
		fmt.Fprintln(s.stdout)
		return writeRotation(s.stdout, *info.Rotation)
	}
}

func setupIncidentIntermediate(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	h := newHubFlags(fs, s, true)
	dry := fs.Bool("dry-run", false, "list the devices the campaign would take and what residents would be told; change nothing")
	return func(ctx context.Context, args []string) error {
		if err := exactArgs("incident intermediate-compromised", args); err != nil {
			return err
		}
		var plan protocol.IncidentPlan
		if err := h.do(ctx, "incident/intermediate-compromised", protocol.IncidentRequest{DryRun: *dry}, &plan); err != nil {
			return err
		}
		if err := writeIncidentPlan(s, *h.asJSON, plan); err != nil || *h.asJSON || plan.DryRun {
			return err
		}
		_, err := fmt.Fprintln(s.stdout, "Follow it with `hearth-gateway ca status`: the old intermediate is revoked once every device moved.")
		return err
	}
}

// writeRotation prints a rotation for people.
func writeRotation(w io.Writer, r protocol.CARotation) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	state := string(r.State)
	if r.DryRun {
		state = "dry run: nothing changed"
	}
	kind := "Rotation"
	if r.Root {
		kind = "Root rotation"
	}
	fmt.Fprintf(tw, "%s\t%s\n", kind, state)
	if r.Intermediate != nil {
		fmt.Fprintf(tw, "  New intermediate\t%s\t(serial %s)\n", r.Intermediate.Subject, r.Intermediate.Serial)
	}
	fmt.Fprintf(tw, "  Previous\t%s\t(serial %s)\n", r.Previous.Subject, r.Previous.Serial)
	if !r.Started.IsZero() {
		fmt.Fprintf(tw, "  Started\t%s\n", r.Started.UTC().Format(time.RFC3339))
	}
	if r.Campaign != "" {
		fmt.Fprintf(tw, "  Campaign\t%s\t%s\n", r.Campaign, r.CampaignState)
	}
	verb := "taken by the campaign"
	if r.DryRun {
		verb = "the campaign would take"
	}
	fmt.Fprintf(tw, "  Devices\t%d %s\n", r.Devices, verb)
	if !r.DryRun {
		fmt.Fprintf(tw, "  Still on the previous\t%d\n", r.Remaining)
	}
	if !r.Retired.IsZero() {
		fmt.Fprintf(tw, "  Retired\t%s\n", r.Retired.UTC().Format(time.RFC3339))
	}
	if r.Incident {
		revoked := "when retired"
		if r.Revoked {
			revoked = "yes (root CRL)"
		}
		fmt.Fprintf(tw, "  Previous revoked\t%s\n", revoked)
	}
	return tw.Flush()
}
