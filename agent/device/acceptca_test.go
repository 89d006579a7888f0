package device

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/clock"
	"github.com/hearth-pki/hearth/agent/internal/testkit"
)

func subjects(cs []*x509.Certificate) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Subject.CommonName
	}
	return out
}

// TestAcceptCA: the agent moves its pin to a new root only with a valid cross-signature by
// the pinned root (issue 12); a forged or missing one, an impostor root, an expired
// cross-certificate or a stray root are refused and change nothing.
func TestAcceptCA(t *testing.T) {
	now := time.Now()
	r := clock.Reading{Now: now, Known: true, Trusted: true}
	old := testkit.NewCA(t, "Old")                            // pinned
	next := testkit.NewCA(t, "New")                           // the hub's new root, with an intermediate under it
	forger := testkit.NewCA(t, "Forger")                      // anyone else
	second := old.NewIntermediate(t, "Old Intermediate CA 2") // an intermediate rotation under the old root
	cross := old.CrossSign(t, next, now.Add(-time.Hour), now.Add(24*time.Hour))
	forged := forger.CrossSign(t, next, now.Add(-time.Hour), now.Add(24*time.Hour))
	expired := old.CrossSign(t, next, now.Add(-48*time.Hour), now.Add(-time.Hour))
	impostor := testkit.Impostor(t, next)
	crossImpostorKey := old.CrossSign(t, next, now.Add(-time.Hour), now.Add(24*time.Hour))
	pinned := []*x509.Certificate{old.Intermediate, old.Root}
	moved := []*x509.Certificate{next.Intermediate, cross, next.Root, old.Root}

	tests := []struct {
		name   string
		pinned []*x509.Certificate
		msg    []*x509.Certificate
		want   []string // nil: refused
	}{
		{"same chain", pinned, []*x509.Certificate{old.Intermediate, old.Root}, []string{"Old Intermediate CA", "Old Root CA"}},
		{"intermediate rotation", pinned, []*x509.Certificate{second, old.Intermediate, old.Root},
			[]string{"Old Intermediate CA 2", "Old Intermediate CA", "Old Root CA"}},
		{"root rotation cross-signed by the pinned root", pinned, moved,
			[]string{"New Intermediate CA", "New Root CA", "New Root CA", "Old Root CA"}},
		{"root rotation without the old root in the message", pinned, []*x509.Certificate{next.Intermediate, cross, next.Root},
			[]string{"New Intermediate CA", "New Root CA", "New Root CA"}},
		{"the old root dropped once moved", moved, []*x509.Certificate{next.Intermediate, next.Root}, []string{"New Intermediate CA", "New Root CA"}},
		{"cross-signature by another root", pinned, []*x509.Certificate{next.Intermediate, forged, next.Root, old.Root}, nil},
		{"no cross-signature", pinned, []*x509.Certificate{next.Intermediate, next.Root, old.Root}, nil},
		{"expired cross-certificate", pinned, []*x509.Certificate{next.Intermediate, expired, next.Root, old.Root}, nil},
		{"impostor root with the cross-signed subject", pinned, []*x509.Certificate{crossImpostorKey, impostor.Root, old.Root}, nil},
		{"a foreign chain", pinned, []*x509.Certificate{forger.Intermediate, forger.Root}, nil},
		{"an intermediate of no root taken", pinned, []*x509.Certificate{forger.Intermediate, old.Intermediate, old.Root}, nil},
		{"a leaf", pinned, []*x509.Certificate{old.Issue(t, testkit.NewKey(t).Public(), "dev", now.Add(-time.Minute), now.Add(time.Hour)), old.Root}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := acceptCA(tt.msg, tt.pinned, r)
			if tt.want == nil {
				if err == nil {
					t.Fatalf("acceptCA(%v) = %v, want refused", subjects(tt.msg), subjects(got))
				}
				return
			}
			if err != nil {
				t.Fatalf("acceptCA(%v) = %v, want %v", subjects(tt.msg), err, tt.want)
			}
			if g := subjects(got); len(g) != len(tt.want) || !equalStrings(g, tt.want) {
				t.Errorf("acceptCA(%v) = %v, want %v", subjects(tt.msg), g, tt.want)
			}
		})
	}
}

func equalStrings(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return len(a) == len(b)
}

// FuzzAcceptCA feeds CA messages to the decoder and the pin decision: junk never panics, and
// whatever is taken keeps a root pinned or cross-signed by the pinned one.
func FuzzAcceptCA(f *testing.F) {
	old, next := testkit.NewCA(f, "Old"), testkit.NewCA(f, "New")
	now := time.Now()
	cross := old.CrossSign(f, next, now.Add(-time.Hour), now.Add(time.Hour))
	f.Add(testkit.PEM(next.Intermediate, cross, next.Root, old.Root))
	f.Add(testkit.PEM(next.Intermediate, next.Root, old.Root))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	pinned := []*x509.Certificate{old.Intermediate, old.Root}
	r := clock.Reading{Now: now, Known: true, Trusted: true}
	f.Fuzz(func(t *testing.T, raw []byte) {
		chain, err := parseChain(raw)
		if err != nil {
			return
		}
		got, err := acceptCA(chain, pinned, r)
		if err != nil {
			return
		}
		for _, c := range got {
			if selfSigned(c) && !c.Equal(old.Root) && !crossSigned(c, got, pinned, r) {
				t.Fatalf("acceptCA took root %q without a cross-signature", c.Subject.CommonName)
			}
		}
	})
}
