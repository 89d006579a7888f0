//go:build !linux

package control

import "net"

// peerName cannot ask the kernel outside Linux: the actor is "cli:unknown".
func peerName(net.Conn) string { return "" }
