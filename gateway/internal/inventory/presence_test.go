package inventory

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// presenceRows returns the device's presence intervals as offsets from t0, oldest first (an
// open interval ends at -1).
func presenceRows(t *testing.T, s *Store, id string) [][2]time.Duration {
	t.Helper()
	var rows []struct{ StartAt, EndAt int64 }
	if err := s.read(t.Context()).Raw(`SELECT start_at, end_at FROM presence WHERE device_id = ? ORDER BY start_at`, id).
		Scan(&rows).Error; err != nil {
		t.Fatal(err)
	}
	out := [][2]time.Duration{}
	for _, r := range rows {
		end := time.Duration(-1)
		if r.EndAt != 0 {
			end = fromUnix(r.EndAt).Sub(t0)
		}
		out = append(out, [2]time.Duration{fromUnix(r.StartAt).Sub(t0), end})
	}
	return out
}

func TestPresenceHistory(t *testing.T) {
	type change struct {
		at     time.Duration // from t0
		online bool
	}
	h := time.Hour
	tests := []struct {
		name    string
		changes []change
		want    [][2]time.Duration
		// online within [t0+since, t0+now)
		since, now time.Duration
		wantOnline time.Duration
	}{
		{"one session", []change{{0, true}, {h, false}}, [][2]time.Duration{{0, h}}, -h, 2 * h, h},
		{"still online counts up to now", []change{{0, true}}, [][2]time.Duration{{0, -1}}, 0, 3 * h, 3 * h},
		{"a second online changes nothing", []change{{0, true}, {h, true}, {2 * h, false}}, [][2]time.Duration{{0, 2 * h}}, 0, 3 * h, 2 * h},
		{"a reconnection within a minute continues the interval", []change{{0, true}, {h, false}, {h + 30*time.Second, true}, {2 * h, false}},
			[][2]time.Duration{{0, 2 * h}}, 0, 3 * h, 2 * h},
		{"a later reconnection starts another", []change{{0, true}, {h, false}, {2 * h, true}, {3 * h, false}},
			[][2]time.Duration{{0, h}, {2 * h, 3 * h}}, 0, 4 * h, 2 * h},
		{"clipped to the period", []change{{0, true}, {4 * h, false}}, [][2]time.Duration{{0, 4 * h}}, h, 3 * h, 2 * h},
		{"offline without a session", []change{{h, false}}, [][2]time.Duration{}, 0, 2 * h, 0},
		{"old intervals dropped at the next disconnection", []change{{0, true}, {h, false}, {PresenceRetention + 2*h, true},
			{PresenceRetention + 3*h, false}}, [][2]time.Duration{{PresenceRetention + 2*h, PresenceRetention + 3*h}},
			PresenceRetention, PresenceRetention + 4*h, h},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t)
			mustIssue(t, s, issuance("plug-1", "01", "r1", t0))
			for _, c := range tt.changes {
				if err := s.SetOnline(t.Context(), "plug-1", c.online, t0.Add(c.at)); err != nil {
					t.Fatalf("SetOnline(%v at %s) = %v", c.online, c.at, err)
				}
			}
			if diff := cmp.Diff(tt.want, presenceRows(t, s, "plug-1")); diff != "" {
				t.Errorf("presence intervals (-want +got):\n%s", diff)
			}
			got, err := s.OnlineTime(t.Context(), t0.Add(tt.since), t0.Add(tt.now))
			if err != nil {
				t.Fatal(err)
			}
			if got["plug-1"] != tt.wantOnline {
				t.Errorf("OnlineTime(+%s, +%s) = %v, want plug-1 online %s", tt.since, tt.now, got, tt.wantOnline)
			}
		})
	}
}

// TestPresenceAfterRestart: at start ResetPresence ends the intervals a stopped hub left
// open when their device was last seen, with the online flags.
func TestPresenceAfterRestart(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	mustIssue(t, s, issuance("plug-1", "01", "r1", t0))
	mustIssue(t, s, issuance("plug-2", "02", "r2", t0))
	if err := s.SetOnline(ctx, "plug-1", true, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordHealth(ctx, "plug-1", Health{ReportedSerial: "01", At: t0.Add(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetOnline(ctx, "plug-2", true, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ResetPresence(ctx); err != nil || n != 2 {
		t.Fatalf("ResetPresence() = %d, %v, want 2 devices", n, err)
	}
	for id, want := range map[string][][2]time.Duration{"plug-1": {{0, 2 * time.Hour}}, "plug-2": {{time.Hour, time.Hour}}} {
		if diff := cmp.Diff(want, presenceRows(t, s, id)); diff != "" {
			t.Errorf("%s after ResetPresence (-want +got):\n%s", id, diff)
		}
	}
}

// TestSetOnlineUnknownDevice: no device, no history.
func TestSetOnlineUnknownDevice(t *testing.T) {
	s := openTest(t)
	if err := s.SetOnline(t.Context(), "ghost", true, t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetOnline(ghost) = %v, want %v", err, ErrNotFound)
	}
	if got := presenceRows(t, s, "ghost"); len(got) != 0 {
		t.Errorf("presence of an unknown device = %v, want none", got)
	}
}
