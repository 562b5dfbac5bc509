package entrypoint

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
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
		// orphans N SPREAD SETTLE FILE: start N orphans-to-be and exit;
		// each waits until we are gone, then SETTLE, then writes "pid
		// realtime-seconds" to FILE just before exiting, SPREAD apart, and
		// "pid" to our fd 3 (a pipe) last.
		n, _ := strconv.Atoi(args[0])
		return spawnOrphans(n, args[1], args[2], args[3])
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

func spawnOrphans(n int, spread, settle, file string) int {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "orphans:", err)
		return 1
	}
	// The orphans block reading a pipe whose only write end is ours: they
	// wake up when we have exited, i.e. once they are orphans. They are
	// single-threaded bash processes that use builtins only, so "just
	// before exiting" is a few microseconds before the exit, and the clock
	// is $EPOCHREALTIME (µs).
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		fmt.Fprintln(os.Stderr, "orphans:", err)
		return 1
	}
	fifo := file + ".fifo" // read -t on it (opened rw) is a builtin sleep
	if err := syscall.Mkfifo(fifo, 0o600); err != nil && err != syscall.EEXIST {
		fmt.Fprintln(os.Stderr, "orphans:", err)
		return 1
	}
	// fd 4 (our fd 3) is the benchmark's control: the same exit, told
	// through a pipe a goroutine reads, not through SIGCHLD and the reaper.
	const script = `read -r _ <&3; read -t "$1" _ <> "$2"; echo "$$ $EPOCHREALTIME"; echo "$$" >&4`
	attr := &syscall.ProcAttr{Env: []string{}, Files: []uintptr{^uintptr(0), f.Fd(), 2, uintptr(p[0]), 3}}
	// The orphans run at the default priority even when the benchmark runs
	// under nice -n -N, so that it can show what the reaper's delay is when
	// the reaper is not competing with them for the CPU.
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, 0, 0)
	d, _ := time.ParseDuration(spread)
	s, _ := time.ParseDuration(settle)
	for i := range n {
		after := strconv.FormatFloat((s + time.Duration(i+1)*d).Seconds(), 'f', 6, 64)
		_, err := syscall.ForkExec("/bin/bash", []string{"bash", "-c", script, "bash", after, fifo}, attr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "orphans: fork:", err)
			return 1
		}
	}
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

func fmtSscan(s string, pid *int, at *float64) (int, error) { return fmt.Sscan(s, pid, at) }
