package renewal

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

// Threshold labels of reminder events (data "threshold").
const (
	// ThresholdWindow: the certificate's renewal window opened.
	ThresholdWindow = "window"
	// ThresholdExpired: the certificate expired.
	ThresholdExpired = "expired"
)

// mark is one reminder threshold of a certificate.
type mark struct {
	at    time.Time
	label string // ThresholdWindow, ThresholdExpired, or the lead time before expiry ("7d")
}

// marks returns the reminder thresholds of a certificate with window w, in time order: the
// window's start and each configured lead time before expiry that falls after not-before.
// Thresholds at the same instant are one reminder.
func (s *Scheduler) marks(c inventory.Certificate, w policy.Window) []mark {
	ms := []mark{{at: w.Start, label: ThresholdWindow}}
	for _, lead := range s.cfg.ReminderLeads {
		at := w.Expiry.Add(-lead)
		if lead < 0 || at.Before(c.NotBefore) {
			continue
		}
		label := ThresholdExpired
		if lead > 0 {
			label = leadLabel(lead)
		}
		ms = append(ms, mark{at: at, label: label})
	}
	slices.SortStableFunc(ms, func(a, b mark) int { return a.at.Compare(b.at) })
	return slices.CompactFunc(ms, func(a, b mark) bool { return a.at.Equal(b.at) })
}

// leadLabel writes a lead time as days when it is whole days ("7d"), else as a Go duration.
func leadLabel(d time.Duration) string {
	const day = 24 * time.Hour
	if d%day == 0 {
		return strconv.Itoa(int(d/day)) + "d"
	}
	return d.String()
}

// remind sends a device without an agent the reminders whose thresholds have passed, each
// once. NextAttemptAt holds the next threshold not yet reminded (zero: all done); a new
// certificate (a new window) starts over. When the hub was down across several thresholds,
// only the latest is sent.
func (p *pass) remind(d *device) {
	st, w, now := &d.st, d.win, p.now
	ms := p.s.marks(d.cert, w)
	if !st.WindowStart.Equal(w.Start) || !st.WindowEnd.Equal(w.End) {
		*st = inventory.RenewalStatus{State: inventory.RenewalIdle, WindowStart: w.Start, WindowEnd: w.End,
			NextAttemptAt: ms[0].at}
	}
	due := st.NextAttemptAt
	if due.IsZero() {
		return
	}
	if now.Before(due) {
		p.wake(due)
		return
	}
	last, next := -1, time.Time{}
	for i, m := range ms {
		if now.Before(m.at) {
			next = m.at
			break
		}
		last = i
	}
	st.NextAttemptAt = next
	p.wake(next)
	if last < 0 || ms[last].at.Before(due) {
		return // reminded already: the thresholds moved (a new ReminderLeads)
	}
	m := ms[last]
	st.State = inventory.RenewalDue
	var msg string
	switch m.label {
	case ThresholdWindow:
		msg = fmt.Sprintf("certificate %s of %s has no agent to renew it: its renewal window opened at %s; it expires at %s",
			d.cert.Serial, d.dev.ID, stamp(w.Start), stamp(w.Expiry))
	case ThresholdExpired:
		msg = fmt.Sprintf("certificate %s of %s expired at %s: install a new one", d.cert.Serial, d.dev.ID, stamp(w.Expiry))
	default:
		msg = fmt.Sprintf("certificate %s of %s expires in %s, at %s: renew it by hand", d.cert.Serial, d.dev.ID,
			m.label, stamp(w.Expiry))
	}
	p.rep.Reminders++
	p.s.event(p.ctx, inventory.Event{Time: now, Kind: protocol.EventRenewalReminder, DeviceID: d.dev.ID, Message: msg,
		Data: map[string]string{"serial": d.cert.Serial, "threshold": m.label, "expires": stamp(w.Expiry)}}, true)
}
