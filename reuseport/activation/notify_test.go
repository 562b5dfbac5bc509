package activation

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestNotifyFromChild(t *testing.T) {
	ns, err := NewNotifySocket(filepath.Join(t.TempDir(), "notify.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	c := startNotifyChild(t, ns.Path())
	msg, err := ns.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if msg.PID != c || msg.Fields["READY"] != "1" || msg.Fields["STATUS"] != "child here" {
		t.Errorf("got %+v, want READY=1 and STATUS from pid %d", msg, c)
	}
}

// startNotifyChild runs the "notify" child through the shim and returns its PID.
func startNotifyChild(t *testing.T, socket string) int {
	t.Helper()
	self, _ := os.Executable()
	path, argv := ShimCommand("/proc/self/exe", self, nil)
	p, err := os.StartProcess(path, argv, &os.ProcAttr{
		Env:   append(os.Environ(), childEnv+"=notify", "NOTIFY_SOCKET="+socket),
		Files: []*os.File{nil, os.Stdout, os.Stderr},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if st, err := p.Wait(); err != nil || !st.Success() {
			t.Errorf("notify child: %v %v", st, err)
		}
	})
	return p.Pid
}

func TestNotifyInProcess(t *testing.T) {
	for _, path := range []string{filepath.Join(t.TempDir(), "n.sock"), "@reuseport-notify-test"} {
		ns, err := NewNotifySocket(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv("NOTIFY_SOCKET", ns.Path())
		if err := Notify("STOPPING=1"); err != nil {
			t.Fatal(err)
		}
		msg, err := ns.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if msg.PID != os.Getpid() || msg.UID != os.Getuid() || msg.Fields["STOPPING"] != "1" {
			t.Errorf("%s: got %+v", path, msg)
		}
		if err := ns.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := ns.Recv(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Recv after Close: %v", err)
		}
		if path[0] == '/' {
			if _, err := os.Lstat(path); !os.IsNotExist(err) {
				t.Errorf("socket file left behind: %v", err)
			}
		}
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if err := Notify("READY=1"); err != nil {
		t.Errorf("Notify without NOTIFY_SOCKET: %v", err)
	}
	t.Setenv("NOTIFY_SOCKET", "relative")
	if err := Notify("READY=1"); err == nil {
		t.Error("relative NOTIFY_SOCKET accepted")
	}
}

// TestNotifyClosesPassedFds: a child can attach descriptors (FDSTORE=1);
// PID 1 must not accumulate them.
func TestNotifyClosesPassedFds(t *testing.T) {
	ns, err := NewNotifySocket(filepath.Join(t.TempDir(), "n.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	before := countFds(t)
	sock, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sock)
	r, w, _ := os.Pipe()
	defer r.Close()
	defer w.Close()
	for i := 0; i < 20; i++ {
		rights := unix.UnixRights(int(r.Fd()), int(w.Fd()))
		if err := unix.Sendmsg(sock, []byte("FDSTORE=1"), rights, &unix.SockaddrUnix{Name: ns.Path()}, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := ns.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	if after := countFds(t); after > before+3 { // the conn and the pipe
		t.Errorf("fds went from %d to %d: received descriptors leak", before, after)
	}
}

func countFds(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestNotifySocketErrors(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "file")
	os.WriteFile(regular, nil, 0o600)
	if _, err := NewNotifySocket(regular); err == nil {
		t.Error("replaced a regular file")
	}
	// A stale socket file is replaced.
	path := filepath.Join(dir, "n.sock")
	a, err := NewNotifySocket(path)
	if err != nil {
		t.Fatal(err)
	}
	a.conn.Close() // dies without removing its file
	b, err := NewNotifySocket(path)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	b.Close()
}
