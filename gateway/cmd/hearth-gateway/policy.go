package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

// setupPolicyCheck is `policy check FILE`: validate without applying; needs no hub.
func setupPolicyCheck(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := exactArgs("policy check", args, "FILE"); err != nil {
			return err
		}
		p, err := policy.Load(args[0])
		if err != nil {
			return fmt.Errorf("%s:\n  %w", args[0], indentErrors(err))
		}
		tw := tabwriter.NewWriter(s.stdout, 0, 2, 2, ' ', 0)
		fmt.Fprintf(tw, "%s is valid (%s). Classes, most specific match first:\n", args[0], p.Hash())
		fmt.Fprintln(tw, "  CLASS\tLIFETIME\tKEYS\tPRIORITY\tMATCHES")
		for _, c := range p.Classes {
			var keys []string
			for _, k := range c.Keys {
				keys = append(keys, k.String())
			}
			match := strings.Join(append(append(append([]string(nil), c.Match.Devices...), c.Match.Tags...), c.Match.Families...), ",")
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\n", c.Name, c.Lifetime, strings.Join(keys, ","), c.Priority, orDash(match))
		}
		return tw.Flush()
	}
}

// setupPolicyReload is `policy reload`: the running hub re-reads its policy file and records
// the change.
func setupPolicyReload(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	h := newHubFlags(fs, s, true)
	return func(ctx context.Context, args []string) error {
		if err := exactArgs("policy reload", args); err != nil {
			return err
		}
		r := protocol.PolicyReloaded{Changed: []string{}}
		if err := h.do(ctx, "policy/reload", struct{}{}, &r); err != nil {
			return err
		}
		if *h.asJSON {
			return writeJSON(s.stdout, r)
		}
		if len(r.Changed) == 0 {
			_, err := fmt.Fprintln(s.stdout, "policy unchanged")
			return err
		}
		fmt.Fprintln(s.stdout, "policy applied from the next renewal; changes:")
		for _, c := range r.Changed {
			fmt.Fprintln(s.stdout, "  "+c)
		}
		return nil
	}
}

func indentErrors(err error) error {
	return fmt.Errorf("%s", strings.ReplaceAll(err.Error(), "\n", "\n  "))
}
