package activation

import (
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// notifyBufSize bounds one sd_notify datagram; systemd's limit is PIPE_BUF.
const notifyBufSize = 4096

// NotifySocket receives sd_notify messages (READY=1, STATUS=..., STOPPING=1,
// MAINPID=...) on a unixgram socket with SO_PASSCRED, so every message
// carries its sender's PID and UID as checked by the kernel, not as claimed.
// Give each generation its own socket (NOTIFY_SOCKET in its environment).
type NotifySocket struct {
	conn *net.UnixConn
	path string
}

// NotifyMessage is one sd_notify datagram.
type NotifyMessage struct {
	// PID and UID of the sending process (SCM_CREDENTIALS, in this process's
	// PID namespace). Accept READY=1 only from the generation's main PID, or
	// from its process group with notify-access=all.
	PID int
	UID int
	// Fields are the message's KEY=VALUE lines, e.g. "READY": "1".
	Fields map[string]string
}

// NewNotifySocket creates the socket at path (an absolute file path, or
// "@name" for an abstract socket); a stale socket file at path is replaced,
// a live one (another supervisor's) never. The file
// gets mode 0666 like systemd's notify socket: who may speak is decided from
// the sender's credentials, not from file permissions.
func NewNotifySocket(path string) (*NotifySocket, error) {
	if path == "" || len(path) > 107 {
		return nil, fmt.Errorf("reuseport: notify socket %q: path must be 1 to 107 bytes", path)
	}
	abstract := strings.HasPrefix(path, "@")
	if !abstract {
		if err := RemoveStaleSocket(path); err != nil {
			return nil, fmt.Errorf("reuseport: notify socket: %w", err)
		}
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("reuseport: notify socket %s: %w", path, err)
	}
	fail := func(err error) (*NotifySocket, error) {
		conn.Close()
		if !abstract {
			os.Remove(path)
		}
		return nil, fmt.Errorf("reuseport: notify socket %s: %w", path, err)
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return fail(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil {
		return fail(err)
	}
	if serr != nil {
		return fail(fmt.Errorf("setsockopt SO_PASSCRED: %w", serr))
	}
	if !abstract {
		if err := os.Chmod(path, 0o666); err != nil {
			return fail(err)
		}
	}
	return &NotifySocket{conn: conn, path: path}, nil
}

// Path is the socket's address, the value for the child's NOTIFY_SOCKET.
func (s *NotifySocket) Path() string { return s.path }

// Recv blocks until the next message and returns it. Datagrams that were
// truncated or carry no credentials are dropped, as systemd does; descriptors
// sent along (FDSTORE=1) are closed. After [NotifySocket.Close], Recv returns
// an error matching net.ErrClosed.
func (s *NotifySocket) Recv() (NotifyMessage, error) {
	buf := make([]byte, notifyBufSize)
	// Room for credentials and a generous number of (unwanted) descriptors.
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred)+unix.CmsgSpace(4*64))
	for {
		n, oobn, flags, _, err := s.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return NotifyMessage{}, fmt.Errorf("reuseport: notify socket %s: receive: %w", s.path, err)
		}
		msg, ok := parseNotify(buf[:n], oob[:oobn])
		if !ok || flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
			continue
		}
		return msg, nil
	}
}

// parseNotify decodes one datagram; ok is false without credentials.
func parseNotify(data, oob []byte) (msg NotifyMessage, ok bool) {
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return msg, false
	}
	for i := range cmsgs {
		if fds, err := unix.ParseUnixRights(&cmsgs[i]); err == nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
			continue
		}
		if cred, err := unix.ParseUnixCredentials(&cmsgs[i]); err == nil {
			msg.PID, msg.UID = int(cred.Pid), int(cred.Uid)
			ok = true
		}
	}
	msg.Fields = map[string]string{}
	for line := range strings.SplitSeq(string(data), "\n") {
		if k, v, found := strings.Cut(line, "="); found && k != "" {
			msg.Fields[k] = v
		}
	}
	return msg, ok && msg.PID > 0
}

// Close closes the socket and removes its file.
func (s *NotifySocket) Close() error {
	err := s.conn.Close()
	if !strings.HasPrefix(s.path, "@") {
		// Unlike a UnixListener, a unixgram conn leaves its file behind.
		if rerr := os.Remove(s.path); rerr != nil && !os.IsNotExist(rerr) && err == nil {
			err = rerr
		}
	}
	if err != nil {
		return fmt.Errorf("reuseport: notify socket %s: close: %w", s.path, err)
	}
	return nil
}

// Notify sends state (newline-separated KEY=VALUE lines, e.g. "STATUS=warming
// up") to the supervisor on $NOTIFY_SOCKET, like sd_notify(0, state). It does
// nothing and returns nil when NOTIFY_SOCKET is unset (standalone).
func Notify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	if !strings.HasPrefix(addr, "/") && !strings.HasPrefix(addr, "@") {
		return fmt.Errorf("reuseport: notify: NOTIFY_SOCKET=%q must be an absolute path or @abstract", addr)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("reuseport: notify %s: %w", addr, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("reuseport: notify %s: %w", addr, err)
	}
	return nil
}

// NotifySocketFromFile is a NotifySocket on an inherited descriptor, bound to
// path already (hotswap hands its notify sockets over an in-place upgrade;
// see docs/upgrade.md). f is closed: the socket has its own copy.
func NotifySocketFromFile(f *os.File, path string) (*NotifySocket, error) {
	defer f.Close()
	c, err := net.FilePacketConn(f)
	if err != nil {
		return nil, fmt.Errorf("reuseport: notify socket %s: inherited: %w", path, err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("reuseport: notify socket %s: inherited descriptor is not a unix datagram socket", path)
	}
	return &NotifySocket{conn: uc, path: path}, nil
}

// SyscallConn exposes the socket's descriptor, so DupFD can hand it over.
func (s *NotifySocket) SyscallConn() (syscall.RawConn, error) { return s.conn.SyscallConn() }
