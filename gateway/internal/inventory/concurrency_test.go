package inventory

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestConcurrentIssueAndActivate runs 8 goroutines doing read-then-write transactions
// (RecordIssuance reads the device and the chain head; Activate reads the certificates) plus
// plain reads, spread over two Stores on the same file as the hub and a CLI process would be.
// None may fail with "database is locked", and the result must be consistent.
func TestConcurrentIssueAndActivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.db")
	var stores []*Store
	for range 2 {
		s, err := Open(t.Context(), path)
		if err != nil {
			t.Fatalf("Open() = %v", err)
		}
		defer s.Close()
		stores = append(stores, s)
	}
	const workers, rounds = 8, 15
	errs := make(chan error, workers*rounds)
	var wg sync.WaitGroup
	for w := range workers {
		s := stores[w%2]
		wg.Go(func() {
			dev := fmt.Sprintf("dev-%d", w)
			for i := range rounds {
				at := t0.Add(time.Duration(i) * time.Minute)
				serial := fmt.Sprintf("%02x%02x", w, i)
				in := issuance(dev, serial, fmt.Sprintf("r%d", i), at)
				if err := s.RecordIssuance(t.Context(), in); err != nil {
					errs <- err
					continue
				}
				if _, err := s.ActiveCertificate(t.Context(), dev); err != nil && i > 0 {
					errs <- err
				}
				if _, _, err := s.Activate(t.Context(), dev, serial, at); err != nil {
					errs <- err
				}
				if _, err := s.Devices(t.Context()); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent operation: %v", err)
	}
	s := stores[0]
	for w := range workers {
		dev := fmt.Sprintf("dev-%d", w)
		cs, err := s.Certificates(t.Context(), dev)
		if err != nil {
			t.Fatal(err)
		}
		active := 0
		for _, c := range cs {
			if c.Status == StatusActive {
				active++
			}
		}
		if len(cs) != rounds || active != 1 {
			t.Errorf("%s: %d certificates with %d active, want %d with 1", dev, len(cs), active, rounds)
		}
	}
	evs, _ := s.Events(t.Context(), EventFilter{})
	if want := 2 * workers * rounds; len(evs) != want {
		t.Errorf("events = %d, want %d", len(evs), want)
	}
	if err := s.VerifyAudit(t.Context()); err != nil {
		t.Errorf("VerifyAudit() = %v", err)
	}
}
