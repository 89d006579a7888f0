package inventory

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestActiveCertificateQueriesUseTheOneActiveIndex checks SQLite's plan of every query that
// finds active certificates by device (the commit, a device's lifecycle, the fleet view's
// batches): each must search the partial unique index certificates_one_active by device, not
// step through an index of every active certificate in the fleet (issue 11).
func TestActiveCertificateQueriesUseTheOneActiveIndex(t *testing.T) {
	if onPostgres() {
		t.Skip("EXPLAIN QUERY PLAN is SQLite's; PostgreSQL plans tables of a test's size with sequential scans")
	}
	s := openTest(t)
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	// A few devices with active certificates, so the plans are those of a populated table.
	for _, id := range []string{"a", "b", "c"} {
		if err := s.RecordIssuance(ctx, issuance(id, "0"+id, "req-"+id, now)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Activate(ctx, id, "0"+id, now); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, sql string
		args      []any
	}{
		{"commit: the certificate it supersedes (prepared)", activeCertSQL, []any{"a"}},
		{"Lifecycle (prepared)", lifeActiveSQL, []any{"a"}},
		{"ActiveCertificate", "SELECT * FROM certificates WHERE " + activeOfDevice + " LIMIT 1", []any{"a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := []string{"SEARCH certificates USING INDEX certificates_one_active (device_id=?)"}
			if plan := explain(t, s, tc.sql, tc.args...); !slices.Equal(plan, want) {
				t.Errorf("plan of %s:\n  %s\nwant\n  %s", tc.sql, strings.Join(plan, "\n  "), strings.Join(want, "\n  "))
			}
		})
	}
	// DeviceRecords and DevicePage: a batch of up to MaxBatch devices, a lookup per device.
	for _, n := range []int{1, 3, MaxBatch} {
		t.Run(fmt.Sprintf("DeviceRecords, DevicePage: %d devices", n), func(t *testing.T) {
			ids := make([]any, n)
			for i := range ids {
				ids[i] = fmt.Sprintf("dev-%d", i)
			}
			q := strings.Replace(activeOfDevicesSQL, "IN ?", "IN (?"+strings.Repeat(", ?", n-1)+")", 1)
			want := []string{"SEARCH d USING COVERING INDEX sqlite_autoindex_devices_1 (id=?)",
				"SEARCH c USING INDEX certificates_one_active (device_id=?)"}
			if plan := explain(t, s, q, ids...); !slices.Equal(plan, want) {
				t.Errorf("plan:\n  %s\nwant\n  %s", strings.Join(plan, "\n  "), strings.Join(want, "\n  "))
			}
		})
	}
}

// explain returns the details of SQLite's plan of q, one line per step.
func explain(t *testing.T, s *Store, q string, args ...any) []string {
	t.Helper()
	rows, err := s.w.Raw("EXPLAIN QUERY PLAN "+q, args...).Rows()
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return plan
}
