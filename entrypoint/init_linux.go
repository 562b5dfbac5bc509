package entrypoint

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// IsPID1 reports whether we are the init of our PID namespace.
func IsPID1() bool { return os.Getpid() == 1 }

// BecomeSubreaper makes orphaned descendants reparent to us instead of to the
// namespace's init, so we reap them and can stop them at shutdown even when
// we are not PID 1 (e.g. with shareProcessNamespace, where pause is PID 1).
func BecomeSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("entrypoint: PR_SET_CHILD_SUBREAPER: %w", err)
	}
	return nil
}

// IsTerminal reports whether fd is a terminal.
func IsTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}

// SetForeground hands the terminal on fd 0 to process group pgid, so a new
// generation receives the terminal's Ctrl-C. It is a no-op without a terminal.
func SetForeground(pgid int) error {
	if !IsTerminal(0) {
		return nil
	}
	// We run in the background once a child owns the terminal; tcsetpgrp from
	// the background raises SIGTTOU, which IgnoreTTYSignals has ignored.
	if err := unix.IoctlSetPointerInt(0, unix.TIOCSPGRP, pgid); err != nil {
		return fmt.Errorf("entrypoint: give terminal to group %d: %w", pgid, err)
	}
	return nil
}

func signalIgnore(sigs ...os.Signal) { signal.Ignore(sigs...) }

// procInfo is what /proc/PID/stat says about a process.
type procInfo struct {
	pid, ppid, pgid int
	state           byte   // 'R', 'S', 'Z', ...
	start           uint64 // since boot, in clock ticks (field 22)
}

// readProc parses /proc/PID/stat; false when the process is gone.
func readProc(pid int) (procInfo, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procInfo{}, false
	}
	// "pid (comm) state ppid pgrp ...": comm may hold spaces and parens,
	// so parse from the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procInfo{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || len(f[0]) != 1 {
		return procInfo{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	pgid, _ := strconv.Atoi(f[2])
	start, _ := strconv.ParseUint(f[19], 10, 64)
	return procInfo{pid: pid, ppid: ppid, pgid: pgid, state: f[0][0], start: start}, true
}

// ProcessGroup is pid's process group, 0 if the process is gone.
func ProcessGroup(pid int) int {
	p, _ := readProc(pid)
	return p.pgid
}

// listProcs reads every process visible in /proc.
func listProcs() ([]procInfo, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("entrypoint: list /proc: %w", err)
	}
	var out []procInfo
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProc(pid); ok { // not ok: exited meanwhile
			out = append(out, p)
		}
	}
	return out, nil
}

// Stragglers lists the live processes that shutdown must still reach besides
// the generations' own groups: as PID 1 every other process in the namespace
// (setsid daemons, orphans), otherwise every descendant of ours. Processes in
// a group listed in skipGroups are left out: they get their signal through
// their group. Zombies are left out too: they have exited, and the reaper
// collects them.
func Stragglers(skipGroups map[int]bool) ([]int, error) {
	procs, err := listProcs()
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	mine := ourProcs(procs)
	var out []int
	for _, p := range procs {
		if p.pid == self || p.state == 'Z' || skipGroups[p.pgid] {
			continue
		}
		if mine[p.pid] {
			out = append(out, p.pid)
		}
	}
	return out, nil
}

// SignalStragglers sends sig to every process Stragglers lists and returns
// how many it reached.
func SignalStragglers(sig syscall.Signal, skipGroups map[int]bool) (int, error) {
	pids, err := Stragglers(skipGroups)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, pid := range pids {
		if err := syscall.Kill(pid, sig); err == nil {
			n++
		} else if !errors.Is(err, syscall.ESRCH) {
			return n, fmt.Errorf("entrypoint: signal %v to %d: %w", sig, pid, err)
		}
	}
	return n, nil
}
