package inventory

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/hearth-pki/hearth/protocol"
)

// Proposal is a change waiting for a second admin (issue 15, change approval): Kind says
// what it changes ("policy"), Content is the change itself (the policy's YAML), Hash its
// identity, BaseHash what was in force when it was proposed, Canary the class it is tried on
// first (empty: the whole fleet). State is open until an admin other than ProposedBy
// approves it (applied) or anyone rejects it (rejected).
type Proposal struct {
	ID         string
	Kind       string
	Content    string
	Hash       string
	BaseHash   string
	Canary     string
	Summary    string
	ProposedBy string
	ProposedAt time.Time
	State      string
	DecidedBy  string
	DecidedAt  time.Time
}

// Proposal states.
const (
	ProposalOpen     = "open"
	ProposalApplied  = "applied"
	ProposalRejected = "rejected"
)

// ErrProposalClosed reports a decision on a proposal that is no longer open.
var ErrProposalClosed = errors.New("proposal already decided")

type proposalRow struct {
	ID         string `gorm:"column:id;primaryKey"`
	Kind       string `gorm:"column:kind"`
	Content    string `gorm:"column:content"`
	Hash       string `gorm:"column:hash"`
	BaseHash   string `gorm:"column:base_hash"`
	Canary     string `gorm:"column:canary"`
	Summary    string `gorm:"column:summary"`
	ProposedBy string `gorm:"column:proposed_by"`
	ProposedAt int64  `gorm:"column:proposed_at"`
	State      string `gorm:"column:state"`
	DecidedBy  string `gorm:"column:decided_by"`
	DecidedAt  int64  `gorm:"column:decided_at"`
}

func (proposalRow) TableName() string { return "proposals" }

func (r proposalRow) proposal() Proposal {
	return Proposal{ID: r.ID, Kind: r.Kind, Content: r.Content, Hash: r.Hash, BaseHash: r.BaseHash, Canary: r.Canary,
		Summary: r.Summary, ProposedBy: r.ProposedBy, ProposedAt: fromUnix(r.ProposedAt), State: r.State,
		DecidedBy: r.DecidedBy, DecidedAt: fromUnix(r.DecidedAt)}
}

// CreateProposal stores an open proposal and appends its protocol.EventChangeProposed
// event, in one transaction. ID, Kind, Content, ProposedBy and ProposedAt are required.
func (s *Store) CreateProposal(ctx context.Context, p Proposal) error {
	if p.ID == "" || p.Kind == "" || p.Content == "" || p.ProposedBy == "" || p.ProposedAt.IsZero() {
		return invalidf("proposal needs an id, a kind, content, a proposer and a time")
	}
	if err := checkText(p.ID, p.Kind, p.Content, p.Summary, p.ProposedBy, p.Canary); err != nil {
		return err
	}
	err := s.write(ctx, func(tx *gorm.DB) error {
		r := proposalRow{ID: p.ID, Kind: p.Kind, Content: p.Content, Hash: p.Hash, BaseHash: p.BaseHash, Canary: p.Canary,
			Summary: p.Summary, ProposedBy: p.ProposedBy, ProposedAt: unix(p.ProposedAt), State: ProposalOpen}
		if err := tx.Create(&r).Error; err != nil {
			return err
		}
		_, err := s.appendEvent(ctx, tx, Event{Time: p.ProposedAt, Kind: protocol.EventChangeProposed, Actor: p.ProposedBy,
			Message: protocol.Clip(p.Summary, 4000), Data: map[string]string{"id": p.ID, "kind": p.Kind, "hash": p.Hash, "canary": p.Canary}})
		return err
	})
	if err != nil {
		return fmt.Errorf("create proposal %s: %w", p.ID, err)
	}
	return nil
}

// Proposal returns the proposal with the id, or ErrNotFound.
func (s *Store) Proposal(ctx context.Context, id string) (Proposal, error) {
	var rows []proposalRow
	if err := s.read(ctx).Where("id = ?", id).Limit(1).Find(&rows).Error; err != nil {
		return Proposal{}, fmt.Errorf("proposal %s: %w", id, err)
	}
	if len(rows) == 0 {
		return Proposal{}, fmt.Errorf("proposal %s: %w", id, ErrNotFound)
	}
	return rows[0].proposal(), nil
}

// Proposals returns the open proposals, oldest first, and the last limit decided ones.
func (s *Store) Proposals(ctx context.Context, limit int) ([]Proposal, error) {
	var open, decided []proposalRow
	if err := s.read(ctx).Where("state = ?", ProposalOpen).Order("proposed_at, id").Find(&open).Error; err != nil {
		return nil, fmt.Errorf("proposals: %w", err)
	}
	if err := s.read(ctx).Where("state <> ?", ProposalOpen).Order("decided_at DESC, id").Limit(limit).Find(&decided).Error; err != nil {
		return nil, fmt.Errorf("proposals: %w", err)
	}
	out := make([]Proposal, 0, len(open)+len(decided))
	for _, r := range append(open, decided...) {
		out = append(out, r.proposal())
	}
	return out, nil
}

// DecideProposal closes an open proposal as applied or rejected by actor and appends the
// protocol.EventChangeApproved or protocol.EventChangeRejected event, in one transaction.
// ErrProposalClosed when it is no longer open, ErrNotFound when it does not exist. Whether
// actor may decide (a second admin) is the caller's rule.
func (s *Store) DecideProposal(ctx context.Context, id, state, actor string, now time.Time) error {
	kind := protocol.EventChangeApproved
	switch state {
	case ProposalApplied:
	case ProposalRejected:
		kind = protocol.EventChangeRejected
	default:
		return invalidf("proposal state %q is not applied or rejected", state)
	}
	err := s.write(ctx, func(tx *gorm.DB) error {
		var rows []proposalRow
		if err := tx.Where("id = ?", id).Limit(1).Find(&rows).Error; err != nil {
			return err
		}
		if len(rows) == 0 {
			return ErrNotFound
		}
		if rows[0].State != ProposalOpen {
			return fmt.Errorf("%w (%s by %s)", ErrProposalClosed, rows[0].State, rows[0].DecidedBy)
		}
		if err := tx.Model(&proposalRow{}).Where("id = ?", id).
			Updates(map[string]any{"state": state, "decided_by": actor, "decided_at": unix(now)}).Error; err != nil {
			return err
		}
		_, err := s.appendEvent(ctx, tx, Event{Time: now, Kind: kind, Actor: actor,
			Message: fmt.Sprintf("%s change %s proposed by %s %s", rows[0].Kind, id, rows[0].ProposedBy, state),
			Data:    map[string]string{"id": id, "kind": rows[0].Kind, "proposed_by": rows[0].ProposedBy}})
		return err
	})
	if err != nil {
		return fmt.Errorf("decide proposal %s: %w", id, err)
	}
	return nil
}
