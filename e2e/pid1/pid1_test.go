package pid1

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/entrypoint"
)

// TestExitCodes: hotswap exits with its child's code exactly, 128+N when the
// child was killed by signal N.
func TestExitCodes(t *testing.T) {
	forModes(t, modes(), func(t *testing.T, m mode) {
		for _, tc := range []struct {
			script string
			want   int
		}{
			{"exit 0", 0},
			{"exit 3", 3},
			{"exit 255", 255},
			{"kill -9 $$", 137},
			{"kill -15 $$", 143},
		} {
			r := startHotswap(t, opts{mode: m}, "--", "/bin/sh", "-c", tc.script)
			if got := r.wait(20 * time.Second); got != tc.want {
				t.Errorf("child %q: hotswap exited %d, want %d\n%s", tc.script, got, tc.want, r.out)
			}
		}
	})
}

// TestOrphansReaped: a child leaves orphans behind (some already zombies
// when they are reparented, some alive); each must be reparented to hotswap
// and reaped, and no process in the namespace may be left a zombie. The
// subreaper case runs under an init that never reaps, so a hotswap that did
// not reap would leave zombies and fail.
func TestOrphansReaped(t *testing.T) {
	forModes(t, modes(), func(t *testing.T, m mode) {
		n := 1000
		if m != asPID1 || testing.Short() {
			n = 300
		}
		log := filepath.Join(tempDir(t), "child.log")
		r := startHotswap(t, opts{mode: m}, childCmd("log="+log, fmt.Sprintf("orphans=%d", n))...)
		code := r.wait(60 * time.Second)
		out := readFile(log)
		if code != 0 {
			t.Fatalf("hotswap exited %d (the child's verdict); child log:\n%s\nhotswap:\n%s", code, out, r.out)
		}
		mustContain(t, "child log", out, fmt.Sprintf("orphans: %d spawned, 0 problems", n))
		if m != onHost {
			mustContain(t, "child log", out, "orphans: zombies in /proc: 0")
		}
	})
}

// TestStopOnTERM: SIGTERM to hotswap reaches the child, and hotswap exits
// with the child's code once it is gone.
func TestStopOnTERM(t *testing.T) {
	forModes(t, modes(), func(t *testing.T, m mode) {
		log := filepath.Join(tempDir(t), "child.log")
		r := startHotswap(t, opts{mode: m}, childCmd("log="+log, "term=exit:7")...)
		waitLog(t, r, log, "start gen=1", 10*time.Second)
		start := time.Now()
		r.signal(syscall.SIGTERM)
		if got := r.wait(15 * time.Second); got != 7 {
			t.Errorf("hotswap exited %d, want the child's 7\n%s", got, r.out)
		}
		mustContain(t, "child log", readFile(log), "sig TERM")
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("shutdown took %s for a child that exits on TERM", d)
		}
	})
}

// TestGraceKill: a child that ignores SIGTERM is SIGKILLed after --grace,
// and hotswap's exit code says so (137).
func TestGraceKill(t *testing.T) {
	forModes(t, modes(), func(t *testing.T, m mode) {
		log := filepath.Join(tempDir(t), "child.log")
		r := startHotswap(t, opts{mode: m}, append([]string{"--grace", "1s"}, childCmd("log="+log, "term=ignore")...)...)
		waitLog(t, r, log, "start gen=1", 10*time.Second)
		start := time.Now()
		r.signal(syscall.SIGTERM)
		got := r.wait(15 * time.Second)
		d := time.Since(start)
		if got != 137 {
			t.Errorf("hotswap exited %d, want 137 (child SIGKILLed)\n%s", got, r.out)
		}
		mustContain(t, "child log", readFile(log), "sig TERM")
		if d < time.Second {
			t.Errorf("child killed after %s, before --grace 1s", d)
		}
	})
}

// TestForwardSignals: every forwardable signal reaches the child, in order,
// one after another.
func TestForwardSignals(t *testing.T) {
	forModes(t, modes(), func(t *testing.T, m mode) {
		log := filepath.Join(tempDir(t), "child.log")
		r := startHotswap(t, opts{mode: m}, childCmd("log="+log)...)
		waitLog(t, r, log, "start gen=1", 10*time.Second)
		for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGWINCH,
			syscall.SIGQUIT, syscall.SIGALRM, syscall.SIGPWR, syscall.Signal(36)} {
			r.signal(sig)
			waitLog(t, r, log, "sig "+entrypoint.SignalName(sig)+"\n", 5*time.Second)
		}
		// SIGINT is a shutdown like SIGTERM: the child gets the stop signal.
		r.signal(syscall.SIGINT)
		if got := r.wait(15 * time.Second); got != 0 {
			t.Errorf("hotswap exited %d after SIGINT, want 0\n%s", got, r.out)
		}
		mustContain(t, "child log", readFile(log), "sig TERM")
		if strings.Contains(readFile(log), "sig INT") {
			t.Errorf("SIGINT was forwarded as itself; shutdown should send the stop signal")
		}
	})
}

// TestRewriteSignals: --rewrite maps forwarded signals; HUP:0 drops HUP.
func TestRewriteSignals(t *testing.T) {
	forModes(t, modes(), func(t *testing.T, m mode) {
		log := filepath.Join(tempDir(t), "child.log")
		r := startHotswap(t, opts{mode: m}, append([]string{"--rewrite", "HUP:0", "--rewrite", "USR1:WINCH,QUIT:ALRM"}, childCmd("log="+log)...)...)
		waitLog(t, r, log, "start gen=1", 10*time.Second)
		r.signal(syscall.SIGHUP) // dropped
		r.signal(syscall.SIGUSR1)
		waitLog(t, r, log, "sig WINCH\n", 5*time.Second)
		r.signal(syscall.SIGQUIT)
		waitLog(t, r, log, "sig ALRM\n", 5*time.Second)
		r.signal(syscall.SIGPWR) // not rewritten
		waitLog(t, r, log, "sig PWR\n", 5*time.Second)
		// A dropped HUP would have arrived by now: USR1 was sent after it.
		got := readFile(log)
		for _, no := range []string{"sig HUP", "sig USR1", "sig QUIT"} {
			if strings.Contains(got, no) {
				t.Errorf("child got %q despite the rewrite:\n%s", no, got)
			}
		}
		r.signal(syscall.SIGTERM)
		if code := r.wait(15 * time.Second); code != 0 {
			t.Errorf("hotswap exited %d, want 0\n%s", code, r.out)
		}
	})
}

// TestRewriteTermAtShutdown: --rewrite TERM:QUIT (the flag's own example,
// dumb-init's most common use) makes SIGTERM reach the child as SIGQUIT.
func TestRewriteTermAtShutdown(t *testing.T) {
	forModes(t, []mode{asPID1, onHost}, func(t *testing.T, m mode) {
		log := filepath.Join(tempDir(t), "child.log")
		r := startHotswap(t, opts{mode: m}, append([]string{"--rewrite", "TERM:QUIT"}, childCmd("log="+log, "anyexit")...)...)
		waitLog(t, r, log, "start gen=1", 10*time.Second)
		r.signal(syscall.SIGTERM)
		if code := r.wait(15 * time.Second); code != 100+int(syscall.SIGQUIT) {
			t.Errorf("hotswap exited %d, want %d (child got QUIT); child log:\n%s", code, 100+int(syscall.SIGQUIT), readFile(log))
		}
	})
}

// TestStragglers: at shutdown a setsid daemon that left the child's group
// (and was reparented to hotswap) gets the stop signal too; one that
// ignores it is SIGKILLed after --grace, and hotswap does not hang on it.
func TestStragglers(t *testing.T) {
	forModes(t, modes(), func(t *testing.T, m mode) {
		for _, ignore := range []bool{false, true} {
			dir := tempDir(t)
			log, dlog := filepath.Join(dir, "child.log"), filepath.Join(dir, "daemon.log")
			dterm := "exit:0"
			if ignore {
				dterm = "ignore"
			}
			r := startHotswap(t, opts{mode: m}, append([]string{"--grace", "1s"},
				childCmd("log="+log, "term=exit:5", "daemon="+dlog, "daemon-term="+dterm)...)...)
			waitLog(t, r, log, "start gen=1", 10*time.Second)
			dstart := waitLog(t, r, dlog, "start", 10*time.Second)
			start := time.Now()
			r.signal(syscall.SIGTERM)
			code := r.wait(15 * time.Second)
			if code != 5 {
				t.Errorf("daemon term=%s: hotswap exited %d, want the child's 5\n%s", dterm, code, r.out)
			}
			mustContain(t, "daemon log", readFile(dlog), "sig TERM")
			d := time.Since(start)
			if ignore && d < time.Second {
				t.Errorf("hotswap exited after %s, before --grace 1s, while a daemon ignored TERM", d)
			}
			if !ignore && d > 900*time.Millisecond {
				t.Logf("shutdown took %s though the daemon exits on TERM", d)
			}
			if m == onHost {
				var pid int
				fmt.Sscanf(dstart[strings.Index(dstart, "pid="):], "pid=%d", &pid)
				waitGone(t, pid, 5*time.Second)
			}
		}
	})
}

// waitGone waits until pid is gone from /proc (reaped).
func waitGone(t testing.TB, pid int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		st, _ := procStat(pid)
		if st == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("process %d still there (state %c) after %s", pid, st, d)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
