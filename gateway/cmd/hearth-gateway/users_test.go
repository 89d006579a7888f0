package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hearth-pki/hearth/protocol"
)

// TestUserAddReadsStdin: the password comes from stdin, never from argv; without one the
// command says how to give it.
func TestUserAddReadsStdin(t *testing.T) {
	h := cannedFleet()
	h["user/add"] = protocol.UserInfo{Name: "alice", Role: "operator", CreatedAt: t0}
	data := startCannedHub(t, h)
	for _, tc := range []struct {
		stdin, want string
		status      int
	}{
		{"correct horse battery\n", "user alice added as operator\n", 0},
		{"", "give the password on standard input", 1},
	} {
		var out, errb bytes.Buffer
		err := run(t.Context(), []string{"user", "add", "alice", "--role", "operator", "--data", data}, strings.NewReader(tc.stdin), &out, &errb, noEnv)
		status := exitStatus(err, &errb)
		if status != tc.status || !strings.Contains(out.String()+errb.String(), tc.want) {
			t.Errorf("user add with stdin %q = exit %d, %q %q; want exit %d and %q", tc.stdin, status, out.String(), errb.String(), tc.status, tc.want)
		}
	}
}
