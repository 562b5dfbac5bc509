package entrypoint

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestOSExecBesideReaper: os/exec inside the process (client-go runs exec
// credential plugins with it) gets every exit status while the reaper runs
// and reaps a stream of orphans meanwhile. A wait4(-1) reaper takes some of
// those statuses, and Cmd.Wait fails with "no child processes".
func TestOSExecBesideReaper(t *testing.T) {
	const runs, workers = 500, 4
	r := newTestReaper(t)
	before := r.Orphans()

	// The orphan stream: spawners that each leave 10 zombies to us.
	stop := make(chan struct{})
	var spawned atomic.Int64
	var spawners sync.WaitGroup
	spawners.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			p, err := r.Start(helperSpec(t, "zombies", "10"))
			if err != nil {
				t.Errorf("start spawner: %v", err)
				return
			}
			if st := waitDone(t, p, 30*time.Second); st.Code() != 0 {
				t.Errorf("spawner: %v", st)
				return
			}
			spawned.Add(10)
		}
	})

	var failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < runs; i += workers {
				code := i % 7
				err := exec.Command("/bin/sh", "-c", "exit "+strconv.Itoa(code)).Run()
				var ee *exec.ExitError
				switch {
				case code == 0 && err == nil:
				case code != 0 && errors.As(err, &ee) && ee.ExitCode() == code:
				default:
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("run %d (exit %d): %v", i, code, err))
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	spawners.Wait()

	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d os/exec runs lost their status beside the reaper; first: %v", n, runs, firstErr.Load())
	}
	want := uint64(spawned.Load())
	deadline := time.Now().Add(10 * time.Second)
	for r.Orphans()-before < want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := r.Orphans() - before; got != want {
		t.Errorf("reaped %d orphans, want %d", got, want)
	}
	t.Logf("%d os/exec runs, %d failed; %d orphans reaped meanwhile", runs, failed.Load(), r.Orphans()-before)
}

// TestOrphanHeldByPidfdOfOursIsReaped: a pidfd this package holds on an
// orphan (a group member it may signal) does not make the reaper leave the
// orphan to someone else.
func TestOrphanHeldByPidfdOfOursIsReaped(t *testing.T) {
	r := newTestReaper(t)
	null := devNull(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	// The orphan waits for its pidfd to be taken, then exits.
	go1 := filepath.Join(t.TempDir(), "go")
	spawner, err := r.Start(Spec{
		Path:  "/bin/sh",
		Argv:  []string{"sh", "-c", "sh -c 'echo $$ > " + pidFile + "; while [ ! -e " + go1 + " ]; do sleep 0.01; done' &"},
		Files: []*os.File{null, null, null},
	})
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, spawner, 5*time.Second)
	orphan := waitPIDFile(t, pidFile)
	fd, err := openPidfd(orphan)
	if err != nil {
		t.Fatal(err)
	}
	defer closePidfd(fd)
	before := r.Orphans()
	if err := os.WriteFile(go1, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.Orphans() == before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if r.Orphans() == before {
		t.Fatalf("orphan %d not reaped while only our own pidfd held it (state %c)", orphan, procState(orphan))
	}
}

// pidnsEnv marks the re-executed test binary that runs as PID 1 of a PID
// namespace of its own, where it may steer PID allocation.
const pidnsEnv = "ENTRYPOINT_TEST_PIDNS"

// inOwnPIDNamespace re-runs the calling test as PID 1 of a new PID (and
// mount) namespace and reports false; in that re-run, it mounts the new
// /proc and reports true.
func inOwnPIDNamespace(t *testing.T) bool {
	t.Helper()
	if os.Getenv(pidnsEnv) != "" {
		if os.Getpid() != 1 {
			t.Fatalf("%s set but we are pid %d", pidnsEnv, os.Getpid())
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("proc", "/proc", "proc", 0, ""); err != nil {
			t.Fatal(err)
		}
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: a PID namespace of its own to force PID reuse")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), pidnsEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	t.Logf("in a PID namespace of its own:\n%s", out)
	if err != nil {
		t.Fatalf("re-run: %v", err)
	}
	return false
}

// strangerAt starts, through a throwaway shell, a setsid process that is
// not our child and gets PID pid, by setting ns_last_pid just before the
// shell forks. It returns false when another fork took the PID first.
func strangerAt(t *testing.T, r *Reaper, pid int) bool {
	t.Helper()
	null := devNull(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	sh, err := r.Start(Spec{
		Path: "/bin/sh",
		Argv: []string{"sh", "-c", "echo " + strconv.Itoa(pid-1) + " > /proc/sys/kernel/ns_last_pid; " +
			"setsid sleep 60 & echo $! > " + pidFile},
		Files: []*os.File{null, null, null},
	})
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, sh, 5*time.Second)
	got := waitPIDFile(t, pidFile)
	deadline := time.Now().Add(5 * time.Second)
	for ProcessGroup(got) != got && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // until setsid ran
	}
	if got != pid {
		_ = syscall.Kill(got, syscall.SIGKILL)
		return false
	}
	if ProcessGroup(got) != got {
		t.Fatalf("stranger %d did not lead its own group (%d)", got, ProcessGroup(got))
	}
	t.Cleanup(func() { _ = syscall.Kill(got, syscall.SIGKILL) })
	return true
}

// TestSignalNeverReachesReusedGroup: once a generation is reaped, its PID may
// go to an unrelated process that leads a group of the same number; Signal
// and Kill must never reach it — neither when the group died with its
// leader, nor when it outlived the leader and died later.
func TestSignalNeverReachesReusedGroup(t *testing.T) {
	if !inOwnPIDNamespace(t) {
		return
	}
	r := newTestReaper(t)
	null := devNull(t)

	t.Run("group died with its leader", func(t *testing.T) {
		for try := 0; ; try++ {
			p, err := r.Start(Spec{Path: "/bin/sh", Argv: []string{"sh", "-c", "exit 0"}, Files: []*os.File{null, null, null}})
			if err != nil {
				t.Fatal(err)
			}
			waitDone(t, p, 5*time.Second)
			if !strangerAt(t, r, p.PID) {
				if try < 5 {
					continue
				}
				t.Fatalf("could not get pid %d reused in 5 tries", p.PID)
			}
			if err := p.Kill(); !errors.Is(err, ErrDone) {
				t.Errorf("Kill of a reaped generation: %v, want ErrDone", err)
			}
			time.Sleep(50 * time.Millisecond)
			if s := procState(p.PID); s == 0 || s == 'Z' {
				t.Errorf("the stranger that got pid %d was killed (state %q)", p.PID, s)
			}
			return
		}
	})

	t.Run("group outlived its leader", func(t *testing.T) {
		memberFile := filepath.Join(t.TempDir(), "member")
		for try := 0; ; try++ {
			// The leader leaves a member of its group behind and exits.
			p, err := r.Start(Spec{
				Path:  "/bin/sh",
				Argv:  []string{"sh", "-c", "sleep 60 & echo $! > " + memberFile},
				Files: []*os.File{null, null, null},
			})
			if err != nil {
				t.Fatal(err)
			}
			waitDone(t, p, 5*time.Second)
			member := waitPIDFile(t, memberFile)
			os.Remove(memberFile)
			if pg := ProcessGroup(member); pg != p.PID {
				t.Fatalf("member %d in group %d, want %d", member, pg, p.PID)
			}
			// The group lives on: Signal reaches the member.
			if err := p.Signal(syscall.SIGTERM); err != nil {
				t.Fatalf("Signal with the leader reaped and a member alive: %v", err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for procState(member) != 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if s := procState(member); s != 0 {
				t.Fatalf("member %d survived the group's SIGTERM (state %c)", member, s)
			}
			// Now the number is free: a stranger takes it.
			if !strangerAt(t, r, p.PID) {
				if try < 5 {
					continue
				}
				t.Fatalf("could not get pid %d reused in 5 tries", p.PID)
			}
			if err := p.Kill(); !errors.Is(err, ErrDone) {
				t.Errorf("Kill after the group died: %v, want ErrDone", err)
			}
			time.Sleep(50 * time.Millisecond)
			if s := procState(p.PID); s == 0 || s == 'Z' {
				t.Errorf("the stranger that got pid %d was killed (state %q)", p.PID, s)
			}
			return
		}
	})
}

// TestKillTree: a double-forked setsid daemon, in no group of ours, is found
// by the marker it inherited and killed; a process with another marker and
// one with the same marker that is older than the process are left alone.
func TestKillTree(t *testing.T) {
	r := newTestReaper(t)
	null := devNull(t)
	dir := t.TempDir()
	marker := "ENTRYPOINT_TEST_TREE=" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	daemon := func(name, env string) int {
		t.Helper()
		f := filepath.Join(dir, name)
		p, err := r.Start(Spec{
			Path:  "/bin/sh",
			Argv:  []string{"sh", "-c", "setsid sh -c 'echo $$ > " + f + "; exec sleep 60' &"},
			Env:   []string{env},
			Files: []*os.File{null, null, null},
		})
		if err != nil {
			t.Fatal(err)
		}
		waitDone(t, p, 5*time.Second)
		pid := waitPIDFile(t, f)
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
		return pid
	}
	older := daemon("older", marker)
	other := daemon("other", marker+"x")
	time.Sleep(30 * time.Millisecond) // /proc start times tick at 10ms

	f := filepath.Join(dir, "left")
	p, err := r.Start(Spec{
		Path:  "/bin/sh",
		Argv:  []string{"sh", "-c", "setsid sh -c 'echo $$ > " + f + "; exec sleep 60' & sleep 60"},
		Env:   []string{marker},
		Files: []*os.File{null, null, null},
	})
	if err != nil {
		t.Fatal(err)
	}
	left := waitPIDFile(t, f)
	t.Cleanup(func() { _ = syscall.Kill(left, syscall.SIGKILL) })
	deadline := time.Now().Add(5 * time.Second)
	for ProcessGroup(left) != left && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	n, err := p.KillTree(marker)
	if err != nil {
		t.Fatal(err)
	}
	if st := waitDone(t, p, 5*time.Second); st.Signal != syscall.SIGKILL {
		t.Errorf("the process itself: %v, want killed by SIGKILL", st)
	}
	deadline = time.Now().Add(5 * time.Second)
	for procState(left) != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if s := procState(left); s != 0 {
		t.Errorf("daemon %d left behind survived KillTree (state %c)", left, s)
	}
	if n < 1 {
		t.Errorf("KillTree reported %d processes, want at least the daemon", n)
	}
	for _, pid := range []int{older, other} {
		if s := procState(pid); s == 0 || s == 'Z' {
			t.Errorf("process %d, not left behind by this one, was killed", pid)
		}
	}
}

func ownFDCount() int {
	ownFDs.Lock()
	defer ownFDs.Unlock()
	return len(ownFDs.m)
}

// quiesce waits (up to 15 s) until the children and group pidfds that
// earlier tests left behind are gone, so that a test counting orphans or
// pidfds counts only its own: a daemon an earlier test started (a `sleep 3
// &` that outlived its group) is reaped as an orphan whenever it ends, and
// its group's pidfds are let go then.
func quiesce(t *testing.T) {
	t.Helper()
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if len(children()) == 0 && ownFDCount() == 0 {
			return
		}
	}
	t.Logf("still %d children and %d group pidfds from earlier tests", len(children()), ownFDCount())
}

// TestNoPidfdLeak: the pidfds held on a group that outlived its leader are
// let go once its members are gone, with no Signal to notice it; a group of
// zombies (a leader that never reaped its children) takes none.
func TestNoPidfdLeak(t *testing.T) {
	r := newTestReaper(t)
	null := devNull(t)
	quiesce(t)
	base := ownFDCount()
	before := r.Orphans()
	p, err := r.Start(helperSpec(t, "zombies", "50"))
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, p, 30*time.Second)
	if n := ownFDCount() - base; n != 0 {
		t.Errorf("%d pidfds held on a group of zombies", n)
	}
	p, err = r.Start(Spec{Path: "/bin/sh", Argv: []string{"sh", "-c", "sleep 3 & exit 0"}, Files: []*os.File{null, null, null}})
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, p, 5*time.Second)
	// The members are adopted off the reaper's goroutine; Signal waits for
	// it, and so does this.
	for end := time.Now().Add(2 * time.Second); ownFDCount()-base != 1 && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
	}
	if n := ownFDCount() - base; n != 1 {
		t.Errorf("%d pidfds held on a group whose one live member outlived its leader, want 1", n)
	}
	deadline := time.Now().Add(8 * time.Second)
	for (ownFDCount() != base || r.Orphans()-before < 51) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := ownFDCount() - base; n != 0 {
		t.Errorf("%d pidfds still held after the member was reaped", n)
	}
}
