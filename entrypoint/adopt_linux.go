package entrypoint

import (
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Adoption across an in-place upgrade (docs/upgrade.md): the hotswap that
// execve()s a new hotswap keeps its PID, so its children stay children of
// the new program, which never forked them. Their statuses must still go to
// the engine, not to OnOrphan, including the status of a child that exited
// during the exec and waits as a zombie.

// Hold stops all reaping (and Start) until release is called: while held,
// a child that exits stays a zombie, so its status is still there for
// whoever waits next, this process or the program it execs into. The
// upgrade holds the reaper across execve; release is for a failed execve.
func (r *Reaper) Hold() (release func()) {
	r.mu.Lock()
	return r.mu.Unlock
}

// Adopted is a child the reaper adopted: started by the program this one
// replaced by execve, with its start time as that program recorded it.
type Adopted struct {
	PID     int
	Started time.Time
}

// NewReaperAdopting is NewReaper for the program an upgrade exec'ed: each
// adopted child is registered before the first wait4, so its status (even
// one already waiting as a zombie) reaches its Process. The first reap runs
// at once, without waiting for a SIGCHLD that was sent before the exec.
func NewReaperAdopting(log *slog.Logger, adopt []Adopted) (*Reaper, map[int]*Process, error) {
	r, err := newReaper(log, func(r *Reaper) {
		for _, a := range adopt {
			// KillTree counts as left behind only what started no earlier
			// than the child; its own start time bounds that as the
			// tick before fork does for Start.
			r.procs[a.PID] = &Process{PID: a.PID, Started: a.Started, reaper: r, done: make(chan struct{}), startTicks: procStartTicks(a.PID)}
		}
	})
	if err != nil {
		return nil, nil, err
	}
	procs := make(map[int]*Process, len(adopt))
	r.mu.Lock()
	for _, a := range adopt {
		procs[a.PID] = r.procs[a.PID]
	}
	r.mu.Unlock()
	// A zombie whose SIGCHLD arrived before the exec: reap it now.
	select {
	case r.sigs <- syscall.SIGCHLD:
	default:
	}
	return r, procs, nil
}

// procStartTicks is pid's start time from /proc/PID/stat (field 22, in
// clock ticks since boot), 0 when it cannot be read (a zombie still has it).
func procStartTicks(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 20 {
		return 0
	}
	n, _ := strconv.ParseUint(f[19], 10, 64)
	return n
}
