package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hearth-pki/hearth/protocol"
)

// setupUserAdd is `user add NAME --role ROLE`, the password read from stdin so it is in
// neither argv nor the shell's history.
func setupUserAdd(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	h := newHubFlags(fs, s, true)
	role := fs.String("role", "viewer", "the user's `ROLE`: viewer (read), operator (also renew, campaigns, add devices) or admin (also policy, CA, revoke, users)")
	return func(ctx context.Context, args []string) error {
		if err := exactArgs("user add", args, "NAME"); err != nil {
			return err
		}
		password, err := readPassword(s)
		if err != nil {
			return fmt.Errorf("user add: %w", err)
		}
		var u protocol.UserInfo
		if err := h.do(ctx, "user/add", protocol.UserRequest{Name: args[0], Role: *role, Password: password}, &u); err != nil {
			return err
		}
		if *h.asJSON {
			return writeJSON(s.stdout, u)
		}
		_, err = fmt.Fprintf(s.stdout, "user %s added as %s\n", u.Name, u.Role)
		return err
	}
}

// readPassword reads the first line of stdin.
func readPassword(s *stdio) (string, error) {
	if s.stdin == nil {
		return "", errors.New("no standard input to read the password from")
	}
	line, err := bufio.NewReader(io.LimitReader(s.stdin, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("give the password on standard input, e.g. printf '%s' 'correct horse' | hearth-gateway user add NAME")
	}
	return line, nil
}

func setupUserRemove(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	h := newHubFlags(fs, s, true)
	return func(ctx context.Context, args []string) error {
		if err := exactArgs("user remove", args, "NAME"); err != nil {
			return err
		}
		var u protocol.UserInfo
		if err := h.do(ctx, "user/remove", protocol.UserRequest{Name: args[0]}, &u); err != nil {
			return err
		}
		if *h.asJSON {
			return writeJSON(s.stdout, u)
		}
		_, err := fmt.Fprintf(s.stdout, "user %s (%s) removed; their dashboard sessions ended\n", u.Name, u.Role)
		return err
	}
}

func setupUserSetRole(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	h := newHubFlags(fs, s, true)
	return func(ctx context.Context, args []string) error {
		if err := exactArgs("user set-role", args, "NAME", "ROLE"); err != nil {
			return err
		}
		var u protocol.UserInfo
		if err := h.do(ctx, "user/set-role", protocol.UserRequest{Name: args[0], Role: args[1]}, &u); err != nil {
			return err
		}
		if *h.asJSON {
			return writeJSON(s.stdout, u)
		}
		if u.Previous == u.Role {
			_, err := fmt.Fprintf(s.stdout, "user %s is already %s\n", u.Name, u.Role)
			return err
		}
		_, err := fmt.Fprintf(s.stdout, "user %s is now %s (was %s)\n", u.Name, u.Role, u.Previous)
		return err
	}
}

func setupUserList(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	h := newHubFlags(fs, s, true)
	return func(ctx context.Context, args []string) error {
		if err := exactArgs("user list", args); err != nil {
			return err
		}
		var l protocol.UserList
		if err := h.do(ctx, "user/list", struct{}{}, &l); err != nil {
			return err
		}
		if *h.asJSON {
			return writeJSON(s.stdout, l)
		}
		tw := tabwriter.NewWriter(s.stdout, 0, 2, 2, ' ', 0)
		fmt.Fprintln(tw, "USER\tROLE\tSINCE")
		for _, name := range l.Configured {
			fmt.Fprintf(tw, "%s\tadmin\t(configuration)\n", name)
		}
		for _, u := range l.Users {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Name, u.Role, u.CreatedAt.UTC().Format(time.DateOnly))
		}
		return tw.Flush()
	}
}
