// Package testkit is the agent's shared test kit. It plays the hub for the agent's tests and
// provides what they build on:
//
//   - [CA]: a throwaway two-tier CA (root and intermediate, ECDSA P-256) shaped like the
//     hub's, issuing server and device certificates.
//   - [StartBroker]: a real mosquitto with a TLS listener on 127.0.0.1.
//   - [StartResponder]: a paho client that answers CSRs and commits the way the hub does and
//     can be told to misbehave ([Behaviour]), recording what devices publish.
//   - [Eventually]: waits for a condition, polling; the condition is the assertion, the
//     timeout only a guard against a hang.
//   - [RequirePeer]: the path of a real program a test runs against (mosquitto,
//     qemu-<arch>-static). In CI (CI=true) a missing one fails the test; elsewhere it skips
//     with how to install it.
//
// Certificate signing requests come from the agent's own keystore.NewCSR, the code that
// ships, so the kit has no CSR builder of its own.
//
// Helpers that take a testing.TB fail the test with t.Fatal and must be called from the
// test's goroutine; what they start is stopped by t.Cleanup. It is imported by tests only:
// nothing in the hearth-agent binary depends on it (cmd/hearth-agent's TestDependencyBudget
// checks).
package testkit
