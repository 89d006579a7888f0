package inventory

import (
	"context"
	"fmt"
	"slices"
)

// The fleet queries below load devices in batches, each with its active certificate, in a
// constant number of queries per batch: the hub's published view of the fleet and
// device/list must not cost one query per device (issue 10).

// MaxBatch is the most devices one DeviceRecords or DevicePage query reads. Larger requests
// are split; SQLite bounds the parameters of one statement.
const MaxBatch = 500

// DeviceRecord is a device with its active certificate (nil when it has none): what judging
// its health and showing it need. The certificate's PEM is not loaded.
type DeviceRecord struct {
	Device Device
	Active *Certificate
}

// DeviceFilter selects devices by stored fields; its zero value selects every device.
type DeviceFilter struct {
	State  string // only devices in this state
	Family string // only devices of this family
	Class  string // only devices of this policy class
	Online *bool  // only devices that are (true) or are not (false) online
}

// DeviceCounts counts the devices of the inventory.
type DeviceCounts struct {
	Total  int
	Online int
	States map[string]int // devices in each state; states without devices are absent
}

// certColumns are the certificate columns the fleet queries read: all but the PEM.
var certColumns = []string{"serial", "device_id", "not_before", "not_after", "issuer", "key_algorithm", "fingerprint",
	"status", "request_id", "replaces", "created_at", "activated_at", "revoked_at", "revoke_reason",
	"revoke_code", "superseded_at"}

// DeviceRecords returns the devices among ids that exist, sorted by id, each with its active
// certificate, in two queries per MaxBatch ids. Unknown ids are left out (a removed device);
// repeated ids count once.
func (s *Store) DeviceRecords(ctx context.Context, ids []string) ([]DeviceRecord, error) {
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	out := make([]DeviceRecord, 0, len(ids))
	for chunk := range slices.Chunk(ids, MaxBatch) {
		rows, err := scanRows[deviceRow](s.read(ctx).Raw(devicesByIDSQL, chunk))
		if err != nil {
			return nil, fmt.Errorf("load %d devices: %w", len(chunk), err)
		}
		recs, err := s.withActive(ctx, rows)
		if err != nil {
			return nil, err
		}
		out = append(out, recs...)
	}
	return out, nil
}

// DevicePage returns up to limit devices (at most MaxBatch) matching f whose id sorts after
// after ("" for the first page), in id order, each with its active certificate: two queries.
// A page shorter than limit is the last.
func (s *Store) DevicePage(ctx context.Context, f DeviceFilter, after string, limit int) ([]DeviceRecord, error) {
	limit = max(1, min(limit, MaxBatch))
	q := s.read(ctx).Where("id > ?", after)
	if f.State != "" {
		q = q.Where("state = ?", f.State)
	}
	if f.Family != "" {
		q = q.Where("family = ?", f.Family)
	}
	if f.Class != "" {
		q = q.Where("class = ?", f.Class)
	}
	if f.Online != nil {
		q = q.Where("online = ?", *f.Online)
	}
	rows, err := scanRows[deviceRow](q.Model(&deviceRow{}).Select(deviceColumns).Order("id").Limit(limit))
	if err != nil {
		return nil, fmt.Errorf("list devices after %q: %w", after, err)
	}
	return s.withActive(ctx, rows)
}

// withActive converts rows and attaches their active certificates, read in one query.
func (s *Store) withActive(ctx context.Context, rows []deviceRow) ([]DeviceRecord, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	// The partial index certificates_one_active serves this: one row per device at most.
	certs, err := scanRows[listedCertRow](s.read(ctx).Raw(activeOfDevicesSQL, ids))
	if err != nil {
		return nil, fmt.Errorf("active certificates of %d devices: %w", len(ids), err)
	}
	active := make(map[string]*Certificate, len(certs))
	for _, r := range certs {
		c := r.certificate()
		active[c.DeviceID] = &c
	}
	out := make([]DeviceRecord, len(rows))
	for i, r := range rows {
		d, err := r.device()
		if err != nil {
			return nil, err
		}
		out[i] = DeviceRecord{Device: d, Active: active[d.ID]}
	}
	return out, nil
}

// CountDevicesBy counts the devices in total, online and by state, in one aggregate query.
func (s *Store) CountDevicesBy(ctx context.Context) (DeviceCounts, error) {
	var rows []struct {
		State  string
		Online bool
		N      int
	}
	err := s.read(ctx).Raw(`SELECT state, online, COUNT(*) AS n FROM devices GROUP BY state, online`).Scan(&rows).Error
	if err != nil {
		return DeviceCounts{}, fmt.Errorf("count devices: %w", err)
	}
	c := DeviceCounts{States: map[string]int{}}
	for _, r := range rows {
		c.Total += r.N
		c.States[r.State] += r.N
		if r.Online {
			c.Online += r.N
		}
	}
	return c, nil
}
