package activation

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hotswap-dev/hotswap/reuseport/internal/execshim"
	"golang.org/x/sys/unix"
)

func TestParseAddr(t *testing.T) {
	for _, tc := range []struct {
		in, network, address, err string
	}{
		{in: "tcp://:8080", network: "tcp", address: ":8080"},
		{in: "tcp://127.0.0.1:0", network: "tcp", address: "127.0.0.1:0"},
		{in: "tcp4://0.0.0.0:80", network: "tcp4", address: "0.0.0.0:80"},
		{in: "tcp6://[::1]:8080", network: "tcp6", address: "[::1]:8080"},
		{in: "tcp://localhost:8080", network: "tcp", address: "localhost:8080"},
		{in: "unix:///run/app.sock", network: "unix", address: "/run/app.sock"},
		{in: "unix://@hotswap", network: "unix", address: "@hotswap"},
		{in: ":8080", err: "missing scheme; want tcp://HOST:PORT"},
		{in: "http://:8080", err: `unknown scheme "http"`},
		{in: "tcp://:http", err: `port "http" is not a number`},
		{in: "tcp://:65536", err: `port "65536" is not a number`},
		{in: "tcp://127.0.0.1", err: "missing port"},
		{in: "tcp4://[::1]:80", err: "::1 is not an IPv4 address"},
		{in: "tcp6://127.0.0.1:80", err: "127.0.0.1 is not an IPv6 address"},
		{in: "unix://run/app.sock", err: "must be absolute"},
		{in: "unix://", err: "must be absolute"},
		{in: "unix:///" + strings.Repeat("x", 120), err: "the limit is 107"},
	} {
		network, address, err := ParseAddr(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "reuseport: ") {
				t.Errorf("ParseAddr(%q) error %v, want it to contain %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || network != tc.network || address != tc.address {
			t.Errorf("ParseAddr(%q) = %q, %q, %v; want %q, %q", tc.in, network, address, err, tc.network, tc.address)
		}
	}
}

func sockopt(t *testing.T, ln net.Listener, opt int) int {
	t.Helper()
	rc, _ := ln.(syscall.Conn).SyscallConn()
	var v int
	var err error
	rc.Control(func(fd uintptr) { v, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, opt) })
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestListenReusePort(t *testing.T) {
	a := listenTCP(t)
	if sockopt(t, a, unix.SO_REUSEPORT) != 1 || sockopt(t, a, unix.SO_REUSEADDR) != 1 {
		t.Fatal("SO_REUSEPORT / SO_REUSEADDR not set")
	}
	// A second, independent socket on the same port: what an unmodified
	// server does in --mode reuseport, and the fallback of Listener.
	b, err := Listen(context.Background(), "tcp", a.Addr().String())
	if err != nil {
		t.Fatalf("second bind of %s: %v", a.Addr(), err)
	}
	b.Close()
	if _, err := Listen(context.Background(), "udp", ":0"); err == nil || !strings.Contains(err.Error(), "unsupported network") {
		t.Errorf("udp: %v", err)
	}
}

func TestListenUnix(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")

	// A stale socket: its server died without removing the file.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	ln, err := Listen(context.Background(), "unix", path)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != UnixSocketMode {
		t.Errorf("socket mode %v, %v; want %v", fi.Mode().Perm(), err, UnixSocketMode)
	}
	// A live one is not replaced.
	if _, err := Listen(context.Background(), "unix", path); err == nil || !strings.Contains(err.Error(), "in use by a running server") {
		t.Errorf("over a live socket: %v", err)
	}
	ln.Close()
	// Nor is a regular file.
	regular := filepath.Join(dir, "file")
	os.WriteFile(regular, []byte("keep me"), 0o600)
	if _, err := Listen(context.Background(), "unix", regular); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("over a regular file: %v", err)
	}
	// Abstract sockets have no file.
	ab, err := Listen(context.Background(), "unix", "@reuseport-test-"+filepath.Base(dir))
	if err != nil {
		t.Fatal(err)
	}
	ab.Close()
}

// TestExportKeepsNonBlocking pins the reason ExportFiles exists: the
// listening socket's open file description is shared by PID 1 and every
// generation, and must stay O_NONBLOCK whatever is done with the exports.
func TestExportKeepsNonBlocking(t *testing.T) {
	ln := listenTCP(t)
	files, _ := export(t, NamedListener{"http", ln})
	for _, f := range files {
		f.Fd() // os.StartProcess does this for every file it passes
		if flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
			t.Errorf("exported fd is not close-on-exec in the parent: %#x %v", flags, err)
		}
	}
	// Really pass it to a child, which runs Go and takes the fd.
	cmd := exec.Command("/bin/true")
	cmd.ExtraFiles = files
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if !isNonBlocking(ln) {
		t.Fatal("ExportFiles (or passing its files) made the shared listener blocking")
	}

	// The hazard it avoids, so that a change in Go is noticed.
	other := listenTCP(t)
	f, err := other.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Fd()
	if isNonBlocking(other) {
		t.Log("note: (*net.TCPListener).File().Fd() no longer switches the socket to blocking in this Go version")
	} else {
		t.Log("confirmed: (*net.TCPListener).File().Fd() switches the shared socket to blocking; ExportFiles does not")
	}
}

func TestExportFilesErrors(t *testing.T) {
	ln := listenTCP(t)
	for _, tc := range []struct {
		named []NamedListener
		err   string
	}{
		{[]NamedListener{{"", ln}}, "1 to 255 characters"},
		{[]NamedListener{{"a:b", ln}}, "without spaces or ':'"},
		{[]NamedListener{{"a", ln}, {"a", ln}}, "name used twice"},
		{[]NamedListener{{"x", fakeListener{}}}, "does not expose its descriptor"},
	} {
		if _, _, err := ExportFiles(tc.named); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ExportFiles(%v): %v, want %q", tc.named, err, tc.err)
		}
	}
	files, env := export(t, NamedListener{"http", ln}, NamedListener{"admin", ln})
	if len(files) != 2 || strings.Join(env, " ") != "LISTEN_FDS=2 LISTEN_FDNAMES=http:admin" {
		t.Errorf("env %q", env)
	}
}

type fakeListener struct{ net.Listener }

func TestShimExitCodes(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-exec")
	os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644)
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, []byte("\x00\x01 not an executable"), 0o755)
	for _, tc := range []struct {
		target string
		code   int
		stderr string
	}{
		{"/does/not/exist", 127, "no such file or directory"},
		{"no-such-command-hotswap", 127, "command not found in PATH"},
		{notExec, 126, "permission denied"},
		{dir, 126, "permission denied"},
		{garbage, 126, "exec format error"},
		{"", 2, "usage"},
	} {
		path, argv := ShimCommand(self, tc.target, nil)
		cmd := &exec.Cmd{Path: path, Args: argv}
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != tc.code || !strings.Contains(string(out), tc.stderr) {
			t.Errorf("shim %q: %v, output %q; want exit %d and %q", tc.target, err, out, tc.code, tc.stderr)
		}
	}
	// And the success path, with arguments and PATH lookup.
	path, argv := ShimCommand(self, "sh", []string{"-c", `echo "$0 pid=$$ listen_pid=$LISTEN_PID"`, "x"})
	cmd := &exec.Cmd{Path: path, Args: argv, Env: append(os.Environ(), "LISTEN_FDS=0", "LISTEN_PID=1")}
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "x pid=" + strconv.Itoa(cmd.Process.Pid) + " listen_pid=" + strconv.Itoa(cmd.Process.Pid) + "\n"; string(out) != want {
		t.Errorf("shim output %q, want %q", out, want)
	}
}

func TestShimEnv(t *testing.T) {
	got := execshim.Env([]string{"A=1", "LISTEN_PID=9", "LISTEN_FDS=2"}, 42)
	if strings.Join(got, " ") != "A=1 LISTEN_FDS=2 LISTEN_PID=42" {
		t.Errorf("with fds: %q", got)
	}
	got = execshim.Env([]string{"A=1", "LISTEN_PID=9"}, 42)
	if strings.Join(got, " ") != "A=1" {
		t.Errorf("without fds: %q", got)
	}
}
