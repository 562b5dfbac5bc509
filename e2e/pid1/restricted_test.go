package pid1

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRestricted: hotswap works as Kubernetes' restricted pods run it — as
// a non-root user (nobody, 65534), on a read-only root filesystem, or both —
// with the runtime directory given on a tmpfs (an emptyDir) or found by its
// fallback under $TMPDIR. In each, it forwards signals, swaps by signal and
// through the control socket, and stops with the child's code.
func TestRestricted(t *testing.T) {
	const nobody = 65534
	for _, tc := range []struct {
		name        string
		mode        mode
		uid         int
		ro          bool
		runtimeFlag bool // --runtime-dir on a tmpfs; else TMPDIR fallback
	}{
		{"nobody/pid1", asPID1, nobody, false, false},
		{"nobody/subreaper", asSubreaper, nobody, false, false},
		{"readonly/runtime-dir", asPID1, 0, true, true},
		{"readonly/tmpdir-fallback", asPID1, 0, true, false},
		{"readonly+nobody/pid1", asPID1, nobody, true, false},
		{"readonly+nobody/subreaper", asSubreaper, nobody, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := tempDir(t)
			log := filepath.Join(dir, "child.log")
			tmp := filepath.Join(dir, "tmp") // an emptyDir: a tmpfs when ro
			if err := os.Mkdir(tmp, 0o777); err != nil {
				t.Fatal(err)
			}
			_ = os.Chmod(tmp, 0o1777)
			o := opts{mode: tc.mode, uid: tc.uid, ro: tc.ro, env: []string{"TMPDIR=" + tmp}, runtimeDir: "-"}
			if tc.ro {
				o.rw = []string{dir}
				o.tmpfs = []string{tmp}
			}
			sock := filepath.Join(tmp, "hotswap-"+itoa(tc.uid), "control.sock")
			if tc.runtimeFlag {
				o.runtimeDir = filepath.Join(tmp, "rt")
				sock = filepath.Join(tmp, "rt", "control.sock")
			}
			r := startHotswap(t, o, childCmd("log="+log)...)
			waitLog(t, r, log, "start gen=1", 10*time.Second)
			mustContain(t, "child log", readFile(log), "uid="+itoa(tc.uid))
			waitOutput(t, r, "path="+sock, 5*time.Second)
			if tc.ro {
				if ro, line := rootReadOnly(r.pid); !ro {
					t.Fatalf("root of hotswap's mount namespace is not read-only: %s", line)
				}
			}
			if tc.uid != 0 {
				if uid := procUID(r.pid); uid != tc.uid {
					t.Fatalf("hotswap runs as uid %d, want %d", uid, tc.uid)
				}
			}
			r.signal(syscall.SIGHUP)
			waitLog(t, r, log, "sig HUP\n", 5*time.Second)
			// Swap by signal, then through the control socket, seen from
			// outside through hotswap's own root.
			r.signal(syscall.SIGUSR2)
			waitLog(t, r, log, "start gen=2", 10*time.Second)
			code, out := runCLI(t, hotswapBin, nil, "swap", "--timeout", "15s", "--control-socket", "/proc/"+itoa(r.pid)+"/root"+sock)
			if code != 0 || !strings.Contains(out, "swapped") {
				t.Fatalf("hotswap swap: exit %d:\n%s\nhotswap:\n%s", code, out, r.out)
			}
			waitLog(t, r, log, "start gen=3", 10*time.Second)
			r.signal(syscall.SIGTERM)
			if code := r.wait(15 * time.Second); code != 0 {
				t.Errorf("hotswap exited %d, want 0\n%s", code, r.out)
			}
			// Generations 1 and 2 were drained with TERM, 3 stopped with it.
			if n := strings.Count(readFile(log), "sig TERM"); n != 3 {
				t.Errorf("%d generations got TERM, want 3:\n%s", n, readFile(log))
			}
		})
	}
}

// waitOutput waits until hotswap's output contains want.
func waitOutput(t testing.TB, r *run, want string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(r.out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("hotswap output lacks %q after %s:\n%s", want, d, r.out)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rootReadOnly reports whether / is mounted read-only for pid.
func rootReadOnly(pid int) (bool, string) {
	b, err := os.ReadFile("/proc/" + itoa(pid) + "/mountinfo")
	if err != nil {
		return false, err.Error()
	}
	last := ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[4] == "/" {
			last = line // the topmost mount on / wins
		}
	}
	f := strings.Fields(last)
	if len(f) < 6 {
		return false, last
	}
	for _, o := range strings.Split(f[5], ",") {
		if o == "ro" {
			return true, last
		}
	}
	return false, last
}

// procUID is the real uid of pid.
func procUID(pid int) int {
	b, _ := os.ReadFile("/proc/" + itoa(pid) + "/status")
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n := 0
				for _, c := range f[0] {
					n = n*10 + int(c-'0')
				}
				return n
			}
		}
	}
	return -1
}
