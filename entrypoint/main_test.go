package entrypoint

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary doubles as the helper processes of these tests (the
// tableflip trick): TestMain runs a helper instead of the tests when
// helperEnv names one. Helpers never return to the testing package.
const helperEnv = "ENTRYPOINT_TEST_HELPER"

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(runHelper(h, os.Args[1:]))
	}
	// Orphans of our helpers must reparent to us, not to the machine's init,
	// so the tests see them reaped (and counted) by the Reaper.
	if err := BecomeSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, "entrypoint tests:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func runHelper(name string, args []string) int {
	switch name {
	case "zombies":
		// zombies N: fork N children that exit at once and never reap them,
		// wait until all are zombies, then exit: the N zombies reparent to
		// the test process together, which must reap them as orphans.
		n, _ := strconv.Atoi(args[0])
		return spawnZombies(n)
	case "orphans":
		// orphans N SPREAD FILE: start N helper "orphan" processes and
		// exit; each orphan waits until we are gone, then writes "pid
		// monotonic-ns" to FILE just before exiting, SPREAD apart.
		n, _ := strconv.Atoi(args[0])
		return spawnOrphans(n, args[1], args[2])
	case "orphan":
		return orphanExit(args[0])
	}
	fmt.Fprintln(os.Stderr, "unknown helper", name)
	return 2
}

func spawnZombies(n int) int {
	attr := &syscall.ProcAttr{Env: []string{}, Files: []uintptr{^uintptr(0), ^uintptr(0), 2}}
	pids := make([]int, 0, n)
	for range n {
		pid, err := syscall.ForkExec("/bin/true", []string{"true"}, attr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "zombies: fork:", err)
			return 1
		}
		pids = append(pids, pid)
	}
	// Exit only when every child is a zombie, so they reparent as zombies.
	deadline := time.Now().Add(30 * time.Second)
	for _, pid := range pids {
		for procState(pid) != 'Z' {
			if time.Now().After(deadline) {
				fmt.Fprintln(os.Stderr, "zombies: child did not exit:", pid)
				return 1
			}
			time.Sleep(time.Millisecond)
		}
	}
	return 0
}

func spawnOrphans(n int, spread, file string) int {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "orphans:", err)
		return 1
	}
	// The orphans block reading a pipe whose only write end is ours: they
	// wake up when we have exited, i.e. once they are orphans.
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		fmt.Fprintln(os.Stderr, "orphans:", err)
		return 1
	}
	self, _ := os.Executable()
	attr := &syscall.ProcAttr{Env: []string{helperEnv + "=orphan"}, Files: []uintptr{^uintptr(0), f.Fd(), 2, uintptr(p[0])}}
	d, _ := time.ParseDuration(spread)
	for i := range n {
		_, err := syscall.ForkExec(self, []string{self, (time.Duration(i) * d).String()}, attr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "orphans: fork:", err)
			return 1
		}
	}
	return 0
}

// orphanExit waits until fd 3 reports EOF (its parent has exited), sleeps
// after, writes its PID and the monotonic clock to stdout and exits.
func orphanExit(after string) int {
	d, _ := time.ParseDuration(after)
	var b [1]byte
	for {
		_, err := syscall.Read(3, b[:])
		if err != syscall.EINTR {
			break
		}
	}
	time.Sleep(d)
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	fmt.Fprintf(os.Stdout, "%d %d\n", os.Getpid(), ts.Nano())
	return 0
}

// procState is the state letter of /proc/PID/stat, 0 if it is gone.
func procState(pid int) byte {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == ')' && i+2 < len(b) {
			return b[i+2]
		}
	}
	return 0
}

func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

func fmtSscan(s string, pid *int, at *int64) (int, error) { return fmt.Sscan(s, pid, at) }
