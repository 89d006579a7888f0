package policy

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDiff(t *testing.T) {
	before := examplePolicy(t)
	after := mustParse(t, `
backdate: 1m
classes:
  - name: default
    lifetime: 14d
  - name: thermostat
    match: {families: [thermo-x]}
    server_auth: true
    dns_names: ["{device}.home.arpa", "*.thermo.lan"]
    priority: 60
  - name: camera
    match:
      families: [acme-cam-v2, acme-cam-v3]
      tags: [outdoor]
    keys: [p256]
    renew_at: 0.5
    jitter: 0.2
  - name: doorbell
    match: {families: [ring-ish]}
    lifetime: 3d
  - name: high-risk
    match: {tags: [lock, alarm]}
`)
	want := []string{
		"backdate: 2m -> 1m",
		"classes.camera: renew_before 3d -> renew_at 0.5",
		"classes.legacy: removed",
		"classes.doorbell: added (match {families [ring-ish]}; lifetime 3d)",
		"classes: order changed from [default, camera, thermostat, high-risk] to [default, thermostat, camera, high-risk]",
	}
	if diff := cmp.Diff(want, Diff(before, after)); diff != "" {
		t.Errorf("Diff (-want +got):\n%s", diff)
	}
	if d := Diff(before, before); len(d) != 0 {
		t.Errorf("Diff(p, p) = %q, want nothing", d)
	}

	changed := Default()
	changed.Classes[1].Lifetime *= 2
	changed.Classes[1].Keys = append(changed.Classes[1].Keys, KeyRule{Algorithm: KeyRSA, MinBits: 3072})
	changed.Classes[1].Priority = 90
	got := Diff(nil, changed)
	want = []string{
		"classes.high-risk.keys: [p256, p384, ed25519] -> [p256, p384, ed25519, rsa3072]",
		"classes.high-risk.lifetime: 7d -> 14d",
		"classes.high-risk.priority: high -> 90",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Diff(nil, changed) (-want +got):\n%s", diff)
	}
}

func TestHash(t *testing.T) {
	a := Default().Hash()
	if !strings.HasPrefix(a, "sha256:") || len(a) != len("sha256:")+64 {
		t.Fatalf("Hash() = %q, want sha256:<64 hex>", a)
	}
	// The same settings written differently hash the same.
	b := mustParse(t, "backdate: 60s\nclasses:\n  - name: default\n    lifetime: 720h\n    renew_at: 0.6666666666666666\n").Hash()
	if a != b {
		t.Errorf("Hash of an equivalent policy = %s, want %s", b, a)
	}
	p := Default()
	p.Classes[0].Jitter = 0.2
	if p.Hash() == a {
		t.Errorf("Hash() did not change with the jitter")
	}
}
