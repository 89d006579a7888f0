package metrics

import (
	"fmt"
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/monitor"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
)

// BenchmarkScrape10k scrapes /metrics with 10,000 devices judged: memory only, no query.
func BenchmarkScrape10k(b *testing.B) {
	m := New(Config{Version: "bench"})
	pol := policy.Default()
	for i := range 10000 {
		r := inventory.DeviceRecord{
			Device: inventory.Device{ID: fmt.Sprintf("dev-%05d", i), Family: fmt.Sprintf("fam-%d", i%20), State: inventory.StateActive},
			Active: &inventory.Certificate{Serial: fmt.Sprintf("%x", i+1), Status: inventory.StatusActive, NotBefore: t0, NotAfter: t0.Add(30 * 24 * time.Hour)},
		}
		m.Judged(r, monitor.Judge(r.Device, r.Active, pol, t0), pol, t0)
	}
	h := m.Handler()
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
		io.Copy(io.Discard, w.Body)
	}
}
