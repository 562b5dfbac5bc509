package entrypoint

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Only one Reaper may run per process. So these tests do not run in
// parallel, each opens its own Reaper and closes it, and the processes they
// supervise are started through Reaper.Start (os/exec beside the reaper is
// tested in TestOSExecBesideReaper).

// newTestReaper opens the process's Reaper for one test and closes it after,
// once every child the test started has been reaped.
func newTestReaper(t testing.TB) *Reaper {
	t.Helper()
	r, err := NewReaper(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("NewReaper: %v", err)
	}
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for r.Live() > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := r.Live(); n > 0 {
			t.Errorf("%d started processes still not reaped at the end of the test", n)
		}
		r.Close()
	})
	return r
}

func devNull(t testing.TB) *os.File {
	t.Helper()
	f, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// waitDone waits for p's status, failing the test after d.
func waitDone(t testing.TB, p *Process, d time.Duration) ExitStatus {
	t.Helper()
	select {
	case <-p.Done():
		return p.Status()
	case <-time.After(d):
		t.Fatalf("pid %d: no status after %s (lost?)", p.PID, d)
		return ExitStatus{}
	}
}

func helperSpec(t testing.TB, helper string, args ...string) Spec {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Spec{Path: self, Argv: append([]string{self}, args...), Env: []string{helperEnv + "=" + helper}}
}

// TestReaperRace starts 10,000 children that exit at once, from several
// goroutines, with distinct exit codes: every status must reach its starter,
// none may be lost or taken for an orphan.
func TestReaperRace(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 1000
	}
	r := newTestReaper(t)
	null := devNull(t)
	quiesce(t) // orphans left by earlier tests are not this test's
	orphansBefore := r.Orphans()

	type started struct {
		p    *Process
		code int
	}
	const starters, inflight = 8, 256
	sem := make(chan struct{}, inflight) // bounds live children, not the race
	results := make(chan started, inflight)
	var startErr atomic.Value
	var wg sync.WaitGroup
	for w := range starters {
		wg.Go(func() {
			for i := w; i < n; i += starters {
				code := i % 256
				sem <- struct{}{}
				p, err := r.Start(Spec{
					Path:  "/bin/sh",
					Argv:  []string{"sh", "-c", "exit " + strconv.Itoa(code)},
					Env:   []string{},
					Files: []*os.File{null, null, null},
				})
				if err != nil {
					startErr.Store(err)
					<-sem
					return
				}
				results <- started{p, code}
			}
		})
	}
	go func() { wg.Wait(); close(results) }()

	got, bad := 0, 0
	for s := range results {
		st := waitDone(t, s.p, 10*time.Second)
		<-sem
		got++
		if st.Signal != 0 || st.Status != s.code || st.Code() != s.code {
			bad++
			if bad <= 5 {
				t.Errorf("pid %d: status %v, want exit status %d", s.p.PID, st, s.code)
			}
		}
		if s.p.Ended().Before(s.p.Started) {
			t.Errorf("pid %d: ended %v before started %v", s.p.PID, s.p.Ended(), s.p.Started)
		}
	}
	if err, _ := startErr.Load().(error); err != nil {
		t.Fatalf("start: %v", err)
	}
	if got != n {
		t.Fatalf("got %d statuses, want %d", got, n)
	}
	if bad > 0 {
		t.Errorf("%d of %d statuses wrong", bad, n)
	}
	if o := r.Orphans() - orphansBefore; o != 0 {
		t.Errorf("%d supervised children were counted as orphans", o)
	}
	if l := r.Live(); l != 0 {
		t.Errorf("Live() = %d after every status arrived", l)
	}
}

func TestReaperOnlyOne(t *testing.T) {
	r := newTestReaper(t)
	if r2, err := NewReaper(nil); !errors.Is(err, ErrReaperRunning) {
		if r2 != nil {
			r2.Close()
		}
		t.Fatalf("second NewReaper: err %v, want ErrReaperRunning", err)
	}
	r.Close()
	r.Close() // idempotent
	r3, err := NewReaper(nil)
	if err != nil {
		t.Fatalf("NewReaper after Close: %v", err)
	}
	r3.Close()
}

// TestReaperOrphans: zombies reparented to us are reaped, counted and
// reported, while the status of the process that left them reaches its
// starter.
func TestReaperOrphans(t *testing.T) {
	const n = 500
	r := newTestReaper(t)
	var mu sync.Mutex
	pids := map[int]ExitStatus{}
	r.OnOrphan(func(pid int, st ExitStatus) {
		mu.Lock()
		pids[pid] = st
		mu.Unlock()
	})
	before := r.Orphans()
	p, err := r.Start(helperSpec(t, "zombies", strconv.Itoa(n)))
	if err != nil {
		t.Fatal(err)
	}
	if st := waitDone(t, p, 60*time.Second); st.Code() != 0 {
		t.Fatalf("zombie spawner: %v", st)
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.Orphans()-before < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := r.Orphans() - before; got != n {
		t.Fatalf("reaped %d orphans, want %d", got, n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(pids) != n {
		t.Fatalf("OnOrphan saw %d distinct PIDs, want %d", len(pids), n)
	}
	for pid, st := range pids {
		if st.Code() != 0 {
			t.Errorf("orphan %d: %v, want exit status 0 (/bin/true)", pid, st)
		}
		if s := procState(pid); s == 'Z' {
			t.Errorf("orphan %d still a zombie", pid)
		}
	}
	mu.Unlock()

	// OnOrphan(nil) unsets the callback: the next orphans are still reaped
	// and counted, and the reaper goroutine does not call a nil func.
	r.OnOrphan(nil)
	before = r.Orphans()
	p, err = r.Start(helperSpec(t, "zombies", "20"))
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, p, 60*time.Second)
	deadline = time.Now().Add(10 * time.Second)
	for r.Orphans()-before < 20 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := r.Orphans() - before; got != 20 {
		t.Fatalf("after OnOrphan(nil): reaped %d orphans, want 20", got)
	}
	mu.Lock()
}

func TestStartErrors(t *testing.T) {
	r := newTestReaper(t)
	dir := t.TempDir()
	notExec := filepath.Join(dir, "script")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\nexit 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		code int
	}{
		{filepath.Join(dir, "missing"), 127},
		{filepath.Join(dir, "missing", "sub"), 127},
		{notExec, 126},
		{dir, 126},
	} {
		p, err := r.Start(Spec{Path: tc.path, Argv: []string{tc.path}})
		if err == nil {
			waitDone(t, p, 5*time.Second)
			t.Errorf("Start(%s) succeeded", tc.path)
			continue
		}
		var se *StartError
		if !errors.As(err, &se) {
			t.Errorf("Start(%s): %T %v, want *StartError", tc.path, err, err)
			continue
		}
		if se.ExitCode() != tc.code {
			t.Errorf("Start(%s): exit code %d, want %d (%v)", tc.path, se.ExitCode(), tc.code, err)
		}
	}
	if r.Live() != 0 {
		t.Errorf("failed starts left %d registered processes", r.Live())
	}
}

// TestProcessSignalGroup: Signal reaches the whole group, including a
// grandchild, and reports ErrDone once the group is gone.
func TestProcessSignalGroup(t *testing.T) {
	r := newTestReaper(t)
	null := devNull(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	// The shell starts a grandchild in its group and waits.
	p, err := r.Start(Spec{
		Path:  "/bin/sh",
		Argv:  []string{"sh", "-c", "sleep 30 & echo $! > " + pidFile + "; wait"},
		Files: []*os.File{null, null, null},
	})
	if err != nil {
		t.Fatal(err)
	}
	grandchild := waitPIDFile(t, pidFile)
	if pg, _ := syscall.Getpgid(grandchild); pg != p.PID {
		t.Fatalf("grandchild group %d, want the child's own group %d", pg, p.PID)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	st := waitDone(t, p, 5*time.Second)
	if st.Signal != syscall.SIGTERM || st.Code() != 143 {
		t.Errorf("status %v (code %d), want killed by SIGTERM (143)", st, st.Code())
	}
	deadline := time.Now().Add(5 * time.Second)
	for procState(grandchild) != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if s := procState(grandchild); s != 0 {
		t.Errorf("grandchild %d survived its group's SIGTERM (state %c)", grandchild, s)
	}
	if err := p.Signal(syscall.SIGTERM); !errors.Is(err, ErrDone) {
		t.Errorf("Signal after exit: %v, want ErrDone", err)
	}
	if err := p.Kill(); !errors.Is(err, ErrDone) {
		t.Errorf("Kill after exit: %v, want ErrDone", err)
	}
}

func waitPIDFile(t testing.TB, path string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(path)
		if err == nil && len(b) > 0 && b[len(b)-1] == '\n' {
			pid, err := strconv.Atoi(string(b[:len(b)-1]))
			if err == nil {
				return pid
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no PID in %s", path)
	return 0
}

// TestStragglers: not being PID 1, Stragglers lists our descendants —
// including a setsid daemon that left every group we know — except the
// groups we skip, and SignalStragglers reaches them.
func TestStragglers(t *testing.T) {
	if IsPID1() {
		t.Skip("the test process is PID 1")
	}
	r := newTestReaper(t)
	null := devNull(t)
	dir := t.TempDir()
	daemonPID := filepath.Join(dir, "daemon")
	// A plain child in its own group.
	plain, err := r.Start(Spec{Path: "/bin/sleep", Argv: []string{"sleep", "30"}, Files: []*os.File{null, null, null}})
	if err != nil {
		t.Fatal(err)
	}
	// A child that leaves a setsid daemon behind and exits: the daemon is
	// reparented to us (subreaper) and is in no group of ours.
	spawner, err := r.Start(Spec{
		Path:  "/bin/sh",
		Argv:  []string{"sh", "-c", "setsid sh -c 'echo $$ > " + daemonPID + "; exec sleep 30' </dev/null >/dev/null 2>&1 &"},
		Files: []*os.File{null, null, null},
	})
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, spawner, 5*time.Second)
	daemon := waitPIDFile(t, daemonPID)
	// Wait until the daemon has exec'd sleep, so it is no longer sh.
	t.Cleanup(func() { _ = syscall.Kill(daemon, syscall.SIGKILL); _ = plain.Kill() })

	contains := func(pids []int, pid int) bool {
		for _, p := range pids {
			if p == pid {
				return true
			}
		}
		return false
	}
	all, err := Stragglers(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !contains(all, plain.PID) || !contains(all, daemon) {
		t.Errorf("Stragglers(nil) = %v, want both %d (child) and %d (setsid orphan)", all, plain.PID, daemon)
	}
	if contains(all, os.Getpid()) {
		t.Errorf("Stragglers lists ourselves")
	}
	if contains(all, os.Getppid()) {
		t.Errorf("Stragglers lists our parent %d: not a descendant", os.Getppid())
	}
	skip, err := Stragglers(map[int]bool{plain.PID: true})
	if err != nil {
		t.Fatal(err)
	}
	if contains(skip, plain.PID) || !contains(skip, daemon) {
		t.Errorf("Stragglers(skip %d) = %v, want the daemon %d only", plain.PID, skip, daemon)
	}
	n, err := SignalStragglers(syscall.SIGTERM, map[int]bool{plain.PID: true})
	if err != nil {
		t.Fatal(err)
	}
	if n < 1 {
		t.Errorf("SignalStragglers reached %d processes, want at least the daemon", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for procState(daemon) != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if s := procState(daemon); s != 0 {
		t.Errorf("daemon %d survived SignalStragglers(TERM): state %c", daemon, s)
	}
	if plain.Exited() {
		t.Errorf("the skipped group was signalled: %v", plain.Status())
	}
	_ = plain.Kill()
	if st := waitDone(t, plain, 5*time.Second); st.Code() != 137 {
		t.Errorf("plain child after Kill: %v, want 137", st)
	}
}

func TestExitStatus(t *testing.T) {
	for _, tc := range []struct {
		st   ExitStatus
		code int
		str  string
	}{
		{ExitStatus{}, 0, "exit status 0"},
		{ExitStatus{Status: 3}, 3, "exit status 3"},
		{ExitStatus{Status: 255}, 255, "exit status 255"},
		{ExitStatus{Signal: syscall.SIGKILL}, 137, "killed by signal 9 (killed)"},
		{ExitStatus{Signal: syscall.SIGTERM}, 143, "killed by signal 15 (terminated)"},
		{ExitStatus{Signal: syscall.SIGINT}, 130, "killed by signal 2 (interrupt)"},
	} {
		if got := tc.st.Code(); got != tc.code {
			t.Errorf("%+v.Code() = %d, want %d", tc.st, got, tc.code)
		}
		if got := tc.st.String(); got != tc.str {
			t.Errorf("%+v.String() = %q, want %q", tc.st, got, tc.str)
		}
	}
}

// TestExitStatusFromKernel: statuses as wait4 reports them, from real
// processes: exit codes and deaths by signal.
func TestExitStatusFromKernel(t *testing.T) {
	r := newTestReaper(t)
	null := devNull(t)
	for _, tc := range []struct {
		script string
		want   ExitStatus
	}{
		{"exit 0", ExitStatus{}},
		{"exit 3", ExitStatus{Status: 3}},
		{"exit 255", ExitStatus{Status: 255}},
		{"kill -9 $$", ExitStatus{Signal: syscall.SIGKILL}},
		{"kill -15 $$", ExitStatus{Signal: syscall.SIGTERM}},
		{"kill -USR1 $$", ExitStatus{Signal: syscall.SIGUSR1}},
	} {
		p, err := r.Start(Spec{Path: "/bin/sh", Argv: []string{"sh", "-c", tc.script}, Files: []*os.File{null, null, null}})
		if err != nil {
			t.Fatal(err)
		}
		if st := waitDone(t, p, 5*time.Second); st != tc.want {
			t.Errorf("%q: %v, want %v", tc.script, st, tc.want)
		}
	}
}

func TestStartFilesAndEnv(t *testing.T) {
	r := newTestReaper(t)
	out := filepath.Join(t.TempDir(), "out")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir := t.TempDir()
	// fd 3 is passed; fd 1 is the file; nil entries are closed.
	p, err := r.Start(Spec{
		Path:  "/bin/sh",
		Argv:  []string{"sh", "-c", `echo "$FOO $(pwd) $(cut -d' ' -f5 /proc/$$/stat)" >&3; echo ok`},
		Env:   []string{"FOO=bar", "PATH=/usr/bin:/bin"},
		Dir:   dir,
		Files: []*os.File{nil, f, nil, f},
	})
	if err != nil {
		t.Fatal(err)
	}
	if st := waitDone(t, p, 5*time.Second); st.Code() != 0 {
		t.Fatalf("child: %v", st)
	}
	b, _ := os.ReadFile(out)
	want := fmt.Sprintf("bar %s %d\nok\n", dir, p.PID)
	if got := string(b); got != want {
		t.Errorf("child wrote %q, want %q", got, want)
	}
}

// TestReaperListsPidfdsOncePerBurst: orphans that exit one by one, each
// waking the reaper with its own SIGCHLD, are reaped without reading the
// process's descriptors again on every wake-up. The reaper holds a pidfd on
// each of them (they are members of a reaped leader's group), so each
// reading costs as much as there are orphans: ≈ 0.5 ms per wake-up for a
// thousand, on the reaper's path.
func TestReaperListsPidfdsOncePerBurst(t *testing.T) {
	if !pidfdsWork() {
		t.Skip("no pidfds here: the reaper does not list them")
	}
	const n = 40
	r := newTestReaper(t)
	before := r.Orphans()
	file := filepath.Join(t.TempDir(), "exits")
	spec := helperSpec(t, "orphans", strconv.Itoa(n), "5ms", "0s", file)
	null := devNull(t)
	spec.Files = []*os.File{nil, null, os.Stderr, null}
	p, err := r.Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	if st := waitDone(t, p, 60*time.Second); st.Code() != 0 {
		t.Fatalf("orphan spawner: %v", st)
	}
	listed := pidfdListings.Load()
	deadline := time.Now().Add(30 * time.Second)
	for r.Orphans()-before < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := r.Orphans() - before; got != n {
		t.Fatalf("reaped %d orphans, want %d", got, n)
	}
	// The first reaping lists them; later ones need not, as no child
	// started since. A few more are allowed for a coarse boot-tick clock.
	if k := pidfdListings.Load() - listed; k > 3 {
		t.Errorf("the reaper listed the pidfds %d times for %d orphans that exited one by one; want at most 3", k, n)
	}
}
