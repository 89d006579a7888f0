package hub

import (
	"fmt"
	"sync"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/broker"
	"github.com/hearth-pki/hearth/gateway/internal/rate"
	"github.com/hearth-pki/hearth/protocol"
)

// Refused enrollment logins published on bridge/event per second at most (and in a burst):
// a flood of bad tokens must not become a flood of events.
const (
	refusalEventRate  = 5
	refusalEventBurst = 20
)

// loginEvents turns the broker's enrollment logins into bridge events (issue 16): every
// accepted login, refusals rate-limited, each refusal published counting those left out
// before it.
type loginEvents struct {
	notify func(protocol.Event)
	now    func() time.Time
	limit  *rate.Limiter

	mu         sync.Mutex
	suppressed int
}

func newLoginEvents(notify func(protocol.Event), now func() time.Time) *loginEvents {
	return &loginEvents{notify: notify, now: now, limit: rate.New(refusalEventRate, refusalEventBurst)}
}

// login is the broker's Config.Logins.
func (l *loginEvents) login(in broker.Login) {
	now := l.now().UTC()
	if in.Refused == "" {
		l.notify(protocol.Event{V: protocol.Version, Type: protocol.EventEnrollmentLogin, Time: now, DeviceID: in.DeviceID,
			Message: fmt.Sprintf("%s logged in with its enrollment token from %s", in.DeviceID, in.Source),
			Data:    map[string]string{"source": in.Source}})
		return
	}
	if ok, _ := l.limit.Allow(now); !ok {
		l.mu.Lock()
		l.suppressed++
		l.mu.Unlock()
		return
	}
	l.mu.Lock()
	n := l.suppressed
	l.suppressed = 0
	l.mu.Unlock()
	info, _ := in.Refused.Info()
	data := map[string]string{"code": string(in.Refused), "source": in.Source}
	msg := fmt.Sprintf("enrollment of %s from %s refused (%s): %s", in.DeviceID, in.Source, in.Refused, info.Description)
	if n > 0 {
		data["suppressed"] = fmt.Sprint(n)
		msg += fmt.Sprintf("; %d more refusals were not published", n)
	}
	l.notify(protocol.Event{V: protocol.Version, Type: protocol.EventEnrollmentRefused, Time: now, DeviceID: in.DeviceID,
		Message: protocol.ClipText(msg), Data: data})
}
