package reuseport

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	sdactivation "github.com/coreos/go-systemd/v22/activation"
	"golang.org/x/sys/unix"

	"github.com/hotswap-dev/hotswap/reuseport/activation"
)

// childEnv selects what the re-executed test binary does (tableflip's trick:
// the test binary is its own child process, and its own exec shim).
const childEnv = "REUSEPORT_TEST_CHILD"

func TestMain(m *testing.M) {
	activation.RunShimIfRequested() // the test binary doubles as hotswap's exec shim
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(runChild(role))
	}
	os.Exit(m.Run())
}

// childReport is what a child prints as its first line of stdout.
type childReport struct {
	PID          int      `json:"pid"`
	ListenPIDEnv string   `json:"listen_pid_env"` // LISTEN_PID as the child saw it
	Names        []string `json:"names"`
	EnvAfter     string   `json:"env_after"` // LISTEN_FDS after taking the listeners
	NonBlocking  bool     `json:"non_blocking"`
	Addr         string   `json:"addr"`
	Err          string   `json:"err,omitempty"`
}

// runChild serves HTTP ("pid=N") on the listener named "http" until stdin
// closes. Roles: "systemd" takes it with go-systemd's activation package,
// "reuseport" with Listener (fallback from $REUSEPORT_TEST_FALLBACK) and
// reports readiness with sd_notify.
func runChild(role string) int {
	rep := childReport{PID: os.Getpid(), ListenPIDEnv: os.Getenv("LISTEN_PID")}
	var ln net.Listener
	switch role {
	case "systemd":
		m, err := sdactivation.ListenersWithNames()
		if err != nil {
			rep.Err = err.Error()
		}
		for name, lns := range m {
			rep.Names = append(rep.Names, name)
			if name == "http" {
				ln = lns[0]
			}
		}
	case "reuseport":
		var err error
		ln, err = Listener("http", os.Getenv("REUSEPORT_TEST_FALLBACK"))
		if err != nil {
			rep.Err = err.Error()
		}
		all, _ := Listeners()
		for name := range all {
			rep.Names = append(rep.Names, name)
		}
	default:
		fmt.Fprintf(os.Stderr, "unknown role %q\n", role)
		return 2
	}
	rep.EnvAfter = os.Getenv("LISTEN_FDS")
	if ln == nil {
		if rep.Err == "" {
			rep.Err = "no listener named http"
		}
		json.NewEncoder(os.Stdout).Encode(rep)
		return 1
	}
	rep.Addr = ln.Addr().String()
	rep.NonBlocking = isNonBlocking(ln)
	s := Serve(&http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pid=%d", os.Getpid())
	})}, ln)
	if role == "reuseport" {
		if err := Ready(); err != nil {
			rep.Err = err.Error()
		}
	}
	json.NewEncoder(os.Stdout).Encode(rep)
	io.Copy(io.Discard, os.Stdin)
	if err := s.Drain(context.Background(), 100*time.Millisecond); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
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

// child is a started child process and its first report.
type child struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	rep      childReport
	wantExit int // checked when the test ends
}

// startChild starts the test binary as role, through the shim if viaShim,
// with files at fds 3.. and extra environment.
func startChild(t *testing.T, role string, viaShim bool, files []*os.File, env []string) *child {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := &exec.Cmd{Path: self, Args: []string{self}}
	if viaShim {
		cmd.Path, cmd.Args = activation.ShimCommand("/proc/self/exe", self, nil)
	}
	cmd.Env = append(append(os.Environ(), childEnv+"="+role), env...)
	cmd.ExtraFiles = files
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
			if got := cmd.ProcessState.ExitCode(); got != c.wantExit {
				t.Errorf("child %s exited %d, want %d", role, got, c.wantExit)
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Errorf("child %s did not exit", role)
		}
	})
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err != nil {
		t.Fatalf("child %s report: %v", role, err)
	}
	if err := json.Unmarshal(line, &c.rep); err != nil {
		t.Fatalf("child %s report %q: %v", role, line, err)
	}
	return c
}

// get does one HTTP/1.1 request on a fresh connection and returns the body.
func get(t *testing.T, network, addr string) string {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func listenTCP(t *testing.T) net.Listener {
	t.Helper()
	ln, err := activation.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func export(t *testing.T, named ...activation.NamedListener) ([]*os.File, []string) {
	t.Helper()
	files, env, err := activation.ExportFiles(named)
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

// TestSystemdServerUnchanged: a server written for systemd (go-systemd's
// activation.ListenersWithNames) works with ExportFiles + the shim, and its
// LISTEN_PID is its own PID.
func TestSystemdServerUnchanged(t *testing.T) {
	http1, admin := listenTCP(t), listenTCP(t)
	files, env := export(t, activation.NamedListener{Name: "http", Listener: http1}, activation.NamedListener{Name: "admin", Listener: admin})
	c := startChild(t, "systemd", true, files, env)
	if c.rep.Err != "" {
		t.Fatalf("child: %s", c.rep.Err)
	}
	if want := strconv.Itoa(c.cmd.Process.Pid); c.rep.ListenPIDEnv != want || c.rep.PID != c.cmd.Process.Pid {
		t.Errorf("child saw LISTEN_PID=%s, pid %d; want both %s", c.rep.ListenPIDEnv, c.rep.PID, want)
	}
	if got := strings.Join(slices.Sorted(slices.Values(c.rep.Names)), ","); got != "admin,http" {
		t.Errorf("names = %s, want admin,http", got)
	}
	if c.rep.EnvAfter != "" {
		t.Errorf("LISTEN_FDS still set in child: %q", c.rep.EnvAfter)
	}
	// The parent holds the socket and never accepts: the child answers.
	if got, want := get(t, "tcp", http1.Addr().String()), fmt.Sprintf("pid=%d", c.rep.PID); got != want {
		t.Errorf("response %q, want %q", got, want)
	}
	if !isNonBlocking(http1) || !isNonBlocking(admin) {
		t.Error("shared listener became blocking")
	}
}

// TestListenerInherited: the reuseport server side through the shim, with
// readiness over a NotifySocket checked against the child's PID.
func TestListenerInherited(t *testing.T) {
	tcp := listenTCP(t)
	dir := t.TempDir()
	ux, err := activation.Listen(context.Background(), "unix", dir+"/http.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer ux.Close()
	ns, err := activation.NewNotifySocket(dir + "/notify.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	files, env := export(t, activation.NamedListener{Name: "http", Listener: tcp}, activation.NamedListener{Name: "unix", Listener: ux})
	c := startChild(t, "reuseport", true, files, append(env, "NOTIFY_SOCKET="+ns.Path()))
	if c.rep.Err != "" {
		t.Fatalf("child: %s", c.rep.Err)
	}
	msg, err := ns.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if msg.PID != c.cmd.Process.Pid || msg.Fields["READY"] != "1" || msg.UID != os.Getuid() {
		t.Errorf("notify %+v, want READY=1 from pid %d uid %d", msg, c.cmd.Process.Pid, os.Getuid())
	}
	if !c.rep.NonBlocking || c.rep.EnvAfter != "" {
		t.Errorf("child report %+v: want non-blocking listener and LISTEN_FDS unset", c.rep)
	}
	if c.rep.Addr != tcp.Addr().String() {
		t.Errorf("child serves %s, want the inherited %s", c.rep.Addr, tcp.Addr())
	}
	want := fmt.Sprintf("pid=%d", c.rep.PID)
	if got := get(t, "tcp", tcp.Addr().String()); got != want {
		t.Errorf("tcp response %q, want %q", got, want)
	}
	if !isNonBlocking(tcp) {
		t.Error("shared listener became blocking")
	}
}

// TestListenerNotOurs: started without the shim, LISTEN_PID is not the
// child's PID, so the descriptors are not its own and it binds its fallback.
func TestListenerNotOurs(t *testing.T) {
	tcp := listenTCP(t)
	files, env := export(t, activation.NamedListener{Name: "http", Listener: tcp})
	env = append(env, "LISTEN_PID="+strconv.Itoa(os.Getpid()), "REUSEPORT_TEST_FALLBACK=tcp://127.0.0.1:0")
	c := startChild(t, "reuseport", false, files, env)
	if c.rep.Err != "" {
		t.Fatalf("child: %s", c.rep.Err)
	}
	if c.rep.Addr == tcp.Addr().String() || len(c.rep.Names) != 0 {
		t.Errorf("child took descriptors meant for another process: %+v", c.rep)
	}
}

// TestListenerWrongName: a name that was not passed is an error, not a
// silent fallback bind.
func TestListenerWrongName(t *testing.T) {
	tcp := listenTCP(t)
	files, env := export(t, activation.NamedListener{Name: "web", Listener: tcp})
	c := startChild(t, "reuseport", true, files, append(env, "REUSEPORT_TEST_FALLBACK=127.0.0.1:0"))
	if !strings.Contains(c.rep.Err, `no listener named "http" among the inherited ones (web)`) {
		t.Errorf("child error %q", c.rep.Err)
	}
	c.wantExit = 1
}
