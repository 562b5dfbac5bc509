package entrypoint

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrReaperRunning is returned by NewReaper while another Reaper is open:
// two reapers in one process would steal each other's exit statuses.
var ErrReaperRunning = errors.New("entrypoint: a Reaper is already running in this process")

var reaperRunning atomic.Bool

// OrphanFunc is told about every reaped process that Start did not start:
// orphans reparented to us, and grandchildren of ours.
type OrphanFunc func(pid int, status ExitStatus)

// Reaper is the init's waiter in this process. On SIGCHLD it reaps the
// children it started, delivering each status to its Process, and the
// orphans, which it counts; it leaves alone the children that os/exec
// started in this process, whose status belongs to their Cmd.Wait.
type Reaper struct {
	// mu is held across fork+register in Start and across wait4 in reap, so
	// a status can never be collected for a PID that is not registered yet.
	mu      sync.Mutex
	procs   map[int]*Process
	pidfds  bool              // os/exec holds a pidfd on its children (pidfdsWork)
	seen    map[int]time.Time // unknown zombies first seen, without pidfds; reaper goroutine only
	held    heldPidfds        // reaper goroutine only
	orphans atomic.Uint64
	onOrph  atomic.Pointer[OrphanFunc]
	sigs    chan os.Signal
	stop    chan struct{}
	stopped chan struct{}
	log     *slog.Logger
}

// NewReaper starts the reaper goroutine. Close it when done (tests); an init
// keeps it for its whole life.
func NewReaper(log *slog.Logger) (*Reaper, error) {
	return newReaper(log, nil)
}

// newReaper is NewReaper with register run before the reaper goroutine
// starts (adopted children, see NewReaperAdopting).
func newReaper(log *slog.Logger, register func(*Reaper)) (*Reaper, error) {
	if !reaperRunning.CompareAndSwap(false, true) {
		return nil, ErrReaperRunning
	}
	if log == nil {
		log = slog.Default()
	}
	r := &Reaper{
		procs:   make(map[int]*Process),
		pidfds:  pidfdsWork(),
		seen:    make(map[int]time.Time),
		sigs:    make(chan os.Signal, 1),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
		log:     log,
	}
	if register != nil {
		register(r)
	}
	signal.Notify(r.sigs, syscall.SIGCHLD)
	go r.loop()
	return r, nil
}

// OnOrphan sets the function told about each reaped orphan; nil unsets it.
// It runs on the reaper goroutine and must be quick.
func (r *Reaper) OnOrphan(f OrphanFunc) { r.onOrph.Store(&f) }

// Orphans is how many processes not started by Start have been reaped.
func (r *Reaper) Orphans() uint64 { return r.orphans.Load() }

// CarryOrphans adds n to the orphan count: the count of the process this
// one replaced with execve (hotswap upgrade), so that it runs on.
func (r *Reaper) CarryOrphans(n uint64) { r.orphans.Add(n) }

// Live is how many started processes have not been reaped yet.
func (r *Reaper) Live() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.procs)
}

// Close stops the reaper goroutine. Processes still running are no longer
// reaped; their Done channels never close.
func (r *Reaper) Close() {
	select {
	case <-r.stop:
		return
	default:
	}
	close(r.stop)
	<-r.stopped
	signal.Stop(r.sigs)
	reaperRunning.Store(false)
}

func (r *Reaper) loop() {
	defer close(r.stopped)
	// A SIGCHLD can coalesce with another or arrive while we reap; the
	// channel holds one pending wake-up and every wake-up drains all exited
	// children, so none is missed. The slow tick is a safety net only. The
	// retry timer runs while a zombie is left for its owner (see reapOthers):
	// that owner reaping it, or releasing its pidfd, sends no SIGCHLD.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	backoff := time.Duration(0)
	for {
		select {
		case <-r.stop:
			return
		case <-r.sigs:
		case <-tick.C:
		case <-retry.C:
		}
		if r.reap() {
			backoff = min(max(2*backoff, 2*time.Millisecond), time.Second)
			retry.Reset(backoff)
		} else {
			backoff = 0
		}
	}
}

// reap collects every exited child it may collect and reports whether it
// left a zombie for another waiter. It never calls wait4(-1): that would take
// the status of a child that os/exec started inside this process (client-go
// runs exec credential plugins with it) from under its Cmd.Wait, which then
// fails with "no child processes". Instead it peeks with waitid(P_ALL,
// WNOWAIT), which reaps nothing, and reaps by PID: the children Start
// registered at once, anything else through reapOthers.
func (r *Reaper) reap() (left bool) {
	for {
		r.mu.Lock()
		pid, err := waitidPeek(unix.P_ALL, 0)
		if pid <= 0 || err != nil {
			r.mu.Unlock()
			return false // ECHILD: no children; 0: none exited yet
		}
		if p := r.procs[pid]; p != nil {
			r.reapKnownLocked(p) // unlocks r.mu
			continue
		}
		r.mu.Unlock()
		if !r.pidfds {
			return r.reapOthers()
		}
		if r.held.holds(pid) {
			// The peek returns the same zombie until it is reaped, so one
			// left to its owner hides every zombie after it: go child by
			// child.
			return r.reapOthers()
		}
		r.reapOrphan(pid)
	}
}

// heldPidfds is the list of children a foreign pidfd holds (see
// reapOthers), as of at: it is valid for a zombie that started before at,
// because the os package opens its pidfd on a child before the child runs.
// It is kept from one wake-up to the next: listing the pidfds reads every
// descriptor in /proc/self/fd, and the reaper itself holds one per member
// of an orphaned process group (a thousand for a group of a thousand), so
// reading it on every SIGCHLD cost ≈ 0.5 ms of CPU per wake-up in a burst
// of exits, on the reaper's path, for a list that had not changed.
type heldPidfds struct {
	pids map[int]bool
	at   uint64 // boot ticks, read before the list
	ok   bool
}

// holds reports whether a foreign pidfd holds pid, an exited child; it reads
// the list again only when pid may have started after the last reading.
func (h *heldPidfds) holds(pid int) bool {
	if q, ok := readProc(pid); !h.ok || !ok || q.start >= h.at {
		h.at, h.ok = bootTicks(), true
		h.pids = pidfdHolders()
	}
	return h.pids[pid]
}

// reapOrphan reaps pid, an exited child no one else waits for, if it still
// is one, and reports it.
func (r *Reaper) reapOrphan(pid int) {
	var ws syscall.WaitStatus
	wpid, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	if wpid != pid || err != nil {
		return // running, or reaped by its owner meanwhile
	}
	delete(r.seen, pid)
	memberReaped(pid)
	r.orphans.Add(1)
	if f := r.onOrph.Load(); f != nil && *f != nil {
		(*f)(pid, exitStatusOf(ws))
	}
}

// reapKnownLocked reaps p, a registered child, if it has exited. It is
// called with r.mu held and releases it.
func (r *Reaper) reapKnownLocked(p *Process) {
	var ws syscall.WaitStatus
	var pid int
	var err error
	for {
		pid, err = syscall.Wait4(p.PID, &ws, syscall.WNOHANG, nil)
		if err != syscall.EINTR {
			break
		}
	}
	if pid != p.PID || err != nil {
		r.mu.Unlock()
		return // still running
	}
	delete(r.procs, pid)
	// The leader's PID pins its group's number only while the leader is
	// unreaped; from here on -PID may name a stranger's group. Whether the
	// group outlived its leader is decided now, while no stranger can have
	// the number yet (it was freed, if at all, a few µs ago), and p.gmu is
	// held until that is recorded, so Signal never sees a half-known state.
	p.gmu.Lock()
	p.reaped = true
	groupLives := syscall.Kill(-pid, 0) == nil
	reapedAt := bootTicks()
	r.mu.Unlock()
	if groupLives {
		// Finding the members reads all of /proc: not on the reaper's
		// goroutine, which would keep every orphan waiting meanwhile. The
		// lock passes to that goroutine, so Signal waits for it.
		go func() {
			p.adoptMembers(reapedAt)
			p.groupGone = len(p.members) == 0
			p.gmu.Unlock()
		}()
	} else {
		p.groupGone = true
		p.gmu.Unlock()
	}

	p.status = exitStatusOf(ws)
	p.ended = time.Now()
	close(p.done)
}

// reapOthers goes through our children one by one: registered ones are
// reaped as in reap; the others are orphans, which an init must reap, or
// children that os/exec started in this process, whose status belongs to
// their Cmd.Wait. The os package holds a pidfd on each of those from before
// it runs until its Wait has reaped it, so: list the children first, then
// the pidfds; a child with a foreign pidfd on it is left alone, any other is
// reaped if it has exited. It reports whether a zombie was left.
func (r *Reaper) reapOthers() (left bool) {
	kids := children()
	var held map[int]bool
	if r.pidfds {
		held = pidfdHolders() // after children(): see above
	}
	// The registered children first, by PID: children() reads a list that
	// changes as it is read and may miss an entry.
	r.mu.Lock()
	known := make([]*Process, 0, len(r.procs))
	for _, p := range r.procs {
		known = append(known, p)
	}
	r.mu.Unlock()
	for _, p := range known {
		r.mu.Lock()
		r.reapKnownLocked(p)
	}
	now := time.Now()
	for _, pid := range kids {
		r.mu.Lock()
		if p := r.procs[pid]; p != nil {
			r.reapKnownLocked(p)
			continue
		}
		r.mu.Unlock()
		if held[pid] || (!r.pidfds && r.tooYoung(pid, now)) {
			if z, _ := waitidPeek(unix.P_PID, pid); z == pid {
				left = true
			}
			continue
		}
		r.reapOrphan(pid)
	}
	if len(r.seen) > 0 {
		alive := make(map[int]bool, len(kids))
		for _, pid := range kids {
			alive[pid] = true
		}
		for pid := range r.seen {
			if !alive[pid] {
				delete(r.seen, pid) // reaped, by us or by its owner
			}
		}
	}
	return left
}

// unknownGrace is how long an unknown zombie is left to its possible owner
// where pidfds do not work: there the os package waits with wait4(pid) and
// nothing shows that a child is one of its own, so orphans are reaped this
// late, and a Cmd.Wait later than this still loses its status.
const unknownGrace = 100 * time.Millisecond

// tooYoung reports whether the unknown zombie pid has been a zombie for less
// than unknownGrace. Only the reaper goroutine calls it.
func (r *Reaper) tooYoung(pid int, now time.Time) bool {
	if z, _ := waitidPeek(unix.P_PID, pid); z != pid {
		return true // running: nothing to reap, nothing to time
	}
	first, ok := r.seen[pid]
	if !ok {
		r.seen[pid] = now
		return true
	}
	return now.Sub(first) < unknownGrace
}

// Start forks and execs spec in a new process group and registers it. The
// returned Process's Done closes when it has been reaped.
func (r *Reaper) Start(spec Spec) (*Process, error) {
	files := spec.Files
	if len(files) == 0 {
		files = []*os.File{os.Stdin, os.Stdout, os.Stderr}
	}
	fds := make([]uintptr, len(files))
	for i, f := range files {
		if f == nil {
			fds[i] = ^uintptr(0) // closed in the child
			continue
		}
		fd, err := rawFD(f)
		if err != nil {
			return nil, fmt.Errorf("entrypoint: start %s: fd %d: %w", spec.Path, i, err)
		}
		fds[i] = fd
	}
	sys := &syscall.SysProcAttr{Setpgid: true}
	if spec.Foreground && IsTerminal(0) {
		sys.Foreground = true
		sys.Ctty = 0
	}
	attr := &syscall.ProcAttr{Dir: spec.Dir, Env: spec.Env, Files: fds, Sys: sys}

	boot := bootTicks() // before fork: no descendant starts earlier
	r.mu.Lock()
	pid, err := syscall.ForkExec(spec.Path, spec.Argv, attr)
	var p *Process
	if err == nil {
		p = &Process{PID: pid, Started: time.Now(), reaper: r, done: make(chan struct{}), startTicks: boot}
		r.procs[pid] = p
	}
	r.mu.Unlock()
	runtime.KeepAlive(files)
	if err != nil {
		return nil, &StartError{Path: spec.Path, Err: err}
	}
	return p, nil
}

// rawFD returns f's descriptor without (*os.File).Fd, which would switch a
// non-blocking descriptor — and so every process sharing its open file
// description, such as a listening socket — to blocking mode.
func rawFD(f *os.File) (uintptr, error) {
	sc, err := f.SyscallConn()
	if err != nil {
		// Files without a poller (e.g. some terminals) are blocking already.
		return f.Fd(), nil //nolint:staticcheck // see above
	}
	var fd uintptr
	if err := sc.Control(func(u uintptr) { fd = u }); err != nil {
		return 0, err
	}
	return fd, nil
}

// StartError is a failed fork/exec, with an exit code a shell would use.
type StartError struct {
	Path string
	Err  error
}

func (e *StartError) Error() string {
	return fmt.Sprintf("entrypoint: start %s: %v", e.Path, e.Err)
}

func (e *StartError) Unwrap() error { return e.Err }

// ExitCode is 127 for a command that does not exist and 126 for one that
// cannot be executed, as sh does.
func (e *StartError) ExitCode() int {
	if errors.Is(e.Err, unix.ENOENT) || errors.Is(e.Err, unix.ENOTDIR) {
		return 127
	}
	return 126
}
