package load

import (
	"net"
	"syscall"
)

// connClosed reports whether the server has closed c (or sent something
// unasked) while it sat idle: a non-blocking MSG_PEEK that finds EOF, data
// or an error. This is the check a connection pool makes before reuse.
func connClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = !(err == syscall.EAGAIN || err == syscall.EWOULDBLOCK) || n > 0
		return true
	})
	return closed || err != nil
}
