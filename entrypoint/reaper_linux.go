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

// Reaper is the one owner of wait4 in this process. It reaps every child on
// SIGCHLD, delivers the status of the children it started to their Process,
// and counts the rest as orphans.
type Reaper struct {
	// mu is held across fork+register in Start and across wait4 in reap, so
	// a status can never be collected for a PID that is not registered yet.
	mu      sync.Mutex
	procs   map[int]*Process
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
	if !reaperRunning.CompareAndSwap(false, true) {
		return nil, ErrReaperRunning
	}
	if log == nil {
		log = slog.Default()
	}
	r := &Reaper{
		procs:   make(map[int]*Process),
		sigs:    make(chan os.Signal, 1),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
		log:     log,
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
	// children, so none is missed. The slow tick is a safety net only.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-r.sigs:
		case <-tick.C:
		}
		r.reap()
	}
}

func (r *Reaper) reap() {
	for {
		var ws syscall.WaitStatus
		r.mu.Lock()
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			r.mu.Unlock()
			continue
		}
		if pid <= 0 || err != nil {
			r.mu.Unlock()
			return // ECHILD: no children; 0: none exited yet
		}
		p := r.procs[pid]
		delete(r.procs, pid)
		r.mu.Unlock()

		st := exitStatusOf(ws)
		if p != nil {
			p.status = st
			p.ended = time.Now()
			close(p.done)
			continue
		}
		r.orphans.Add(1)
		if f := r.onOrph.Load(); f != nil && *f != nil {
			(*f)(pid, st)
		}
	}
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

	r.mu.Lock()
	pid, err := syscall.ForkExec(spec.Path, spec.Argv, attr)
	var p *Process
	if err == nil {
		p = &Process{PID: pid, Started: time.Now(), reaper: r, done: make(chan struct{})}
		r.procs[pid] = p
	}
	r.mu.Unlock()
	runtime.KeepAlive(files)
	if err != nil {
		return nil, &StartError{Path: spec.Path, Err: err}
	}
	return p, nil
}

// pidReused reports whether p's PID, after p was reaped, now belongs to
// another live child of ours.
func (r *Reaper) pidReused(p *Process) bool {
	if !p.Exited() {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	q, ok := r.procs[p.PID]
	return ok && q != p
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
