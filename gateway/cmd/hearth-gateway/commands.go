package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// The command line is a table of commands, each with its own flag set, synopsis and
// examples: `hearth-gateway CMD --help` prints them and exits 0, a usage error exits 2 with
// the hint `hearth-gateway CMD --help`. The standard flag package does the parsing; what it
// lacks (flags after positional arguments, help on stdout, exit status 2) is the few
// functions of this file, smaller than the dependency a CLI library would add to the hub.

// command is one subcommand of hearth-gateway.
type command struct {
	name     string // one or two words: "devices", "device show"
	synopsis string // what follows the name in a usage line
	group    string // heading in the overview
	summary  string // one line, in the overview
	about    string // more, in --help; may be empty
	examples []string
	// setup defines the command's flags on fs and returns what runs it with the positional
	// arguments. It runs before parsing, so flags are known to --help.
	setup func(fs *flag.FlagSet, s *stdio) func(ctx context.Context, args []string) error
	// raw commands parse their own arguments (serve: internal/config owns its flags); flags
	// then describes them for --help.
	raw   func(ctx context.Context, s *stdio, args []string) error
	flags func() *flag.FlagSet
}

// stdio is what a command reads and writes besides its arguments.
type stdio struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	env            func(string) string
}

// usageError is a command line the command cannot run: main prints it with the hint to run
// the command's --help and exits 2.
type usageError struct {
	cmd string // "" for the top level
	err error
}

func (e *usageError) Error() string {
	if e.cmd == "" {
		return e.err.Error()
	}
	return e.cmd + ": " + e.err.Error()
}

func (e *usageError) Unwrap() error { return e.err }

// hint is the command to run for help after e.
func (e *usageError) hint() string {
	if e.cmd == "" {
		return "hearth-gateway help"
	}
	return "hearth-gateway " + e.cmd + " --help"
}

func usagef(cmd, format string, args ...any) error {
	return &usageError{cmd: cmd, err: fmt.Errorf(format, args...)}
}

// lookup finds the command args start with and returns it with the remaining arguments, or
// a usage error naming what exists.
func lookup(args []string) (*command, []string, error) {
	if len(args) >= 2 {
		if c := find(args[0] + " " + args[1]); c != nil {
			return c, args[2:], nil
		}
	}
	if c := find(args[0]); c != nil {
		return c, args[1:], nil
	}
	if subs := subcommands(args[0]); len(subs) > 0 {
		if len(args) > 1 && isHelpFlag(args[1]) {
			return &command{name: args[0], group: args[0]}, nil, nil
		}
		if len(args) == 1 || strings.HasPrefix(args[1], "-") {
			return nil, nil, usagef(args[0], "give a subcommand: %s", strings.Join(subs, ", "))
		}
		return nil, nil, usagef(args[0], "unknown subcommand %q; %s has: %s", args[1], args[0], strings.Join(subs, ", "))
	}
	return nil, nil, usagef("", "unknown command %q; commands: %s", args[0], strings.Join(topLevel(), ", "))
}

func find(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

// subcommands lists the second words of the commands under group ("device": show, ...).
func subcommands(group string) []string {
	var out []string
	for _, c := range commands {
		if g, sub, ok := strings.Cut(c.name, " "); ok && g == group {
			out = append(out, sub)
		}
	}
	return out
}

// topLevel lists the first words of every command, once each.
func topLevel() []string {
	var out []string
	for _, c := range commands {
		w, _, _ := strings.Cut(c.name, " ")
		if !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	return append(out, "version", "help")
}

// runCommand parses args with c's flags and runs it.
func runCommand(ctx context.Context, c *command, s *stdio, args []string) error {
	if c.group == c.name {
		return c.help(s.stdout)
	}
	if c.raw != nil {
		if slices.ContainsFunc(args, isHelpFlag) {
			return c.help(s.stdout)
		}
		return c.raw(ctx, s, args)
	}
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	runFn := c.setup(fs, s)
	if err := fs.Parse(interleave(fs, args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c.help(s.stdout)
		}
		return &usageError{cmd: c.name, err: err}
	}
	return runFn(ctx, fs.Args())
}

func isHelpFlag(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

// flagSet returns c's flags, defined but not parsed.
func (c *command) flagSet() *flag.FlagSet {
	if c.flags != nil {
		return c.flags()
	}
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	c.setup(fs, &stdio{env: func(string) string { return "" }})
	return fs
}

// help prints c's --help: usage, description, flags, examples. A group ("device") lists its
// subcommands.
func (c *command) help(w io.Writer) error {
	if c.group == c.name {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "Usage: hearth-gateway %s <subcommand> [flags]\n\nSubcommands:\n", c.name)
		for _, sub := range subcommands(c.name) {
			fmt.Fprintf(tw, "  %s %s\t%s\n", c.name, sub, find(c.name+" "+sub).summary)
		}
		fmt.Fprintf(tw, "\nRun `hearth-gateway %s SUBCOMMAND --help` for its flags and examples.\n", c.name)
		return tw.Flush()
	}
	fmt.Fprintf(w, "Usage: hearth-gateway %s %s\n\n%s\n", c.name, c.synopsis, c.summary)
	if c.about != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimRight(c.about, "\n"))
	}
	fs := c.flagSet()
	if n := countFlags(fs); n > 0 {
		fmt.Fprintln(w, "\nFlags:")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fs.VisitAll(func(f *flag.Flag) {
			arg, usage := flag.UnquoteUsage(f)
			if arg != "" {
				arg = " " + strings.ToUpper(arg)
			}
			if isBool(f) {
				arg = ""
			}
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
				usage += fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(tw, "  --%s%s\t%s\n", f.Name, arg, usage)
		})
		tw.Flush()
	}
	if len(c.examples) > 0 {
		fmt.Fprintln(w, "\nExamples:")
		for _, e := range c.examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
	return nil
}

func countFlags(fs *flag.FlagSet) int {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// interleave moves flags before positional arguments, so `device show ID --json` works. A
// lone "-" (standard input) stays positional; "--" ends the flags.
func interleave(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if a == "-" || !strings.HasPrefix(a, "-") {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := fs.Lookup(name); f != nil && !isBool(f) && i+1 < len(args) {
			flags = append(flags, args[i+1])
			i++
		}
	}
	return append(flags, append([]string{"--"}, pos...)...)
}

// usage is the overview `hearth-gateway help` prints.
func usage() string {
	var b strings.Builder
	b.WriteString("Usage: hearth-gateway <command> [flags]\n")
	group := ""
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, c := range commands {
		if c.group != group {
			group = c.group
			fmt.Fprintf(tw, "\n%s:\n", group)
		}
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	fmt.Fprintf(tw, "\nOther:\n  version\tprint the version\n  help [COMMAND]\tthis overview, or a command's --help\n")
	tw.Flush()
	b.WriteString(`
Client commands take --data DIR (default $HEARTH_DATA, else ./hearth-data) and talk to the
hub running on that data directory. Run "hearth-gateway COMMAND --help" for its flags and
examples.
`)
	return b.String()
}

// exactArgs checks a command got n positional arguments, naming them in the error.
func exactArgs(cmd string, args []string, names ...string) error {
	if len(args) == len(names) {
		return nil
	}
	if len(args) < len(names) {
		return usagef(cmd, "missing %s", strings.Join(names[len(args):], " "))
	}
	return usagef(cmd, "unexpected argument %q", args[len(names)])
}
