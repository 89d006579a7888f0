package broker

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/mochi-mqtt/server/v2/packets"
)

// redactPackets is the slog.Handler mochi logs through. mochi logs whole packets as
// attributes (at WARN "error processing packet", at DEBUG several more), and a packet holds
// the CONNECT's password (an admin's password, an enrollment token) and every payload (a
// token/create answer carries a token). This handler replaces every packets.Packet attribute
// with a summary that holds neither: its type, topic, packet id and size (issue 15).
type redactPackets struct{ next slog.Handler }

// Enabled reports whether the next handler handles level.
func (h redactPackets) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// Handle passes r on with its packet attributes summarised.
func (h redactPackets) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

// WithAttrs returns a handler whose attributes are summarised likewise.
func (h redactPackets) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = redactAttr(a)
	}
	return redactPackets{h.next.WithAttrs(red)}
}

// WithGroup returns a handler that opens group.
func (h redactPackets) WithGroup(name string) slog.Handler {
	return redactPackets{h.next.WithGroup(name)}
}

func redactAttr(a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindGroup:
		g := a.Value.Group()
		red := make([]any, len(g))
		for i, x := range g {
			red[i] = redactAttr(x)
		}
		return slog.Group(a.Key, red...)
	case slog.KindAny:
		switch pk := a.Value.Any().(type) {
		case packets.Packet:
			return slog.String(a.Key, packetSummary(&pk))
		case *packets.Packet:
			if pk != nil {
				return slog.String(a.Key, packetSummary(pk))
			}
		}
	}
	return a
}

// packetSummary describes pk without its password, will or payload.
func packetSummary(pk *packets.Packet) string {
	name := packets.PacketNames[pk.FixedHeader.Type]
	if name == "" {
		name = fmt.Sprintf("type %d", pk.FixedHeader.Type)
	}
	s := fmt.Sprintf("%s, %d bytes", name, pk.FixedHeader.Remaining)
	if pk.TopicName != "" {
		s += fmt.Sprintf(", topic %q", pk.TopicName)
	}
	if pk.PacketID != 0 {
		s += fmt.Sprintf(", id %d", pk.PacketID)
	}
	return s + " (contents not logged)"
}
