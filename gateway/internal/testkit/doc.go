// Package testkit is the gateway's shared test kit: the throwaway parts its tests build on,
// so that every package's tests make them the same way.
//
//   - [CA]: a throwaway two-tier PKI (root and intermediate, ECDSA P-256) that issues server
//     and client certificates, with PEM files for openssl and the mosquitto clients
//     ([WritePEM] writes more).
//   - [NewKey], [NewCSR], [KeyAndCSR]: keys and certificate signing requests.
//   - [Eventually]: waits for a condition, polling; the condition is the assertion, the
//     timeout only a guard against a hang; [Lazy] message arguments show the state at the
//     timeout.
//   - [Clock]: a settable time source for the Now fields of configs.
//   - [RequirePeer]: the path of a real program a test runs against (mosquitto, openssl, …).
//     In CI (CI=true) a missing one fails the test; elsewhere it skips with how to install it.
//   - [StartMosquitto]: a real mosquitto broker on 127.0.0.1, playing Home Assistant's.
//   - [StartPostgres], [SharedPostgres]: a throwaway PostgreSQL cluster on a Unix socket (as
//     the user nobody under root), one per test or one per test binary, with a database of
//     its own per test ([Postgres.NewDatabase]).
//   - [Publisher]: a fake of the hub's broker as the hub's parts publish through it.
//   - [Relay]: a TCP relay in front of a server that can refuse the next connections.
//
// testkit imports only the standard library, so that every package of the module, including
// ca and inventory, can use it in its own tests. Package hubkit builds the hub's real parts
// (inventory, CA, configuration) for tests of the packages above them.
//
// Helpers that take a testing.TB fail the test with t.Fatal and must be called from the
// test's goroutine; everything they create is removed or stopped by t.Cleanup. It is
// imported by tests only: nothing in the hearth-gateway binary depends on it.
package testkit
