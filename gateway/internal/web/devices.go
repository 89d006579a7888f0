package web

import (
	"context"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/protocol"
)

// devices serves the device list: search, filters, sort and paging (pageDevices).
func (s *server) devices(w http.ResponseWriter, r *http.Request) {
	now := s.cfg.Now()
	p, err := s.pageDevices(r.Context(), parseDeviceQuery(r.URL.Query().Get), now)
	if err != nil {
		s.cfg.Logger.Error("device list", "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, "The inventory could not be read: "+err.Error())
		return
	}
	completeFleet(p.Devices, s.cfg.Policy(), now)
	s.render(w, r, http.StatusOK, "devices.html", page{Title: "Devices", Nav: "devices", Now: now, Data: p})
}

// EventPageSize is the number of events on one page of a device's or the audit log's events.
const EventPageSize = 25

// renewAction says whether "Renew now" can work for a device, and if not, why and what to do
// instead.
type renewAction struct {
	OK   bool
	Why  string // when not OK
	Next string // a relative link to what to do instead, "" when nothing
}

// renewActionFor decides whether the hub can command a renewal of d: only a device with an
// agent that is not revoked can act on a renew command.
func renewActionFor(d fleetDevice) renewAction {
	switch {
	case d.State == inventory.StateQuarantined:
		return renewAction{Why: "This device's certificates are revoked: it can only come back with a new enrollment token.",
			Next: "enroll?id=" + url.QueryEscape(d.ID)}
	case d.Manual:
		return renewAction{Why: "This device has no agent: its certificate was installed by hand. Sign a new one with " +
			"hearth-gateway device sign and install it on the device."}
	case d.State == inventory.StateRemoved:
		return renewAction{Why: "This device was removed."}
	}
	return renewAction{OK: true}
}

// attemptView is one row of a device's attempts.
type attemptView struct {
	protocol.AttemptRecord
	Issue string // time to issue (or to fail)
	Total string // from the request to its outcome, "" while open
	Cause string // the error code, with what it means
}

// latencyText shows an issuance latency: sub-millisecond ones with two decimals, "—" when
// none was measured.
func latencyText(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%d ms", d/time.Millisecond)
	}
	return formatDuration(d)
}

// deviceView is the device page's data.
type deviceView struct {
	fleetDevice
	Device   protocol.DeviceRecord
	Certs    []protocol.CertificateRecord
	History  template.HTML
	Attempts []attemptView
	Events   []inventory.Event
	Older    int64 // the Before of the next page of events, 0 when none
	Newer    bool  // a page of events before this one exists
	Action   renewAction
	Renewed  string // the command id of a renewal just requested
	CSRF     string
}

func (s *server) device(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !s.exists(w, r, id) {
		return
	}
	v, err := s.deviceView(r.Context(), id, r)
	if err != nil {
		s.cfg.Logger.Error("device page", "device", id, "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, "The device could not be read: "+err.Error())
		return
	}
	title := v.ID
	if v.Name != "" {
		title = v.Name
	}
	s.render(w, r, http.StatusOK, "device.html", page{Title: title, Nav: "devices", Refresh: v.Older == 0 && !v.Newer, Data: v})
}

// judged reads one device with its active certificate and judges it (two queries).
func (s *server) judged(ctx context.Context, id string, now time.Time) (fleetDevice, error) {
	recs, err := s.cfg.Store.DeviceRecords(ctx, []string{id})
	if err != nil {
		return fleetDevice{}, err
	}
	if len(recs) == 0 {
		return fleetDevice{}, fmt.Errorf("device %q: %w", id, inventory.ErrNotFound)
	}
	d := judgeDevice(recs[0], s.cfg.Policy(), now)
	d.complete(s.cfg.Policy(), now)
	return d, nil
}

// deviceView gathers the device page: a constant number of queries.
func (s *server) deviceView(ctx context.Context, id string, r *http.Request) (deviceView, error) {
	now := s.cfg.Now()
	fd, err := s.judged(ctx, id, now)
	if err != nil {
		return deviceView{}, err
	}
	d, err := s.cfg.Admin.Get(ctx, id)
	if err != nil {
		return deviceView{}, err
	}
	v := deviceView{fleetDevice: fd, Device: d.Device, Certs: d.Certificates, Action: renewActionFor(fd), CSRF: s.csrf}
	if c := r.URL.Query().Get("renewed"); protocol.ValidateRequestID(c) == nil {
		v.Renewed = c
	}
	hist := make([]historyCert, 0, len(d.Certificates))
	for _, c := range d.Certificates {
		hist = append(hist, historyCert{Serial: c.Serial, Status: c.Status, NotBefore: c.NotBefore, NotAfter: c.NotAfter, ActivatedAt: c.ActivatedAt})
	}
	sortHistory(hist)
	v.History = historySVG(hist, now)
	for _, a := range d.Attempts {
		av := attemptView{AttemptRecord: a, Issue: latencyText(a.Latency), Cause: string(a.ErrorCode)}
		if info, ok := a.ErrorCode.Info(); ok && info.Description != "" {
			av.Cause += ": " + info.Description
		}
		if a.Outcome != inventory.OutcomeIssued && !a.FinishedAt.IsZero() && !a.StartedAt.IsZero() {
			if t := a.FinishedAt.Sub(a.StartedAt); t < time.Second {
				av.Total = "under 1 s"
			} else {
				av.Total = formatDuration(t)
			}
		}
		v.Attempts = append(v.Attempts, av)
	}
	before, _ := strconv.ParseInt(r.URL.Query().Get("before"), 10, 64)
	evs, err := s.cfg.Store.EventPage(ctx, inventory.EventQuery{DeviceID: id, Before: before, Limit: EventPageSize + 1})
	if err != nil {
		return deviceView{}, err
	}
	if len(evs) > EventPageSize {
		evs = evs[:EventPageSize]
		v.Older = evs[len(evs)-1].Seq
	}
	v.Events, v.Newer = evs, before > 0
	return v, nil
}

// sortHistory puts the newest certificate first.
func sortHistory(h []historyCert) {
	slices.SortStableFunc(h, func(a, b historyCert) int { return b.NotBefore.Compare(a.NotBefore) })
}
