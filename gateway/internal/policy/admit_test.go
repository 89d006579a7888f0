package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hearth-pki/hearth/protocol"
)

func TestAdmit(t *testing.T) {
	p := examplePolicy(t)
	now := time.Date(2026, 3, 1, 12, 0, 30, 500, time.UTC)
	plug := Subject{DeviceID: "plug-1", Family: "plug"}
	cam := Subject{DeviceID: "cam-1", Family: "acme-cam-v2"}
	old := Subject{DeviceID: "old-hub-1"}
	lock := Subject{DeviceID: "lock-1", Tags: []string{"lock"}}
	renew := func(alg string) CSRInfo {
		return CSRInfo{KeyAlgorithm: alg, Reason: CSRWindow, ReplacesSerial: "01", CurrentNotAfter: now.Add(24 * time.Hour)}
	}
	with := func(c CSRInfo, f func(*CSRInfo)) CSRInfo { f(&c); return c }

	tests := []struct {
		name       string
		subject    Subject
		csr        CSRInfo
		wantRule   string        // "" when admitted
		wantCode   protocol.Code // "" when admitted
		wantReason string        // substring
	}{
		{"enroll p256", plug, CSRInfo{KeyAlgorithm: KeyP256, Reason: CSREnroll}, "", "", "admitted"},
		{"renew ed25519", plug, renew(KeyEd25519), "", "", "ed25519 key"},
		{"unknown reason", plug, with(renew(KeyP256), func(c *CSRInfo) { c.Reason = "because" }), "request.reason", protocol.CodeBadRequest, `"because"`},
		{"renewal without serial", plug, with(renew(KeyP256), func(c *CSRInfo) { c.ReplacesSerial = "" }), "request.replaces", protocol.CodeBadRequest, "must name the serial"},
		{"curve not allowed", plug, renew("p521"), "classes.default.keys", protocol.CodeWeakKey, `p521 key is not allowed for class "default" (allowed: p256, p384, ed25519)`},
		{"class narrows keys", cam, renew(KeyP384), "classes.camera.keys", protocol.CodeWeakKey, "allowed: p256"},
		{"rsa outside legacy", plug, with(renew(KeyRSA), func(c *CSRInfo) { c.KeyBits = 4096 }), "classes.default.keys", protocol.CodeWeakKey, "RSA is for legacy classes only"},
		{"rsa too small", old, with(renew(KeyRSA), func(c *CSRInfo) { c.KeyBits = 1024 }), "classes.legacy.keys", protocol.CodeWeakKey, "needs at least 2048 bits"},
		{"rsa in legacy", old, with(renew(KeyRSA), func(c *CSRInfo) { c.KeyBits = 2048 }), "", "", "rsa 2048-bit key"},
		{"same key refused", plug, with(renew(KeyP256), func(c *CSRInfo) { c.SameKeyAsCurrent = true }), "classes.default.rekey", protocol.CodePolicyDenied, "requires a new key"},
		{"same key allowed by class", old, with(renew(KeyP256), func(c *CSRInfo) { c.SameKeyAsCurrent = true }), "", "", "admitted"},
		{"rekey request needs new key", old, with(renew(KeyP256), func(c *CSRInfo) { c.Reason = CSRRekey; c.SameKeyAsCurrent = true }), "request.rekey", protocol.CodePolicyDenied, "must carry a new key"},
		{"expired, no grace", plug, with(renew(KeyP256), func(c *CSRInfo) { c.Reason = CSRRecovery; c.CurrentNotAfter = now.Add(-time.Hour) }), "classes.default.grace", protocol.CodeExpired, "expired 1h ago and class \"default\" allows no renewal after expiry"},
		{"expired high-risk", lock, with(renew(KeyP256), func(c *CSRInfo) { c.CurrentNotAfter = now.Add(-time.Second) }), "classes.high-risk.grace", protocol.CodeExpired, "allows no renewal after expiry"},
		{"expired within grace", old, with(renew(KeyP256), func(c *CSRInfo) { c.Reason = CSRRecovery; c.CurrentNotAfter = now.Add(-6 * 24 * time.Hour) }), "", "", "admitted"},
		{"expired beyond grace", old, with(renew(KeyP256), func(c *CSRInfo) { c.Reason = CSRRecovery; c.CurrentNotAfter = now.Add(-8 * 24 * time.Hour) }), "classes.legacy.grace", protocol.CodeExpired, "beyond the 7d class \"legacy\" allows"},
		{"recovery without certificate", old, with(renew(KeyP256), func(c *CSRInfo) { c.Reason = CSRRecovery; c.CurrentNotAfter = time.Time{} }), "request.recovery", protocol.CodePolicyDenied, "does not know"},
		{"expiry exactly now", plug, with(renew(KeyP256), func(c *CSRInfo) { c.CurrentNotAfter = now }), "", "", "admitted"},
		{"enroll ignores old expiry", plug, with(renew(KeyP256), func(c *CSRInfo) { c.Reason = CSREnroll; c.CurrentNotAfter = now.Add(-time.Hour * 1000) }), "", "", "admitted"},
		{"empty key", plug, renew(""), "classes.default.keys", protocol.CodeWeakKey, "unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Admit(tt.subject, tt.csr, now)
			if d.Allowed() != (tt.wantRule == "") || (tt.wantRule != "" && d.Rule != tt.wantRule) {
				t.Fatalf("Admit(%+v, %+v) = allowed %v rule %q (%s), want rule %q", tt.subject, tt.csr, d.Allowed(), d.Rule, d.Reason, tt.wantRule)
			}
			if tt.wantRule != "" {
				want := &Refusal{Code: tt.wantCode, Rule: d.Rule, Reason: d.Reason}
				if diff := cmp.Diff(want, d.Refusal); diff != "" {
					t.Errorf("Admit(%+v, %+v).Refusal (-want +got):\n%s", tt.subject, tt.csr, diff)
				}
			}
			if !strings.Contains(d.Reason, tt.wantReason) {
				t.Errorf("Admit(%+v, %+v).Reason = %q, want it to contain %q", tt.subject, tt.csr, d.Reason, tt.wantReason)
			}
			if !d.Allowed() && !cmp.Equal(d.Profile, Profile{}) {
				t.Errorf("refused decision carries a profile: %+v", d.Profile)
			}
		})
	}
}

func TestAdmitProfile(t *testing.T) {
	p := examplePolicy(t)
	now := time.Date(2026, 3, 1, 12, 0, 30, 999, time.FixedZone("CET", 3600))
	s := Subject{DeviceID: "Thermo-7", Family: "thermo-x"}
	csr := CSRInfo{KeyAlgorithm: KeyP256, Reason: CSREnroll, DNSNames: []string{
		"thermo-7.home.arpa", "Living.Thermo.lan", "a.b.thermo.lan", "other.home.arpa", "thermo-7.home.arpa", "*.thermo.lan", "bad_name.thermo.lan",
	}}
	d := p.Admit(s, csr, now)
	start := time.Date(2026, 3, 1, 11, 0, 30, 0, time.UTC)
	want := Decision{
		Class: "thermostat",
		Rule:  "classes.thermostat.match.families",
		Profile: Profile{
			Class:      "thermostat",
			NotBefore:  start.Add(-2 * time.Minute),
			NotAfter:   start.Add(14 * 24 * time.Hour),
			DNSNames:   []string{"thermo-7.home.arpa", "living.thermo.lan"},
			ServerAuth: true,
		},
		Dropped: []string{"a.b.thermo.lan", "other.home.arpa", "*.thermo.lan", "bad_name.thermo.lan"},
	}
	if diff := cmp.Diff(want, d, cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "Reason" }, cmp.Ignore())); diff != "" {
		t.Errorf("Admit(thermostat) (-want +got):\n%s", diff)
	}
	if !strings.Contains(d.Reason, "DNS names left out (not allowed by classes.thermostat.dns_names): a.b.thermo.lan") {
		t.Errorf("Admit reason %q does not list the dropped names", d.Reason)
	}
	// The default class allows no DNS name at all.
	d = p.Admit(Subject{DeviceID: "plug"}, CSRInfo{KeyAlgorithm: KeyP256, Reason: CSREnroll, DNSNames: []string{"plug.lan"}}, now)
	if !d.Allowed() || d.Profile.DNSNames != nil || len(d.Dropped) != 1 || d.Profile.ServerAuth {
		t.Errorf("Admit(default class with DNS) = %+v, want admitted without names or serverAuth", d)
	}
}

func TestFilterNames(t *testing.T) {
	tests := []struct {
		patterns, requested []string
		device              string
		want                []string
	}{
		{[]string{"*.lan"}, []string{"a.lan", "a.b.lan", "lan", "A.LAN"}, "d", []string{"a.lan"}},
		{[]string{"{device}.home.arpa"}, []string{"cam-1.home.arpa", "cam-2.home.arpa"}, "Cam-1", []string{"cam-1.home.arpa"}},
		{[]string{"{device}.home.arpa"}, []string{"cam_1.home.arpa"}, "cam_1", nil},
		{[]string{"exact.lan"}, []string{"exact.lan", "exact.lan."}, "d", []string{"exact.lan"}},
		{nil, []string{"a.lan"}, "d", nil},
	}
	for _, tt := range tests {
		got, _ := filterNames(tt.patterns, tt.device, tt.requested)
		if !cmp.Equal(got, tt.want) {
			t.Errorf("filterNames(%q, %q, %q) = %q, want %q", tt.patterns, tt.device, tt.requested, got, tt.want)
		}
	}
}

func BenchmarkAdmit(b *testing.B) {
	p := examplePolicy(b)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s := Subject{DeviceID: "cam-1", Family: "acme-cam-v2"}
	csr := CSRInfo{KeyAlgorithm: KeyP256, Reason: CSRWindow, ReplacesSerial: "01", CurrentNotAfter: now.Add(time.Hour)}
	for b.Loop() {
		p.Admit(s, csr, now)
	}
}
