package testkit

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// peerPackages names the Debian package of each peer program the tests run against.
// scripts/test.sh installs every one of them.
var peerPackages = map[string]string{
	"mosquitto":             "mosquitto",
	"mosquitto_pub":         "mosquitto-clients",
	"mosquitto_sub":         "mosquitto-clients",
	"openssl":               "openssl",
	"xz":                    "xz-utils",
	"apparmor_parser":       "apparmor",
	"unshare":               "util-linux",
	"chroot":                "coreutils",
	"ip":                    "iproute2",
	"aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu",
	"chromium":              "chromium",
	"initdb":                "postgresql",
}

// sbinDirs are searched after PATH: mosquitto and apparmor_parser live in /usr/sbin, which
// is not on an ordinary user's PATH; Debian keeps PostgreSQL's server programs in
// /usr/lib/postgresql/<major>/bin (the newest major installed wins).
var sbinDirs = []string{"/usr/sbin", "/sbin", "/usr/local/sbin"}

// postgresBinGlob matches the directories of Debian's PostgreSQL server programs.
const postgresBinGlob = "/usr/lib/postgresql/*/bin"

// RequirePeer returns the path of the program name, a real peer the test runs against
// (mosquitto, mosquitto_sub, mosquitto_pub, openssl, apparmor_parser, qemu-<arch>-static).
// When it is not installed, the test fails in CI (the environment variable CI is true, as
// .ci/run and most CI services set it), so that a missing peer can never pass unnoticed;
// elsewhere the test is skipped with the Debian package to install.
func RequirePeer(t testing.TB, name string) string {
	t.Helper()
	pkg, ok := peerPackages[name]
	if !ok && strings.HasPrefix(name, "qemu-") && strings.HasSuffix(name, "-static") {
		pkg, ok = "qemu-user-static", true
	}
	if !ok {
		t.Fatalf("RequirePeer(%q): not a known peer; add it to testkit's peerPackages and to scripts/test.sh", name)
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	dirs := sbinDirs
	if pg, _ := filepath.Glob(postgresBinGlob); len(pg) > 0 {
		slices.Reverse(pg)
		dirs = append(slices.Clip(dirs), pg...)
	}
	for _, dir := range dirs {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	if InCI() {
		t.Fatalf("%s is not installed, and in CI a missing peer is a failure: install the Debian package %s (scripts/test.sh does)", name, pkg)
	}
	t.Skipf("%s is not installed: apt-get install %s to run this test (in CI, CI=true, it fails instead)", name, pkg)
	return ""
}

// InCI reports whether the tests run in CI: the environment variable CI is set to a true
// value ("true", "1").
func InCI() bool {
	ci, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && ci
}
