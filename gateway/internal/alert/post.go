package alert

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Retry is how an HTTP route retries: Attempts tries in all, waiting Backoff, then twice as
// long each time, up to MaxBackoff. The zero value means 5 attempts from 1 s to 1 min.
type Retry struct {
	Attempts   int
	Backoff    time.Duration
	MaxBackoff time.Duration
	// Wait waits d or until ctx ends; nil uses a timer. Tests inject one that records.
	Wait func(ctx context.Context, d time.Duration) error
}

func (r Retry) withDefaults() Retry {
	if r.Attempts <= 0 {
		r.Attempts = 5
	}
	if r.Backoff <= 0 {
		r.Backoff = time.Second
	}
	if r.MaxBackoff <= 0 {
		r.MaxBackoff = time.Minute
	}
	if r.Wait == nil {
		r.Wait = func(ctx context.Context, d time.Duration) error {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return r
}

// maxResponse bounds what is read of a receiver's answer (for the error message).
const maxResponse = 1 << 10

// post sends body to url with the headers build sets on each try, retrying network errors,
// 408, 429 and 5xx answers; any other status that is not 2xx wraps ErrRejected at once.
func post(ctx context.Context, client *http.Client, r Retry, url string, body []byte, build func(*http.Request)) error {
	r = r.withDefaults()
	wait := r.Backoff
	var last error
	for try := 1; ; try++ {
		last = postOnce(ctx, client, url, body, build)
		if last == nil || !retryable(last) || try >= r.Attempts || ctx.Err() != nil {
			break
		}
		if err := r.Wait(ctx, wait); err != nil {
			break
		}
		wait = min(2*wait, r.MaxBackoff)
	}
	if last != nil {
		return fmt.Errorf("post %s: %w", url, last)
	}
	return nil
}

func postOnce(ctx context.Context, client *http.Client, url string, body []byte, build func(*http.Request)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	req.Header.Set("Content-Type", "application/json")
	build(req)
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(res.Body, maxResponse))
	switch {
	case res.StatusCode >= 200 && res.StatusCode < 300:
		return nil
	case res.StatusCode == http.StatusRequestTimeout || res.StatusCode == http.StatusTooManyRequests || res.StatusCode >= 500:
		return &statusError{code: res.StatusCode, body: string(msg)}
	}
	return fmt.Errorf("%w: %w", ErrRejected, &statusError{code: res.StatusCode, body: string(msg)})
}

// statusError is an HTTP answer that is not a success.
type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("HTTP %d %s: %s", e.code, http.StatusText(e.code), bytes.TrimSpace([]byte(e.body)))
}

// retryable reports whether a try's error is worth another try.
func retryable(err error) bool {
	return !errors.Is(err, ErrRejected)
}
