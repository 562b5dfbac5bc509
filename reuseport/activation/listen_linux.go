package activation

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// UnixSocketMode is the file mode [Listen] gives a unix socket it creates:
// anyone who can reach the directory may connect, as with systemd's default
// SocketMode=0666. Restrict access with the directory's permissions.
const UnixSocketMode fs.FileMode = 0o666

// Listen binds a stream listener with SO_REUSEADDR and SO_REUSEPORT (TCP), so
// that several processes of the same user can bind the same port and the
// kernel spreads connections among them. TCP listeners are plain TCP, not
// MPTCP (Go's default for listeners since Go 1.24). For a unix socket path, a stale
// socket file left by a process that died is removed first (a live one is an
// error, and so is a file that is not a socket); the socket gets
// [UnixSocketMode]. network and address are as returned by [ParseAddr].
func Listen(ctx context.Context, network, address string) (net.Listener, error) {
	lc := net.ListenConfig{}
	switch network {
	case "tcp", "tcp4", "tcp6":
		lc.Control = controlReusePort
		// Plain TCP: Go (>= 1.24) makes listeners MPTCP sockets by default,
		// and an MPTCP socket refuses most socket options, among them
		// SO_ATTACH_REUSEPORT_CBPF, which steering (steer_linux.go) needs.
		// Clients fall back to TCP anyway unless they ask for MPTCP.
		lc.SetMultipathTCP(false)
	case "unix":
		if !strings.HasPrefix(address, "@") {
			if err := RemoveStaleSocket(address); err != nil {
				return nil, fmt.Errorf("reuseport: listen unix %s: %w", address, err)
			}
		}
	default:
		return nil, fmt.Errorf("reuseport: listen %s %s: unsupported network (want tcp, tcp4, tcp6 or unix)", network, address)
	}
	ln, err := lc.Listen(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("reuseport: listen %s %s: %w", network, address, err)
	}
	if network == "unix" && !strings.HasPrefix(address, "@") {
		if err := os.Chmod(address, UnixSocketMode); err != nil {
			ln.Close()
			return nil, fmt.Errorf("reuseport: listen unix %s: %w", address, err)
		}
	}
	return ln, nil
}

// controlReusePort sets SO_REUSEADDR and SO_REUSEPORT before bind(2).
func controlReusePort(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
			serr = fmt.Errorf("setsockopt SO_REUSEADDR: %w", serr)
			return
		}
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); serr != nil {
			serr = fmt.Errorf("setsockopt SO_REUSEPORT: %w", serr)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// RemoveStaleSocket removes path if it is a unix socket nobody listens on
// (left by an earlier run), so a new listener can bind it. It refuses a
// socket that a live server still answers on — stream, seqpacket or
// datagram: two supervisors sharing a directory must never take each
// other's sockets — and any file that is not a socket.
func RemoveStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket; refusing to replace it (remove it or choose another path)", path)
	}
	// A connect of the wrong socket type fails with EPROTOTYPE whether or
	// not anyone listens: try each type until one says refused or answers.
	for _, network := range []string{"unix", "unixpacket", "unixgram"} {
		c, err := net.DialTimeout(network, path, time.Second)
		if err == nil {
			c.Close()
			return fmt.Errorf("%s is in use by a running server", path)
		}
		if errors.Is(err, syscall.EPROTOTYPE) {
			continue
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("check whether %s is stale: %w", path, err)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove stale socket: %w", err)
		}
		return nil
	}
	return fmt.Errorf("check whether %s is stale: no socket type answers", path)
}
