package alert

import "errors"

// ErrRateLimited is what Config.Failed receives, with route "rate", for an alert over the
// rate limit: it was not sent.
var ErrRateLimited = errors.New("alert: over the rate limit, not sent")

// ErrRejected is wrapped by a delivery the receiver refused for good (an HTTP status other
// than 408, 429 or 5xx): it is not retried.
var ErrRejected = errors.New("alert: rejected by the receiver")
