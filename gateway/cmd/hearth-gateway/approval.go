package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hearth-pki/hearth/protocol"
)

// policyRequest reads the policy file named by arg (or an open change's id for diff).
func policyRequest(cmd, arg, canary string, ids bool) (protocol.PolicyChangeRequest, error) {
	if ids && strings.HasPrefix(arg, "chg-") {
		if _, err := os.Stat(arg); err != nil {
			return protocol.PolicyChangeRequest{ID: arg, Canary: canary}, nil
		}
	}
	f, err := os.Open(arg)
	if err != nil {
		return protocol.PolicyChangeRequest{}, fmt.Errorf("%s: %w", cmd, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, protocol.MaxMessageSize/2+1))
	if err != nil {
		return protocol.PolicyChangeRequest{}, fmt.Errorf("%s: %w", cmd, err)
	}
	if len(b) > protocol.MaxMessageSize/2 {
		return protocol.PolicyChangeRequest{}, fmt.Errorf("%s: %s is larger than %d bytes", cmd, arg, protocol.MaxMessageSize/2)
	}
	return protocol.PolicyChangeRequest{Policy: string(b), Canary: canary}, nil
}

// setupPolicyDiff is `policy diff FILE|CHANGE`: what a policy change does before anyone
// approves it.
func setupPolicyDiff(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	h := newHubFlags(fs, s, true)
	canary := fs.String("canary", "", "take only class `CLASS`'s settings from FILE (try the change on that class first)")
	return func(ctx context.Context, args []string) error {
		if err := exactArgs("policy diff", args, "FILE|CHANGE"); err != nil {
			return err
		}
		req, err := policyRequest("policy diff", args[0], *canary, true)
		if err != nil {
			return err
		}
		var d protocol.PolicyDiff
		if err := h.do(ctx, "policy/diff", req, &d); err != nil {
			return err
		}
		if *h.asJSON {
			return writeJSON(s.stdout, d)
		}
		if len(d.Changes) == 0 {
			_, err := fmt.Fprintln(s.stdout, "no change: this is the policy in force")
			return err
		}
		fmt.Fprintf(s.stdout, "policy %s changes:\n", d.Hash)
		for _, c := range d.Changes {
			fmt.Fprintln(s.stdout, "  "+c)
		}
		fmt.Fprintf(s.stdout, "%d device(s) move to another class, %d more are in a class whose settings change\n", d.Moved, d.Affected)
		tw := tabwriter.NewWriter(s.stdout, 0, 2, 2, ' ', 0)
		if len(d.Moves) > 0 {
			fmt.Fprintln(tw, "  DEVICE\tFROM\tTO")
		}
		for _, m := range d.Moves {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", m.ID, m.From, m.To)
		}
		if d.Moved > len(d.Moves) {
			fmt.Fprintf(tw, "  … and %d more\n", d.Moved-len(d.Moves))
		}
		return tw.Flush()
	}
}

// setupPolicyPropose is `policy propose FILE`: store the change for a second admin.
func setupPolicyPropose(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	h := newHubFlags(fs, s, true)
	canary := fs.String("canary", "", "propose only class `CLASS`'s settings from FILE (a canary; propose the whole file after)")
	return func(ctx context.Context, args []string) error {
		if err := exactArgs("policy propose", args, "FILE"); err != nil {
			return err
		}
		req, err := policyRequest("policy propose", args[0], *canary, false)
		if err != nil {
			return err
		}
		var c protocol.Change
		if err := h.do(ctx, "policy/propose", req, &c); err != nil {
			return err
		}
		if *h.asJSON {
			return writeJSON(s.stdout, c)
		}
		fmt.Fprintf(s.stdout, "proposed as %s: %s\n", c.ID, c.Summary)
		_, err = fmt.Fprintf(s.stdout, "another admin reviews it with `hearth-gateway policy diff %s` and applies it with `hearth-gateway change approve %s`\n", c.ID, c.ID)
		return err
	}
}

// setupChangeDecide is `change approve ID` and `change reject ID`.
func setupChangeDecide(verb string) func(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	return func(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
		h := newHubFlags(fs, s, true)
		return func(ctx context.Context, args []string) error {
			if err := exactArgs("change "+verb, args, "ID"); err != nil {
				return err
			}
			var c protocol.Change
			if err := h.do(ctx, "change/"+verb, protocol.ChangeRequest{ID: args[0]}, &c); err != nil {
				return err
			}
			if *h.asJSON {
				return writeJSON(s.stdout, c)
			}
			_, err := fmt.Fprintf(s.stdout, "%s %s (%s by %s)\n", c.ID, c.State, c.Op, c.ProposedBy)
			return err
		}
	}
}

func setupChangeList(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	h := newHubFlags(fs, s, true)
	return func(ctx context.Context, args []string) error {
		if err := exactArgs("change list", args); err != nil {
			return err
		}
		var l protocol.ChangeList
		if err := h.do(ctx, "change/list", struct{}{}, &l); err != nil {
			return err
		}
		if *h.asJSON {
			return writeJSON(s.stdout, l)
		}
		tw := tabwriter.NewWriter(s.stdout, 0, 2, 2, ' ', 0)
		fmt.Fprintln(tw, "CHANGE\tOP\tSTATE\tPROPOSED BY\tAT\tDECIDED BY\tSUMMARY")
		for _, c := range l.Changes {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.Op, c.State, c.ProposedBy, c.ProposedAt.UTC().Format(time.RFC3339),
				orDash(c.DecidedBy), protocol.Clip(c.Summary, 80))
		}
		return tw.Flush()
	}
}
