package inventory

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"gorm.io/gorm"

	"github.com/hearth-pki/hearth/protocol"
)

// DefaultActor is the actor of events appended without one in the event or the context.
const DefaultActor = "hub"

// Event is one record of the audit log. Seq, Hash and PrevHash are assigned by the store.
// Kind is one of protocol.EventTypes; the store itself appends the certificate, token and
// device events of its changes (protocol.EventCertIssued and the six after it), each in the
// transaction of its change.
type Event struct {
	Seq      int64
	Time     time.Time
	Kind     protocol.EventType
	DeviceID string
	Actor    string
	Message  string
	Data     map[string]string
	Hash     string // lowercase hex SHA-256, see eventHash
	PrevHash string // Hash of the event Seq-1; "" for the first event
}

// EventFilter selects events; zero fields select everything.
type EventFilter struct {
	DeviceID string
	Kind     protocol.EventType
	Since    time.Time // events at or after Since
	Limit    int       // at most the Limit most recent matching events; <= 0: no limit
}

type actorKey struct{}

// WithActor returns a context whose store operations record actor (e.g. "admin:alice",
// "cli", "device:kitchen-plug") as the actor of the events they append.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

func actorFrom(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok && a != "" {
		return a
	}
	return DefaultActor
}

// AppendEvent appends e to the audit log and returns it as stored (UTC time truncated to
// the second, Seq, PrevHash and Hash set). Time and Kind are required; an empty Actor is
// taken from the context (WithActor), else DefaultActor.
func (s *Store) AppendEvent(ctx context.Context, e Event) (Event, error) {
	if e.Actor == "" {
		e.Actor = actorFrom(ctx)
	}
	err := s.write(ctx, func(tx *gorm.DB) error {
		var err error
		e, err = s.appendEvent(ctx, tx, e)
		return err
	})
	if err != nil {
		return Event{}, fmt.Errorf("append event %q: %w", e.Kind, err)
	}
	return e, nil
}

// appendEvent chains e to the last event inside the writer transaction tx. Reading the head
// and inserting in one IMMEDIATE transaction is what keeps the chain linear.
func (s *Store) appendEvent(ctx context.Context, tx *gorm.DB, e Event) (Event, error) {
	if e.Kind == "" || unix(e.Time) == 0 {
		return Event{}, invalidf("event needs a kind and a time")
	}
	texts := []string{string(e.Kind), e.DeviceID, e.Actor, e.Message}
	for k, v := range e.Data {
		texts = append(texts, k, v)
	}
	if err := checkText(texts...); err != nil {
		return Event{}, err
	}
	data := "{}"
	if len(e.Data) > 0 {
		b, err := json.Marshal(e.Data)
		if err != nil {
			return Event{}, err
		}
		data = string(b)
	}
	head, err := txStmt(ctx, tx, s.st.eventHead)
	if err != nil {
		return Event{}, err
	}
	var seq int64
	var prev string
	if err := head.QueryRowContext(ctx).Scan(&seq, &prev); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return Event{}, fmt.Errorf("read audit head: %w", err)
	}
	e.Seq, e.PrevHash = seq+1, prev
	e.Time = fromUnix(e.Time.Unix())
	e.Hash = eventHash(e)
	err = s.exec(ctx, tx, s.st.insertEvent, e.Seq, e.Time.Unix(), string(e.Kind), e.DeviceID, e.Actor, e.Message, data, e.Hash, e.PrevHash)
	if err != nil {
		return Event{}, err
	}
	return e, nil
}

// eventHash is SHA-256 over an unambiguous encoding of the event: a version label, then
// PrevHash, Seq, Time (Unix seconds), Kind, DeviceID, Actor, Message, the number of Data
// entries and each key and value in key order, every item a big-endian uint64 length followed
// by its bytes. The encoding is fixed (testdata/event_hash.golden): changing it would break
// the verification of every stored chain.
func eventHash(e Event) string {
	h := sha256.New()
	var buf []byte
	field := func(s string) {
		buf = binary.BigEndian.AppendUint64(buf[:0], uint64(len(s)))
		h.Write(buf)
		h.Write([]byte(s))
	}
	field("hearth-audit-v1")
	field(e.PrevHash)
	field(strconv.FormatInt(e.Seq, 10))
	field(strconv.FormatInt(e.Time.Unix(), 10))
	field(string(e.Kind))
	field(e.DeviceID)
	field(e.Actor)
	field(e.Message)
	field(strconv.Itoa(len(e.Data)))
	for _, k := range slices.Sorted(maps.Keys(e.Data)) {
		field(k)
		field(e.Data[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Events returns the matching events in Seq order.
func (s *Store) Events(ctx context.Context, f EventFilter) ([]Event, error) {
	q := s.read(ctx)
	if f.DeviceID != "" {
		q = q.Where("device_id = ?", f.DeviceID)
	}
	if f.Kind != "" {
		q = q.Where("kind = ?", string(f.Kind))
	}
	if !f.Since.IsZero() {
		q = q.Where("time >= ?", f.Since.Unix())
	}
	if f.Limit > 0 {
		q = q.Order("seq DESC").Limit(f.Limit)
	} else {
		q = q.Order("seq")
	}
	var rows []eventRow
	if err := q.Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	if f.Limit > 0 {
		slices.Reverse(rows)
	}
	out := make([]Event, 0, len(rows))
	for _, r := range rows {
		e, err := r.event()
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// VerifyAudit walks the whole audit log in one read snapshot and checks that the sequence
// has no gap, that each event names its predecessor's hash and that each hash matches the
// event's content. It returns nil, a *AuditError naming the first event that fails, or an
// error reading the database. It cannot notice events removed from the end of the log: the
// latest Hash (Events with Limit 1) is the anchor to keep elsewhere for that.
func (s *Store) VerifyAudit(ctx context.Context) error {
	rows, err := s.read(ctx).Model(&eventRow{}).
		Select("seq", "time", "kind", "device_id", "actor", "message", "data", "hash", "prev_hash").
		Order("seq").Rows()
	if err != nil {
		return fmt.Errorf("verify audit: %w", err)
	}
	defer rows.Close()
	var prev eventRow
	for rows.Next() {
		var r eventRow
		if err := rows.Scan(&r.Seq, &r.Time, &r.Kind, &r.DeviceID, &r.Actor, &r.Message, &r.Data, &r.Hash, &r.PrevHash); err != nil {
			return fmt.Errorf("verify audit: %w", err)
		}
		if r.Seq != prev.Seq+1 {
			return &AuditError{Seq: r.Seq, Reason: fmt.Sprintf("follows seq %d", prev.Seq)}
		}
		if r.PrevHash != prev.Hash {
			return &AuditError{Seq: r.Seq, Reason: "previous hash does not match event " + strconv.FormatInt(prev.Seq, 10)}
		}
		e, err := r.event()
		if err != nil {
			return &AuditError{Seq: r.Seq, Reason: err.Error()}
		}
		if eventHash(e) != r.Hash {
			return &AuditError{Seq: r.Seq, Reason: "hash does not match content"}
		}
		prev = r
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("verify audit: %w", err)
	}
	return nil
}
