package pid1

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// mode is how hotswap runs.
type mode int

const (
	// asPID1: hotswap is PID 1 of a new PID and mount namespace.
	asPID1 mode = iota
	// asSubreaper: hotswap is the child of a namespace's PID 1 that never
	// reaps (like the pause container with shareProcessNamespace), so only
	// hotswap's own subreaper duty keeps zombies away.
	asSubreaper
	// onHost: hotswap is a plain child of the test, in the machine's
	// namespaces (no unshare at all), a subreaper.
	onHost
)

func (m mode) String() string { return [...]string{"pid1", "subreaper", "host"}[m] }

// opts are how a test wants hotswap run.
type opts struct {
	mode  mode
	uid   int      // run as this user (namespaces only); 0: root
	ro    bool     // read-only root filesystem
	rw    []string // directories kept writable under a read-only root
	tmpfs []string // directories that get a fresh tmpfs
	env   []string // extra environment for hotswap
	// memfdNoexec sets vm.memfd_noexec=2 in hotswap's PID namespace.
	memfdNoexec bool
	// runtimeDir: "" gives each run its own under the test's temp dir, so
	// parallel runs never share /run/hotswap; "-" passes none (fallback).
	runtimeDir string
}

// run is one hotswap process under test.
type run struct {
	t    testing.TB
	cmd  *exec.Cmd
	pid  int // hotswap's PID as the test sees it
	out  *syncBuffer
	done chan struct{}
	code int
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startHotswap runs hotswap with args (its flags, "--", the command) the way
// o says. The run is killed, with everything it started, when the test ends.
func startHotswap(t testing.TB, o opts, args ...string) *run {
	t.Helper()
	switch o.runtimeDir {
	case "":
		dir := filepath.Join(tempDir(t), "run")
		args = append([]string{"--runtime-dir", dir}, args...)
	case "-":
	default:
		args = append([]string{"--runtime-dir", o.runtimeDir}, args...)
	}
	var cmd *exec.Cmd
	env := append(os.Environ(), o.env...)
	switch o.mode {
	case onHost:
		cmd = exec.Command(hotswapBin, args...)
	default:
		self, err := os.Readlink("/proc/self/ns/mnt")
		if err != nil {
			t.Fatal(err)
		}
		nsArgs := []string{helperArg, "nsexec", "parent-mntns=" + self}
		if o.mode == asSubreaper {
			nsArgs[1] = "nsinit"
		}
		if o.ro {
			nsArgs = append(nsArgs, "ro")
		}
		for _, d := range o.rw {
			nsArgs = append(nsArgs, "rw="+d)
		}
		for _, d := range o.tmpfs {
			nsArgs = append(nsArgs, "tmpfs="+d)
		}
		if o.uid != 0 {
			nsArgs = append(nsArgs, "uid="+strconv.Itoa(o.uid))
		}
		if o.memfdNoexec {
			nsArgs = append(nsArgs, "memfd-noexec")
		}
		nsArgs = append(nsArgs, "--", hotswapBin)
		cmd = exec.Command(helperBin, append(nsArgs, args...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS}
		env = append(env, "PID1_NS=1")
	}
	r := &run{t: t, cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = r.out, r.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start hotswap: %v", err)
	}
	go func() {
		err := cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			ws := ee.Sys().(syscall.WaitStatus)
			r.code = ws.ExitStatus()
			if ws.Signaled() {
				r.code = 128 + int(ws.Signal())
			}
		default:
			r.code = -1
		}
		close(r.done)
	}()
	t.Cleanup(r.kill)
	r.pid = cmd.Process.Pid
	if o.mode == asSubreaper {
		r.pid = r.childOf(cmd.Process.Pid)
	}
	return r
}

// childOf finds the child of pid (the namespace's init starts hotswap).
func (r *run) childOf(pid int) int {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			c, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if _, ppid := procStat(c); ppid == pid {
				return c
			}
		}
		select {
		case <-r.done:
			r.t.Fatalf("namespace init exited (%d) before starting hotswap:\n%s", r.code, r.out)
		case <-time.After(5 * time.Millisecond):
		}
	}
	r.t.Fatalf("no child of %d after 10s", pid)
	return 0
}

// kill ends the run and everything it started: the namespace dies with its
// PID 1; on the host, every descendant is killed first.
func (r *run) kill() {
	select {
	case <-r.done:
		return
	default:
	}
	for _, pid := range descendants(r.cmd.Process.Pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	_ = r.cmd.Process.Kill()
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		r.t.Errorf("hotswap %d did not die on SIGKILL", r.cmd.Process.Pid)
	}
}

// descendants lists every process below pid.
func descendants(pid int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid := procStat(c); ppid != 0 {
			children[ppid] = append(children[ppid], c)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// signal sends sig to hotswap.
func (r *run) signal(sig syscall.Signal) {
	r.t.Helper()
	if err := syscall.Kill(r.pid, sig); err != nil {
		r.t.Fatalf("signal %v to hotswap %d: %v", sig, r.pid, err)
	}
}

// wait returns hotswap's exit code, failing the test if it runs longer than d.
func (r *run) wait(d time.Duration) int {
	r.t.Helper()
	select {
	case <-r.done:
		return r.code
	case <-time.After(d):
		r.t.Fatalf("hotswap still running after %s; output:\n%s", d, r.out)
		return 0
	}
}

// running reports whether hotswap has not exited.
func (r *run) running() bool {
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// tempDir is a directory every user may write, removed after the test (the
// testing package's TempDir is 0700: nobody could not use it).
func tempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "pid1-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(d, 0o777)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// childCmd is the command line of a child helper.
func childCmd(args ...string) []string {
	return append([]string{"--", helperBin, helperArg, "child"}, args...)
}

// waitLog waits until the file at path contains want and returns its text.
func waitLog(t testing.TB, r *run, path, want string, d time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), want) {
			return string(b)
		}
		if time.Now().After(deadline) {
			out := ""
			if r != nil {
				out = r.out.String()
			}
			t.Fatalf("%s: no %q after %s; it has:\n%s\nhotswap output:\n%s", filepath.Base(path), want, d, b, out)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func mustContain(t testing.TB, what, s string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(s, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, s)
		}
	}
}

func modes() []mode { return []mode{asPID1, asSubreaper, onHost} }

func forModes(t *testing.T, ms []mode, f func(t *testing.T, m mode)) {
	for _, m := range ms {
		t.Run(m.String(), func(t *testing.T) {
			t.Parallel()
			f(t, m)
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
