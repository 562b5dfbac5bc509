package hotswap

import (
	"context"
	"log/slog"
	"syscall"
	"time"

	"github.com/hotswap-dev/hotswap/entrypoint"
	"github.com/hotswap-dev/hotswap/internal/tinyshim"
	"github.com/hotswap-dev/hotswap/reuseport/groupsteer"
)

// Runtime is every side effect the engine has on the machine: starting
// processes, signalling what is left at shutdown, the clock and the
// readiness probes. The engine decides; the Runtime acts. The real one
// (NewRuntime) wraps the entrypoint reaper, time and /proc; the engine's
// unit tests use a fake with a clock they advance by hand, so every path of
// the state machine runs deterministically and without sleeping (in the
// spirit of tableflip's env).
//
// Callbacks (exited, ready, a timer's f) may run on any goroutine and must
// only post to the engine's inbox: all state lives on Run's goroutine.
type Runtime interface {
	// Start forks and execs spec in a new process group; exited is called
	// once the process has been reaped (never before Start returned).
	Start(spec entrypoint.Spec, exited func()) (Proc, error)
	// Probe checks readiness of a generation in the background (http, tcp,
	// exec, delay; never notify, which arrives on the notify socket) and
	// calls ready once it passes. It stops when ctx ends.
	Probe(ctx context.Context, check ReadyCheck, t ProbeTarget, ready func())
	// Background runs slow work (resolving and verifying a release) off
	// Run's goroutine.
	Background(f func())
	// OpenBinary opens a release's executable once, for its verification
	// and every start of it (see Binary and pin.go). A nil Binary without
	// an error means: start it by path.
	OpenBinary(path string) (*Binary, error)
	// ExecShim is the tiny exec shim generations start through, loaded
	// once (execshim.go); an error says why there is none and generations
	// start through hotswap's own binary.
	ExecShim() (*tinyshim.Shim, error)

	// Now is the engine's clock; AfterFunc arms a timer on it.
	Now() time.Time
	AfterFunc(d time.Duration, f func()) Timer

	// Stragglers lists live processes outside skipGroups that shutdown must
	// still reach (see entrypoint.Stragglers); SignalStragglers signals them.
	Stragglers(skipGroups map[int]bool) ([]int, error)
	SignalStragglers(sig syscall.Signal, skipGroups map[int]bool) (int, error)
	// ProcessGroup is pid's process group, 0 when it is gone.
	ProcessGroup(pid int) int
	// SetForeground gives the terminal (if any) to process group pgid.
	SetForeground(pgid int) error

	// Reuseport steering (--mode reuseport; package reuseport/groupsteer).
	// SteerCheck says whether it can work here (nil) or why not.
	// SteerMark reads the server's SO_REUSEPORT groups right before a
	// generation starts, or once the first is ready; quiet: no other
	// generation is alive, so the groups' sockets are all the serving
	// one's. SteerCutover, once the new generation is ready, steers new
	// connections to it and calls done when nothing is left on the older
	// generations' sockets (done's error says what was left at the bound);
	// done may run on any goroutine.
	SteerCheck() error
	SteerMark(quiet bool) groupsteer.Mark
	SteerCutover(m groupsteer.Mark, done func(error))
}

// Proc is one process the Runtime started; it leads its own process group.
type Proc interface {
	PID() int
	Started() time.Time
	// Signal sends sig to the whole group; entrypoint.ErrDone when it is gone.
	Signal(sig syscall.Signal) error
	// Kill sends SIGKILL to the whole group.
	Kill() error
	// Exited reports whether the process has been reaped.
	Exited() bool
	// Status is how it ended; valid once exited was called.
	Status() entrypoint.ExitStatus
}

// Timer is an armed AfterFunc; *time.Timer is one.
type Timer interface {
	Stop() bool
}

// ProbeTarget is what a readiness probe knows about the generation it checks.
type ProbeTarget struct {
	Generation int
	PID        int
	// Env is the environment an exec check runs with.
	Env []string
}

// NewRuntime is the real Runtime: processes through reaper (the one wait4
// owner; never os/exec), the wall clock, and /proc for stragglers.
func NewRuntime(reaper *entrypoint.Reaper, log *slog.Logger) Runtime {
	if log == nil {
		log = slog.Default()
	}
	return &osRuntime{reaper: reaper, log: log, steer: groupsteer.New(log)}
}

type osRuntime struct {
	reaper *entrypoint.Reaper
	log    *slog.Logger
	steer  *groupsteer.Steerer
}

// steerWait bounds how long a cutover waits for the old generation's
// sockets to empty: a handshake whose client stopped answering keeps its
// request socket for a minute of SYN-ACK retries, and must not hold a swap.
const steerWait = 5 * time.Second

func (r *osRuntime) SteerCheck() error                    { return groupsteer.Check() }
func (r *osRuntime) SteerMark(quiet bool) groupsteer.Mark { return r.steer.Mark(quiet) }
func (r *osRuntime) SteerCutover(m groupsteer.Mark, done func(error)) {
	w := r.steer.Cutover(m)
	go func() { done(w.Wait(context.Background(), steerWait)) }()
}

func (r *osRuntime) Start(spec entrypoint.Spec, exited func()) (Proc, error) {
	p, err := r.reaper.Start(spec)
	if err != nil {
		return nil, err
	}
	go func() {
		<-p.Done()
		exited()
	}()
	return osProc{p}, nil
}

func (r *osRuntime) Background(f func())                         { go f() }
func (r *osRuntime) OpenBinary(path string) (*Binary, error)     { return OpenBinary(path) }
func (r *osRuntime) ExecShim() (*tinyshim.Shim, error)           { return tinyshim.Load() }
func (r *osRuntime) Now() time.Time                              { return time.Now() }
func (r *osRuntime) AfterFunc(d time.Duration, f func()) Timer   { return time.AfterFunc(d, f) }
func (r *osRuntime) ProcessGroup(pid int) int                    { return entrypoint.ProcessGroup(pid) }
func (r *osRuntime) SetForeground(pgid int) error                { return entrypoint.SetForeground(pgid) }
func (r *osRuntime) Stragglers(skip map[int]bool) ([]int, error) { return entrypoint.Stragglers(skip) }
func (r *osRuntime) SignalStragglers(sig syscall.Signal, skip map[int]bool) (int, error) {
	return entrypoint.SignalStragglers(sig, skip)
}

// osProc adapts *entrypoint.Process to Proc.
type osProc struct{ p *entrypoint.Process }

func (o osProc) PID() int                        { return o.p.PID }
func (o osProc) Started() time.Time              { return o.p.Started }
func (o osProc) Signal(sig syscall.Signal) error { return o.p.Signal(sig) }
func (o osProc) Kill() error                     { return o.p.Kill() }

// KillTree kills the group and what it left outside (entrypoint.KillTree).
func (o osProc) KillTree(marker string) (int, error) { return o.p.KillTree(marker) }
func (o osProc) Exited() bool                        { return o.p.Exited() }
func (o osProc) Status() entrypoint.ExitStatus       { return o.p.Status() }
