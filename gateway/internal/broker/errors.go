package broker

import "errors"

var (
	// ErrConfig is wrapped by every error New returns for a bad Config.
	ErrConfig = errors.New("broker: invalid config")
	// ErrRefused is wrapped by every reason a CONNECT is refused; the reasons are logged.
	ErrRefused = errors.New("connection refused")
	// ErrRunning is returned by a second call of Run.
	ErrRunning = errors.New("broker: Run called twice")
)
