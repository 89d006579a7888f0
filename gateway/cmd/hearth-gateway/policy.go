package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/gateway/internal/control"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
)

// runPolicy implements `policy check FILE` (validate without applying; needs no hub) and
// `policy reload [--data DIR]` (the running hub re-reads its policy file and records the
// change).
func runPolicy(ctx context.Context, args []string, stdout io.Writer, env func(string) string) error {
	if len(args) == 2 && args[0] == "check" {
		p, err := policy.Load(args[1])
		if err != nil {
			return fmt.Errorf("%s:\n  %w", args[1], indentErrors(err))
		}
		tw := tabwriter.NewWriter(stdout, 0, 2, 2, ' ', 0)
		fmt.Fprintf(tw, "%s is valid (%s). Classes, most specific match first:\n", args[1], p.Hash())
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
	if len(args) >= 1 && args[0] == "reload" {
		data := ""
		if len(args) == 3 && args[1] == "--data" {
			data = args[2]
		} else if len(args) != 1 {
			return fmt.Errorf("policy reload: want `policy reload [--data DIR]`")
		}
		raw, err := control.NewClient(config.DataDirFrom(data, env)+"/hearth.sock").Do(ctx, "policy/reload", struct{}{})
		if err != nil {
			return err
		}
		var r struct{ Changed []string }
		if err := json.Unmarshal(raw, &r); err != nil {
			return err
		}
		if len(r.Changed) == 0 {
			fmt.Fprintln(stdout, "policy unchanged")
			return nil
		}
		fmt.Fprintln(stdout, "policy applied from the next renewal; changes:")
		for _, c := range r.Changed {
			fmt.Fprintln(stdout, "  "+c)
		}
		return nil
	}
	return fmt.Errorf("policy: want `policy check FILE` or `policy reload [--data DIR]`")
}

func indentErrors(err error) error {
	return fmt.Errorf("%s", strings.ReplaceAll(err.Error(), "\n", "\n  "))
}
