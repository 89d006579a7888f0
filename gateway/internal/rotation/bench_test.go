package rotation

import (
	"fmt"
	"testing"
)

// BenchmarkRotationCheck is one check of a rotation under way over a fleet of 2,000 devices
// still on the previous intermediate: "kept" as every check between counts runs (the count
// kept from the commits), "counted" as one that counts the inventory (at the start, every
// RecountEvery, and at zero), which the check did every time before.
func BenchmarkRotationCheck(b *testing.B) {
	const devices = 2000
	f := newFixture(b)
	for i := range devices {
		f.enroll(b, fmt.Sprintf("dev-%04d", i), 0)
	}
	r := f.rotator(b)
	if _, err := r.Rotate(b.Context(), Request{}); err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"kept", "counted"} {
		b.Run(mode, func(b *testing.B) {
			for b.Loop() {
				if mode == "counted" {
					r.left.Store(-1)
				}
				r.mu.Lock()
				rec, err := r.check(b.Context())
				r.mu.Unlock()
				if err != nil || rec.Remaining != devices {
					b.Fatalf("check() = %d remaining, %v", rec.Remaining, err)
				}
			}
		})
	}
}
