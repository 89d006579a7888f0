package authz

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/secret"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		op   string
		need Role
	}{
		{"device/list", Viewer}, {"device/get", Viewer}, {"events", Viewer}, {"campaign/list", Viewer},
		{"ca/show", Viewer}, {"audit/verify", Viewer}, {"policy/diff", Viewer}, {"change/list", Viewer}, {"change/approve", Admin}, {"change/propose", Admin},
		{"device/renew", Operator}, {"campaign/start", Operator}, {"token/create", Operator},
		{"device/import", Operator}, {"device/sign", Operator},
		{"device/revoke", Admin}, {"device/remove", Admin}, {"policy/reload", Admin}, {"policy/propose", Admin},
		{"policy/approve", Admin}, {"policy/reject", Admin}, {"user/add", Admin}, {"user/remove", Admin},
		{"user/list", Admin}, {"user/set-role", Admin},
		{"some/future-op", Admin},
	}
	for _, tc := range tests {
		for _, r := range append([]Role{0}, Roles()...) {
			err := Check(Principal{Name: "user:x", Role: r}, tc.op)
			if want := r >= tc.need; (err == nil) != want {
				t.Errorf("Check(%s, %q) = %v, want allowed %v", r, tc.op, err, want)
			}
			var de *DeniedError
			if err != nil && (!errors.Is(err, ErrDenied) || !errors.As(err, &de) || de.Need != tc.need) {
				t.Errorf("Check(%s, %q) = %#v, want a DeniedError needing %s", r, tc.op, err, tc.need)
			}
		}
	}
}

func TestNeedsApproval(t *testing.T) {
	for op, want := range map[string]bool{"policy/apply": true, "policy/reload": true, "ca/rotate": true,
		"ca/show": false, "device/revoke": false, "policy/propose": false, "change/approve": false, "user/add": false} {
		if got := NeedsApproval(op); got != want {
			t.Errorf("NeedsApproval(%q) = %v, want %v", op, got, want)
		}
	}
}

func TestParseRole(t *testing.T) {
	for _, r := range Roles() {
		if got, err := ParseRole(r.String()); err != nil || got != r {
			t.Errorf("ParseRole(%q) = %v, %v, want %v", r.String(), got, err, r)
		}
	}
	for _, s := range []string{"", "root", "none", "admins"} {
		if _, err := ParseRole(s); err == nil {
			t.Errorf("ParseRole(%q) = nil error, want one", s)
		}
	}
}

type accounts map[string]Account

func (a accounts) Account(_ context.Context, name string) (Account, error) {
	acc, ok := a[name]
	if !ok {
		return Account{}, ErrNoAccount
	}
	return acc, nil
}

func TestAuthenticate(t *testing.T) {
	hash := testkit.PasswordHash("right-password")
	a := NewAuthenticator([]Account{{Name: "root", Role: Admin, PasswordHash: hash}},
		accounts{"vera": {Name: "vera", Role: Viewer, PasswordHash: hash}, "root": {Name: "root", Role: Viewer, PasswordHash: hash}})
	tests := []struct {
		name, user, password string
		want                 Principal
		wantErr              error
	}{
		{"configured admin", "root", "right-password", Principal{"user:root", Admin}, nil},
		{"inventory user", "vera", "right-password", Principal{"user:vera", Viewer}, nil},
		{"wrong password", "vera", "wrong", Principal{}, ErrBadLogin},
		{"empty password", "vera", "", Principal{}, ErrBadLogin},
		{"unknown user", "mallory", "right-password", Principal{}, ErrBadLogin},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := a.Authenticate(t.Context(), tc.user, tc.password)
			if got != tc.want || !errors.Is(err, tc.wantErr) {
				t.Errorf("Authenticate(%q, %q) = %v, %v, want %v, %v", tc.user, tc.password, got, err, tc.want, tc.wantErr)
			}
		})
	}
	// An unknown name costs the same password check as a known one.
	calls := 0
	a.check = func(h, pw string) bool { calls++; return secret.CheckPassword(h, pw) }
	a.dummy = func() string { return hash }
	for _, name := range []string{"vera", "mallory"} {
		calls = 0
		a.Authenticate(t.Context(), name, "wrong-password")
		if calls != 1 {
			t.Errorf("Authenticate(%q, wrong) checked %d passwords, want 1", name, calls)
		}
	}
	if p, err := a.Lookup(t.Context(), "vera"); err != nil || p.Role != Viewer {
		t.Errorf("Lookup(vera) = %v, %v, want a viewer", p, err)
	}
	if _, err := a.Lookup(t.Context(), "mallory"); !errors.Is(err, ErrNoAccount) {
		t.Errorf("Lookup(mallory) = %v, want ErrNoAccount", err)
	}
}

func TestThrottle(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	th := NewThrottle(func() time.Time { return now })
	for range FreeFailures {
		th.Fail("ip:1", "name:a")
	}
	if d := th.Wait("ip:1"); d != 0 {
		t.Fatalf("Wait after %d failures = %v, want 0", FreeFailures, d)
	}
	want := BaseDelay
	for range 12 {
		th.Fail("ip:1", "name:a")
		if d := th.Wait("ip:1"); d != min(want, MaxDelay) {
			t.Fatalf("Wait = %v, want %v", d, min(want, MaxDelay))
		}
		want *= 2
	}
	if d := th.Wait("ip:2"); d != 0 {
		t.Errorf("Wait(another key) = %v, want 0", d)
	}
	if d := th.Wait("ip:2", "name:a"); d != MaxDelay {
		t.Errorf("Wait(ip:2, name:a) = %v, want the name's %v", d, MaxDelay)
	}
	now = now.Add(MaxDelay)
	if d := th.Wait("ip:1"); d != 0 {
		t.Errorf("Wait after the delay = %v, want 0", d)
	}
	th.Succeed("ip:1", "name:a")
	th.Fail("ip:1")
	if d := th.Wait("ip:1"); d != 0 {
		t.Errorf("Wait after a success and one failure = %v, want 0", d)
	}
}

func TestThrottleForgets(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	th := NewThrottle(func() time.Time { return now })
	for i := range 1000 {
		th.Fail(fmt.Sprint("ip:", i))
	}
	now = now.Add(Forget)
	th.Fail("fresh")
	if n := th.Backoff().Len(now); n != 1 {
		t.Errorf("keys after 1000 idle ones aged %v = %d, want 1", Forget, n)
	}
}
