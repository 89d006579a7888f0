package control

import (
	"net"
	"os/user"
	"strconv"
	"syscall"
)

// peerOf returns the OS user of the process at the other end of a unix socket connection,
// as the kernel reports it (SO_PEERCRED); Known false when it cannot tell.
func peerOf(c net.Conn) Peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Peer{}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{}
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return Peer{}
	}
	p := Peer{Known: true, UID: cred.Uid}
	if u, err := user.LookupId(strconv.FormatUint(uint64(cred.Uid), 10)); err == nil {
		p.Name = u.Username
	}
	return p
}
