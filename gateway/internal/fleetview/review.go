package fleetview

import (
	"container/heap"
	"time"
)

// maxReviewWait bounds the wait for the next review, so a clock step never delays one for
// long.
const maxReviewWait = time.Hour

// review is a moment at which a device's verdict changes by itself (monitor.Verdict.Until).
type review struct {
	at time.Time
	id string
}

// reviews is a min-heap of reviews by time. Entries are never updated in place: a device
// judged again pushes a new entry, and an entry that no longer matches the device's until is
// skipped when it comes up (lazy deletion), so the heap holds at most a few entries per
// device between compactions.
type reviews []review

func (r reviews) Len() int           { return len(r) }
func (r reviews) Less(i, j int) bool { return r[i].at.Before(r[j].at) }
func (r reviews) Swap(i, j int)      { r[i], r[j] = r[j], r[i] }
func (r *reviews) Push(x any)        { *r = append(*r, x.(review)) }
func (r *reviews) Pop() any {
	old := *r
	x := old[len(old)-1]
	*r = old[:len(old)-1]
	return x
}

// add schedules a review of id at at; a zero at schedules nothing.
func (r *reviews) add(id string, at time.Time) {
	if at.IsZero() {
		return
	}
	heap.Push(r, review{at: at, id: id})
}

// due pops the reviews due at now that still match a device of known, and returns their
// devices. It compacts the heap when stale entries outnumber the devices.
func (r *reviews) due(now time.Time, known map[string]*judged) []string {
	var ids []string
	for r.Len() > 0 && !(*r)[0].at.After(now) {
		e := heap.Pop(r).(review)
		if j, ok := known[e.id]; ok && j.until.Equal(e.at) {
			ids = append(ids, e.id)
		}
	}
	if r.Len() > 2*len(known)+64 {
		r.compact(known)
	}
	return ids
}

// compact drops the entries that no longer match their device.
func (r *reviews) compact(known map[string]*judged) {
	kept := (*r)[:0]
	for _, e := range *r {
		if j, ok := known[e.id]; ok && j.until.Equal(e.at) {
			kept = append(kept, e)
		}
	}
	*r = kept
	heap.Init(r)
}

// wait returns how long to wait from now for the next review (at most maxReviewWait).
func (r reviews) wait(now time.Time) time.Duration {
	if len(r) == 0 {
		return maxReviewWait
	}
	return max(0, min(r[0].at.Sub(now), maxReviewWait))
}
