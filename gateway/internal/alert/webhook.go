package alert

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// The webhook's headers. The signature is HMAC-SHA256 over the timestamp, a '.', and the
// body, with the configured secret, as lowercase hex after "sha256=": a receiver recomputes
// it and refuses a timestamp too old (a replay).
const (
	HeaderSignature = "X-Hearth-Signature"
	HeaderTimestamp = "X-Hearth-Timestamp"
	HeaderDelivery  = "X-Hearth-Delivery" // the notification's id and state: the same on every retry
)

// Webhook posts each notification as JSON to URL.
type Webhook struct {
	URL    string
	Secret []byte // signs the body; empty sends no signature
	Client *http.Client
	Retry  Retry
	// Now stamps HeaderTimestamp. Default time.Now.
	Now func() time.Time
}

// Name implements Route.
func (w *Webhook) Name() string { return "webhook" }

// Send implements Route.
func (w *Webhook) Send(ctx context.Context, n Notification) error {
	body, err := json.Marshal(n)
	if err != nil {
		return err
	}
	client, now := w.Client, w.Now
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	if now == nil {
		now = time.Now
	}
	return post(ctx, client, w.Retry, w.URL, body, func(r *http.Request) {
		ts := strconv.FormatInt(now().Unix(), 10)
		r.Header.Set(HeaderTimestamp, ts)
		r.Header.Set(HeaderDelivery, n.ID+"/"+n.State)
		if len(w.Secret) > 0 {
			r.Header.Set(HeaderSignature, Sign(w.Secret, ts, body))
		}
	})
}

// Sign returns the webhook signature of body sent at timestamp ts (Unix seconds, as sent in
// HeaderTimestamp): "sha256=" and the hex HMAC-SHA256 of ts + "." + body under secret.
func Sign(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether sig is body's signature at ts under secret, in constant time: what
// a receiver written in Go does.
func Verify(secret []byte, ts string, body []byte, sig string) bool {
	return hmac.Equal([]byte(sig), []byte(Sign(secret, ts, body)))
}
