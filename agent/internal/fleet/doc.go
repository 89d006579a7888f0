// Package fleet simulates a fleet of Hearth devices in one process, for sizing a hub and for
// the hub's storm benchmarks and end-to-end tests (hearth-fleet).
//
// Every simulated device is a real agent (agent/device): the same enrollment, renewal loop,
// two-phase commit by reconnection, rollback and health reports as hearth-agent, with its own
// MQTT session. Its keys live in memory (device.Memory) unless Config.KeysDir gives each
// device a state directory, as on a real device. A Fleet enrolls the devices (with tokens
// given to it, or minted through the hub's bridge API with admin credentials), holds their
// sessions, lets them renew on hub commands and inside their windows, and counts what
// happens: enrollments, commits, failures by cause (protocol error codes where the hub gave
// one), renewal latency.
//
// # Resources
//
// A device in memory costs one TCP connection (one file descriptor) and a few goroutines; a
// device with a state directory also holds its directory's lock file open. At most
// Config.Concurrency devices enroll or make their first connection at once, so that starting
// a large fleet does not become a connection storm of its own.
//
// # Concurrency
//
// A Fleet's Run must be called once. Summary may be called from any goroutine, during and
// after Run.
package fleet
