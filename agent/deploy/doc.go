// Package deploy holds hearth-agent's service definitions, not code: the systemd unit
// (hearth-agent.service) and the OpenWrt procd init script (hearth-agent.init), which
// agent/README.md's install steps copy onto devices. Its tests exercise both as far as a
// machine without systemd as PID 1 and without OpenWrt allows: systemd-analyze verify on the
// unit, the init script run by busybox sh with rc.common's and procd's functions stubbed, and
// the command line each would start run against a real broker through a renewal and SIGTERM
// (agent/README.md, "Install", says what remains unverified).
package deploy
