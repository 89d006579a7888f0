package renewal

import (
	"container/heap"
	"time"
)

// dueIndex is the scheduler's memory of when each device it tracks next needs a pass to
// look at it, so that a pass reads only those devices, not the whole inventory (issue 11:
// a pass costs in proportion to the devices due, not to the fleet).
//
// It is rebuilt by a full pass (the first one, and the first after the policy changed);
// every other pass looks at the devices whose time has come, the devices touched since the
// last pass (a commit, a failure, a reconnection, any change of the device's stored state:
// Scheduler.Touch), and the devices of campaigns in progress, and records their next times.
// A device's time is its window's end while idle (it becomes overdue then), its next retry
// or emergency while backing off, its next reminder for a manual device, and "every pass"
// while it is commanded or due and online (the in-flight count, the cap and the rate decide
// each pass). A due device that is offline waits for its reconnection (Touch). Nothing in
// the index is state that cannot be lost: a new Scheduler rebuilds it from the inventory.
//
// It is used under the Scheduler's mu only.
type dueIndex struct {
	at      map[string]time.Time // tracked device → when a pass must look at it (zero: only when touched)
	failing map[string]bool      // tracked devices in state failing
	q       wakeQueue            // the non-zero times of at, and older times no longer in at
}

func newDueIndex() *dueIndex {
	return &dueIndex{at: map[string]time.Time{}, failing: map[string]bool{}}
}

// set records that device id is tracked and next needs a look at t (zero: only when
// touched), and whether it is failing.
func (x *dueIndex) set(id string, t time.Time, failing bool) {
	if failing {
		x.failing[id] = true
	} else {
		delete(x.failing, id)
	}
	old, ok := x.at[id]
	x.at[id] = t
	if t.IsZero() || ok && old.Equal(t) {
		return
	}
	heap.Push(&x.q, wakeAt{t: t, id: id})
	if len(x.q) > 2*len(x.at)+1024 {
		x.compact()
	}
}

// remove forgets device id (no active certificate any more, quarantined, removed).
func (x *dueIndex) remove(id string) {
	delete(x.at, id)
	delete(x.failing, id)
}

// due removes and returns the devices whose time is at or before now. A device whose time
// came is looked at by the pass, which sets its next time.
func (x *dueIndex) due(now time.Time) []string {
	var ids []string
	for len(x.q) > 0 && !x.q[0].t.After(now) {
		w := heap.Pop(&x.q).(wakeAt)
		if t, ok := x.at[w.id]; ok && t.Equal(w.t) {
			x.at[w.id] = time.Time{} // until the pass sets it again
			ids = append(ids, w.id)
		}
	}
	return ids
}

// compact drops the queue's entries that no longer match a device's time.
func (x *dueIndex) compact() {
	q := x.q[:0]
	for _, w := range x.q {
		if t, ok := x.at[w.id]; ok && t.Equal(w.t) {
			q = append(q, w)
		}
	}
	clear(x.q[len(q):])
	x.q = q
	heap.Init(&x.q)
}

// wakeAt is one device's time in the queue.
type wakeAt struct {
	t  time.Time
	id string
}

// wakeQueue is a min-heap of times (container/heap).
type wakeQueue []wakeAt

func (q wakeQueue) Len() int           { return len(q) }
func (q wakeQueue) Less(i, j int) bool { return q[i].t.Before(q[j].t) }
func (q wakeQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *wakeQueue) Push(v any)        { *q = append(*q, v.(wakeAt)) }
func (q *wakeQueue) Pop() any {
	old := *q
	w := old[len(old)-1]
	old[len(old)-1] = wakeAt{}
	*q = old[:len(old)-1]
	return w
}
