package activation

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenFdsStart is SD_LISTEN_FDS_START: the first passed descriptor.
const listenFdsStart = 3

// NamedListener is a listener and the name a child finds it under
// (LISTEN_FDNAMES; "http" in --listen http=tcp://:8080).
type NamedListener struct {
	// Name is 1 to 255 printable ASCII characters without ':'.
	Name string
	// Listener must expose its descriptor (syscall.Conn), as *net.TCPListener
	// and *net.UnixListener do.
	Listener net.Listener
}

// ExportFiles duplicates each listener's descriptor for a child process and
// returns the files, in order, to place at fds 3, 4, ... of the child
// (os.ProcAttr.Files after stdin, stdout, stderr, or exec.Cmd.ExtraFiles), and
// the environment entries LISTEN_FDS and LISTEN_FDNAMES. LISTEN_PID is set by
// the shim (see [ShimCommand]).
//
// The duplicates are made with fcntl(F_DUPFD_CLOEXEC) inside
// SyscallConn().Control and wrapped with os.NewFile, so neither this call nor
// a later (*os.File).Fd (which os.StartProcess makes) switches the shared open
// file description to blocking mode, as (*net.TCPListener).File followed by
// Fd would — for every generation at once. The caller closes the files once
// the child is started; the listeners stay open.
func ExportFiles(named []NamedListener) ([]*os.File, []string, error) {
	names := make([]string, 0, len(named))
	files := make([]*os.File, 0, len(named))
	fail := func(err error) ([]*os.File, []string, error) {
		for _, f := range files {
			f.Close()
		}
		return nil, nil, err
	}
	seen := make(map[string]bool, len(named))
	for _, nl := range named {
		if err := checkFdName(nl.Name); err != nil {
			return fail(fmt.Errorf("reuseport: export listener %q: %w", nl.Name, err))
		}
		if seen[nl.Name] {
			return fail(fmt.Errorf("reuseport: export listener %q: name used twice", nl.Name))
		}
		seen[nl.Name] = true
		fd, err := DupFD(nl.Listener)
		if err != nil {
			return fail(fmt.Errorf("reuseport: export listener %q: %w", nl.Name, err))
		}
		files = append(files, os.NewFile(uintptr(fd), nl.Name))
		names = append(names, nl.Name)
	}
	env := []string{
		"LISTEN_FDS=" + strconv.Itoa(len(files)),
		"LISTEN_FDNAMES=" + strings.Join(names, ":"),
	}
	return files, env, nil
}

// DupFD duplicates the descriptor behind v (a listener or a connection,
// anything with SyscallConn) with close-on-exec set, without touching its
// status flags: the way to get a descriptor to pass on (here, and for
// SCM_RIGHTS in package handoff) without making the shared open file
// description blocking, as (*os.File).Fd would.
func DupFD(v any) (int, error) {
	sc, ok := v.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("%T does not expose its descriptor (syscall.Conn)", v)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("syscall conn: %w", err)
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, listenFdsStart)
	}); err != nil {
		return -1, fmt.Errorf("control: %w", err)
	}
	if derr != nil {
		return -1, fmt.Errorf("fcntl F_DUPFD_CLOEXEC: %w", derr)
	}
	return nfd, nil
}

// checkFdName applies systemd's rules for FileDescriptorName=.
func checkFdName(name string) error {
	if name == "" || len(name) > 255 {
		return fmt.Errorf("name must be 1 to 255 characters")
	}
	for _, r := range name {
		if r <= ' ' || r >= 0x7f || r == ':' {
			return fmt.Errorf("name may contain only printable ASCII without spaces or ':'")
		}
	}
	return nil
}
