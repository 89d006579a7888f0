package access

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/rate"
)

// SaveEvery is how often Run stores the lockout's changes: a failure is in memory at once
// and in the inventory within SaveEvery, so a flood of bad logins costs one write a second
// however many there are. A hub killed between two saves forgets at most that second's
// failures; a stopped one (Run's context ending) saves them first.
const SaveEvery = time.Second

// The inventory's names for the lockout's three counts.
const (
	kindSource = "source"
	kindDevice = "device"
	kindUser   = "user"
)

func (c *Checker) counts() map[string]*rate.Backoff {
	m := map[string]*rate.Backoff{kindSource: c.sources, kindDevice: c.ids, kindUser: c.names}
	for kind, b := range c.kept {
		m[kind] = b
	}
	return m
}

// Keep adds another count of failed logins the hub keeps across restarts with the
// lockout's, under kind (the dashboard's login throttle: "dashboard"; not one of "source",
// "device", "user"). Call it before Load and Run.
func (c *Checker) Keep(kind string, b *rate.Backoff) {
	if c.kept == nil {
		c.kept = map[string]*rate.Backoff{}
	}
	c.kept[kind] = b
}

// Load restores the lockout the inventory kept (SaveLockouts), so a restart does not
// forgive a source, a device id or a user name its failures. Call it before the broker
// accepts logins.
func (c *Checker) Load(ctx context.Context) error {
	now := c.now()
	stored, err := c.store.Lockouts(ctx, now)
	if err != nil {
		return fmt.Errorf("restore the login lockout: %w", err)
	}
	byKind := map[string][]rate.Entry{}
	for _, l := range stored {
		byKind[l.Kind] = append(byKind[l.Kind], rate.Entry{Key: l.Key, Count: l.Count, Last: l.Last, Until: l.Until, Expires: l.Expires})
	}
	for kind, b := range c.counts() {
		b.Restore(byKind[kind], now)
	}
	return nil
}

// Save stores the failures counted and reset since the last Save, and drops the expired ones
// from the inventory. Changes a failed Save could not store are stored by the next (before
// the newer ones, which win).
func (c *Checker) Save(ctx context.Context) error {
	c.saving.Lock()
	defer c.saving.Unlock()
	changed := c.unsaved
	for kind, b := range c.counts() {
		for _, e := range b.Changes() {
			changed = append(changed, inventory.Lockout{Kind: kind, Key: e.Key, Count: e.Count, Last: e.Last, Until: e.Until, Expires: e.Expires})
		}
	}
	if len(changed) == 0 && !c.dueSweep() {
		return nil
	}
	if err := c.store.SaveLockouts(ctx, changed, c.now()); err != nil {
		c.unsaved = changed
		return err
	}
	c.unsaved = nil
	return nil
}

// dueSweep reports whether the expired entries should be dropped from the inventory although
// nothing changed: once an hour.
func (c *Checker) dueSweep() bool {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.swept) < time.Hour {
		return false
	}
	c.swept = now
	return true
}

// SetLogger sets where Run reports a failed save (default: nowhere).
func (c *Checker) SetLogger(log *slog.Logger) { c.log = log }

// Run saves the lockout every SaveEvery until ctx ends, then once more with a fresh timeout.
// A failed save is logged and retried at the next.
func (c *Checker) Run(ctx context.Context) error {
	log := c.log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(SaveEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := c.Save(sctx); err != nil {
				log.Error("login lockout not saved", "err", err)
			}
			return nil
		case <-t.C:
			if err := c.Save(ctx); err != nil && ctx.Err() == nil {
				log.Error("login lockout not saved", "err", err)
			}
		}
	}
}
