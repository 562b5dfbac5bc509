package activation

import (
	"context"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// childEnv selects what the re-executed test binary does (tableflip's trick:
// the test binary is its own child process, and its own exec shim). The
// servers started through the shim are tested in package reuseport.
const childEnv = "REUSEPORT_TEST_CHILD"

func TestMain(m *testing.M) {
	RunShimIfRequested() // the test binary doubles as hotswap's exec shim
	switch role := os.Getenv(childEnv); role {
	case "":
		os.Exit(m.Run())
	case "notify":
		if err := Notify("STATUS=child here\nREADY=1"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "unknown role %q\n", role)
		os.Exit(2)
	}
}

// isNonBlocking reports O_NONBLOCK of v's open file description.
func isNonBlocking(v any) bool {
	rc, err := v.(syscall.Conn).SyscallConn()
	if err != nil {
		panic(err)
	}
	var flags int
	var ferr error
	rc.Control(func(fd uintptr) { flags, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0) })
	if ferr != nil {
		panic(ferr)
	}
	return flags&unix.O_NONBLOCK != 0
}

func listenTCP(t *testing.T) net.Listener {
	t.Helper()
	ln, err := Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func export(t *testing.T, named ...NamedListener) ([]*os.File, []string) {
	t.Helper()
	files, env, err := ExportFiles(named)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, f := range files {
			f.Close()
		}
	})
	return files, env
}
