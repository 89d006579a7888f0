package inventory

import (
	"context"
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
		{"Lifecycle", "SELECT serial, request_id, replaces FROM certificates WHERE " + activeOfDevice + " LIMIT 1", []any{"a"}},
		{"ActiveCertificate", "SELECT * FROM certificates WHERE " + activeOfDevice + " LIMIT 1", []any{"a"}},
		{"DeviceRecords, DevicePage", "SELECT " + strings.Join(certColumns, ", ") + " FROM certificates WHERE " +
			strings.Replace(activeOfDevices, "IN ?", "IN (?, ?, ?)", 1), []any{"a", "b", "c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := s.w.WithContext(ctx).Raw("EXPLAIN QUERY PLAN "+tc.sql, tc.args...).Rows()
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
			want := "SEARCH certificates USING INDEX certificates_one_active (device_id=?)"
			if len(plan) != 1 || plan[0] != want {
				t.Errorf("plan of %s:\n  %s\nwant the one line %q", tc.sql, strings.Join(plan, "\n  "), want)
			}
		})
	}
}
