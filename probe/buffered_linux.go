package probe

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// buffered is how many bytes wait in c's receive buffer (SIOCINQ); 0 if unknown.
func buffered(c net.Conn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = raw.Control(func(fd uintptr) {
		n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	})
	return n
}
