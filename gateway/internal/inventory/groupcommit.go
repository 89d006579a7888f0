package inventory

import (
	"context"
	"fmt"
	"sync"

	"gorm.io/gorm"
)

// maxGroup bounds the writes one group commit carries.
const maxGroup = 256

// committer is group commit for the writer connection: writes that arrive while a
// transaction is committing wait, and the next transaction carries all of them, each inside
// its own SAVEPOINT, with one COMMIT — hence one sync of the WAL (synchronous=FULL) for the
// group instead of one each. A write that fails is rolled back to its savepoint alone and
// gets its error; the others commit together. A write returns only once the COMMIT that
// carries it returned: what it wrote is on disk before its caller acknowledges anything
// (issue 11: an acknowledged commit is durable). If the COMMIT fails, every write of the
// group gets the error and none of them was written.
//
// There is no goroutine: the first writer to find the connection idle leads, commits the
// queue (its own write first), and hands the lead to the first writer queued meanwhile.
type committer struct {
	mu    sync.Mutex
	busy  bool   // a leader is committing
	queue []*job // writes waiting for the next group
}

// job is one write transaction waiting for its group.
type job struct {
	ctx  context.Context
	fn   func(tx *gorm.DB) error
	err  error
	done chan struct{} // closed once committed or failed
	lead chan struct{} // closed when this job's goroutine is to lead the next group
}

// write runs fn in an IMMEDIATE transaction on the writer connection, grouped with the
// writes that arrive meanwhile (see committer), and returns once that transaction
// committed or failed.
func (s *Store) write(ctx context.Context, fn func(tx *gorm.DB) error) error {
	c := &s.gc
	j := &job{ctx: ctx, fn: s.lockedWrite(ctx, fn), done: make(chan struct{}), lead: make(chan struct{})}
	c.mu.Lock()
	c.queue = append(c.queue, j)
	if c.busy {
		c.mu.Unlock()
		select {
		case <-j.done:
			return j.err
		case <-j.lead:
		}
		c.mu.Lock()
	}
	c.busy = true
	n := min(len(c.queue), maxGroup)
	group := c.queue[:n:n]
	c.queue = c.queue[n:]
	c.mu.Unlock()

	defer func() {
		c.mu.Lock()
		if len(c.queue) > 0 {
			close(c.queue[0].lead)
		} else {
			c.busy = false
		}
		c.mu.Unlock()
	}()
	s.commitGroup(group)
	<-j.done
	return j.err
}

// commitGroup runs group's writes in one transaction and closes their done channels.
func (s *Store) commitGroup(group []*job) {
	defer func() {
		for _, j := range group {
			select {
			case <-j.done:
			default:
				if j.err == nil {
					j.err = fmt.Errorf("inventory write: group commit interrupted")
				}
				close(j.done)
			}
		}
	}()
	if len(group) == 1 {
		j := group[0]
		j.err = s.w.WithContext(j.ctx).Transaction(j.fn)
		close(j.done)
		return
	}
	// The transaction outlives a leader whose context ends: it carries other writes.
	ctx := context.WithoutCancel(group[0].ctx)
	ran := make([]bool, len(group))
	err := s.w.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		for i, j := range group {
			if err := j.ctx.Err(); err != nil {
				j.err = err
				continue
			}
			// The savepoints are prepared statements (stmts): gorm building and SQLite
			// compiling three statements for every grouped write showed in the storm's
			// profile (issue 11).
			if err := s.exec(ctx, tx, s.st.savepoint); err != nil {
				return err
			}
			if err := j.fn(tx.WithContext(j.ctx)); err != nil {
				j.err = err
				if err := s.exec(ctx, tx, s.st.rollbackTo); err != nil {
					return err
				}
			} else {
				ran[i] = true
			}
			if err := s.exec(ctx, tx, s.st.release); err != nil {
				return err
			}
		}
		return nil
	})
	for i, j := range group {
		if err != nil && (j.err == nil || ran[i]) {
			j.err = err
		}
		close(j.done)
	}
}
