package hub

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/hearth-pki/hearth/gateway/internal/authz"
	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/gateway/internal/control"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
	"github.com/hearth-pki/hearth/protocol"
)

const userPassword = "correct horse battery"

// frontEnd runs one operation through one of the hub's front ends as one principal and
// reports whether it was allowed (false for a refusal for want of a role; the test fails on
// any other outcome).
type frontEnd struct {
	name string
	role authz.Role // the role this front end acts with
	run  func(t *testing.T, op string, payload map[string]any) (allowed, reachable bool)
}

// TestRolesAcrossFrontEnds: one operation needs the same role whichever front end it
// comes through — the CLI's socket (its owner: admin), the bridge API on the hub's broker
// (as the user who logged in), the dashboard's JSON API and forms (as the session's user)
// and Home Assistant's broker (an operator limited to list, get and renew). A table over
// operations × principals.
func TestRolesAcrossFrontEnds(t *testing.T) {
	haAddr := testkit.StartMosquitto(t).Addr
	cfg := hubkit.Config(t, fmt.Sprintf("home_assistant:\n  discovery: true\n  broker: mqtt://%s\n", haAddr))
	h := runHub(t, cfg, Options{Version: "test"})
	enroll(t, h, "dev-1")
	for name, role := range map[string]string{"vera": "viewer", "olga": "operator", "alice": "admin"} {
		if err := h.store.AddUser(t.Context(), inventory.User{Name: name, Role: role, PasswordHash: testkit.PasswordHash(userPassword), CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	ops := []struct {
		op      string
		payload map[string]any
	}{
		{"device/list", map[string]any{}},
		{"device/get", map[string]any{"id": "dev-1"}},
		{"events", map[string]any{"limit": 5}},
		{"device/renew", map[string]any{"id": "dev-1"}},
		{"token/create", map[string]any{"id": "new-lamp"}},
		{"user/list", map[string]any{}},
		{"device/revoke", map[string]any{"id": "dev-missing"}},
	}

	cli := control.NewClient(cfg.SocketPath())
	var fronts []frontEnd
	fronts = append(fronts, frontEnd{name: "cli", role: authz.Admin, run: func(t *testing.T, op string, p map[string]any) (bool, bool) {
		_, err := cli.Do(t.Context(), op, p)
		return allowedBy(t, err), true
	}})
	srv := httptest.NewServer(h.dashboard())
	t.Cleanup(srv.Close)
	for _, u := range []struct {
		name string
		role authz.Role
	}{{"vera", authz.Viewer}, {"olga", authz.Operator}, {"alice", authz.Admin}} {
		c, err := client(t, h, u.name, userPassword, nil)
		if err != nil {
			t.Fatalf("broker login as %s: %v", u.name, err)
		}
		fronts = append(fronts, frontEnd{name: "bridge as " + u.name, role: u.role, run: func(t *testing.T, op string, p map[string]any) (bool, bool) {
			return bridgeAllowed(t, c, h.topics, op, p), true
		}})
		web := dashboardClient(t, srv.URL, u.name)
		fronts = append(fronts, frontEnd{name: "dashboard as " + u.name, role: u.role, run: web})
	}
	fronts = append(fronts, frontEnd{name: "dashboard anonymous", role: 0, run: dashboardClient(t, srv.URL, "")})
	ha := haClient(t, haAddr)
	fronts = append(fronts, frontEnd{name: "home assistant", role: authz.Operator, run: func(t *testing.T, op string, p map[string]any) (bool, bool) {
		allowed, ok := ha(t, op, p)
		return allowed, ok
	}})

	for _, fe := range fronts {
		for _, o := range ops {
			t.Run(fe.name+" "+o.op, func(t *testing.T) {
				allowed, reachable := fe.run(t, o.op, o.payload)
				if !reachable {
					if allowed {
						t.Errorf("%s: %s is not offered but was run", fe.name, o.op)
					}
					return
				}
				if want := fe.role >= authz.Need(o.op); allowed != want {
					t.Errorf("%s %s allowed = %v, want %v (needs %s, has %s)", fe.name, o.op, allowed, want, authz.Need(o.op), fe.role)
				}
			})
		}
	}
}

// allowedBy reads a control client's answer: nil or any refusal but forbidden is "allowed"
// (the operation ran, and may have failed on its own terms, as revoking an unknown device).
func allowedBy(t *testing.T, err error) bool {
	t.Helper()
	if ce, ok := err.(*control.Error); ok && ce.Code == protocol.CodeForbidden {
		return false
	}
	return true
}

func bridgeAllowed(t *testing.T, c mqtt.Client, topics protocol.Topics, op string, p map[string]any) bool {
	t.Helper()
	p["transaction"] = fmt.Sprintf("tx-%d", time.Now().UnixNano())
	got := make(chan protocol.BridgeResponse, 4)
	reply := topics.BridgeResponse(op)
	if tok := c.Subscribe(reply, 1, func(_ mqtt.Client, m mqtt.Message) {
		var r protocol.BridgeResponse
		if json.Unmarshal(m.Payload(), &r) == nil && r.Transaction == p["transaction"] {
			got <- r
		}
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", reply, tok.Error())
	}
	defer func() { c.Unsubscribe(reply).WaitTimeout(time.Second) }()
	b, _ := json.Marshal(p)
	c.Publish(topics.BridgeRequest(op), 1, false, b).WaitTimeout(5 * time.Second)
	select {
	case r := <-got:
		return r.Code != protocol.CodeForbidden
	case <-time.After(10 * time.Second):
		t.Fatalf("no answer to %s", op)
		return false
	}
}

// dashboardClient logs in as user ("" stays anonymous) and runs operations through the
// dashboard's routes; an operation without a route is not reachable.
func dashboardClient(t *testing.T, base, user string) func(t *testing.T, op string, p map[string]any) (bool, bool) {
	t.Helper()
	c := &http.Client{Jar: newJar(t), CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	csrf := func() string {
		resp, err := c.Get(base + "/login")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		m := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindSubmatch(b)
		if m == nil {
			t.Fatalf("no CSRF token on the login page:\n%s", b)
		}
		return string(m[1])
	}
	token := csrf()
	if user != "" {
		resp, err := c.PostForm(base+"/login", url.Values{"csrf": {token}, "name": {user}, "password": {userPassword}})
		if err != nil || resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("dashboard login as %s: %v %v", user, resp, err)
		}
		resp.Body.Close()
	}
	return func(t *testing.T, op string, p map[string]any) (bool, bool) {
		var req *http.Request
		switch op {
		case "device/list":
			req, _ = http.NewRequest(http.MethodGet, base+"/api/devices", nil)
		case "device/get":
			req, _ = http.NewRequest(http.MethodGet, base+"/api/devices/"+p["id"].(string), nil)
		case "events":
			req, _ = http.NewRequest(http.MethodGet, base+"/api/events", nil)
		case "device/renew":
			req, _ = http.NewRequest(http.MethodPost, base+"/api/devices/"+p["id"].(string)+"/renew", nil)
			req.Header.Set("X-Requested-With", "test")
		case "token/create":
			req, _ = http.NewRequest(http.MethodPost, base+"/enroll", strings.NewReader(url.Values{"csrf": {token}, "id": {p["id"].(string)}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		default:
			return false, false
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		// Refused for want of a role: 403, or an anonymous page sent to the login page. Any
		// other answer ran the operation (which may refuse on its own terms: dev-1 has no
		// active certificate to renew yet).
		return resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusSeeOther, true
	}
}

// haClient sends bridge requests on Home Assistant's broker; an operation HA's broker is not
// offered (haOps) is not reachable.
func haClient(t *testing.T, addr string) func(t *testing.T, op string, p map[string]any) (bool, bool) {
	t.Helper()
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("ha-automation").SetProtocolVersion(4)
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to HA's broker: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	topics, _ := protocol.NewTopics(protocol.DefaultPrefix)
	return func(t *testing.T, op string, p map[string]any) (bool, bool) {
		p["transaction"] = fmt.Sprintf("ha-%d", time.Now().UnixNano())
		got := make(chan protocol.BridgeResponse, 4)
		reply := topics.BridgeResponse(op)
		c.Subscribe(reply, 1, func(_ mqtt.Client, m mqtt.Message) {
			var r protocol.BridgeResponse
			if json.Unmarshal(m.Payload(), &r) == nil && r.Transaction == p["transaction"] {
				got <- r
			}
		}).WaitTimeout(5 * time.Second)
		defer func() { c.Unsubscribe(reply).WaitTimeout(time.Second) }()
		b, _ := json.Marshal(p)
		c.Publish(topics.BridgeRequest(op), 1, false, b).WaitTimeout(5 * time.Second)
		var r protocol.BridgeResponse
		select {
		case r = <-got:
		case <-time.After(10 * time.Second):
			t.Fatalf("no answer to %s from HA's broker", op)
		}
		if strings.Contains(r.Error, "is not available from Home Assistant's broker") {
			return false, false
		}
		return r.Code != protocol.CodeForbidden, true
	}
}

func newJar(t *testing.T) http.CookieJar {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return jar
}

// TestDashboardOnTheLANNeedsALogin: a dashboard other machines can reach refuses to start
// when nobody could log in to it, and starts once an admin is configured.
func TestDashboardOnTheLANNeedsALogin(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{ca.PassphraseEnv: hubkit.Passphrase}
	load := func(extra ...string) config.Config {
		cfg, err := config.Load(append([]string{"--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0",
			"--hostnames", "localhost,127.0.0.1"}, extra...), func(k string) string { return env[k] })
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	_, err := Open(t.Context(), load("--http", "0.0.0.0:0"), Options{})
	if err == nil || !strings.Contains(err.Error(), "no one can log in to the dashboard") {
		t.Fatalf("Open(--http 0.0.0.0:0, no users) = %v, want a refusal naming the missing login", err)
	}
	env["HEARTH_ADMIN_PASSWORD"] = hubkit.AdminPassword
	h, err := Open(t.Context(), load("--http", "0.0.0.0:0"), Options{})
	if err != nil {
		t.Fatalf("Open(--http 0.0.0.0:0, an admin configured) = %v", err)
	}
	h.store.Close()
	h.control.Close()
}

// TestApprovedPolicyIsKept: an approved policy change is in force and written to the
// policy file, so a restart keeps it.
func TestApprovedPolicyIsKept(t *testing.T) {
	cfg := hubkit.Config(t, "change_approval: true\n")
	h := runHub(t, cfg, Options{Version: "test"})
	alice := authz.Principal{Name: "user:alice", Role: authz.Admin}
	bob := authz.Principal{Name: "user:bob", Role: authz.Admin}
	yaml := "version: 1\nclasses:\n  - name: default\n    lifetime: 9d\n"
	payload, _ := json.Marshal(protocol.PolicyChangeRequest{Policy: yaml})
	if resp := h.Admin().DoAs(t.Context(), alice, "policy/apply", payload); resp.Code != protocol.CodeNeedsApproval {
		t.Fatalf("policy/apply with approval on = %+v, want needs_approval", resp)
	}
	resp := h.Admin().DoAs(t.Context(), alice, "policy/propose", payload)
	var c protocol.Change
	if resp.Status != "ok" || json.Unmarshal(resp.Data, &c) != nil {
		t.Fatalf("policy/propose = %+v", resp)
	}
	if d := h.policy.Load().Classes[0].Lifetime; d == 9*24*time.Hour {
		t.Fatal("the proposal applied before its approval")
	}
	approve, _ := json.Marshal(protocol.ChangeRequest{ID: c.ID})
	if resp := h.Admin().DoAs(t.Context(), bob, "change/approve", approve); resp.Status != "ok" {
		t.Fatalf("change/approve by a second admin = %+v", resp)
	}
	if d := h.policy.Load().Classes[0].Lifetime; d != 9*24*time.Hour {
		t.Errorf("default lifetime after approval = %v, want 216h", d)
	}
	b, err := os.ReadFile(filepath.Join(cfg.DataDir, "policy.yaml"))
	if err != nil || !strings.Contains(string(b), "lifetime: 9d") {
		t.Errorf("policy file after approval = %q, %v; want the approved policy", b, err)
	}
}

// TestUnapprovedPolicyFileNotApplied: with change approval on, a policy file edited behind the
// hub's back does not take effect at the next start.
func TestUnapprovedPolicyFileNotApplied(t *testing.T) {
	cfg := hubkit.Config(t, "change_approval: true\n")
	h, err := Open(t.Context(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	before := h.policy.Load().Hash()
	h.store.Close()
	h.control.Close()
	if err := os.WriteFile(filepath.Join(cfg.DataDir, "policy.yaml"), []byte("version: 1\nclasses:\n  - name: default\n    lifetime: 2d\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err = Open(t.Context(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { h.store.Close(); h.control.Close() }()
	if got := h.policy.Load().Hash(); got != before {
		t.Errorf("policy after editing the file = %s, want the approved %s kept", got, before)
	}
}

// TestBrokerLoginFailuresAudited: a wrong password for a user or a configured admin on the
// hub's broker is refused and recorded with the name tried; a device id is not an account.
func TestBrokerLoginFailuresAudited(t *testing.T) {
	h, _ := startHub(t)
	if err := h.store.AddUser(t.Context(), inventory.User{Name: "vera", Role: "viewer", PasswordHash: testkit.PasswordHash(userPassword), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"vera", "admin"} {
		if _, err := client(t, h, name, "wrong password", nil); err == nil {
			t.Errorf("broker login %s with a wrong password succeeded", name)
		}
	}
	if _, err := client(t, h, "vera", userPassword, nil); err != nil {
		t.Errorf("broker login vera = %v, want accepted", err)
	}
	client(t, h, "some-device", "hst_wrong", nil)
	// The client may see its connection end (the broker's CONNECT deadline) before the
	// password check, slow under the race detector, has returned and been recorded.
	var actors []string
	testkit.Eventually(t, 30*time.Second, func() bool {
		evs, err := h.store.Events(t.Context(), inventory.EventFilter{Kind: protocol.EventLoginFailed, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		actors = actors[:0]
		for _, e := range evs {
			actors = append(actors, e.Actor)
		}
		slices.Sort(actors)
		return len(actors) >= 2
	}, "two login.failed records")
	if !slices.Equal(actors, []string{"user:admin", "user:vera"}) {
		t.Errorf("login.failed actors = %v, want user:admin and user:vera", actors)
	}
}
