package broker

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestRedactPackets logs packets the way mochi does (server.go: "error processing packet",
// "pk", pk) and checks that no password, Will or payload reaches the log, in any form.
func TestRedactPackets(t *testing.T) {
	const secret = "hst_secretsecretsecretsecret"
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect, Remaining: 120}}
	pk.Connect.Username = []byte("dev-a")
	pk.Connect.Password = []byte(secret)
	pk.Connect.WillPayload = []byte(secret)
	pub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Remaining: 80}, TopicName: "hearth/bridge/response/token/create",
		PacketID: 7, Payload: []byte(`{"token":"` + secret + `"}`)}
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			var h slog.Handler = slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})
			if format == "json" {
				h = slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})
			}
			log := slog.New(redactPackets{h}).With("component", "mochi", "first", pk)
			log.Warn("error processing packet", "error", "x", "pk", pk)
			log.Debug("failed publishing packet", "packet", &pub)
			log.WithGroup("g").Warn("grouped", slog.Group("inner", "pk", pk))
			out := buf.String()
			// A packet printed whole shows the password as text, bytes (%v) or base64 (JSON).
			for _, leak := range []string{secret, fmt.Sprint([]byte(secret)), base64.StdEncoding.EncodeToString([]byte(secret)), "Password"} {
				if strings.Contains(out, leak) {
					t.Errorf("log holds %q:\n%s", leak, out)
				}
			}
			for _, want := range []string{"Connect, 120 bytes", "Publish, 80 bytes", "id 7"} {
				if !strings.Contains(out, want) {
					t.Errorf("log lacks the summary %q:\n%s", want, out)
				}
			}
		})
	}
}
