package entrypoint

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
)

// ErrDone is returned when signalling a process whose group is gone.
var ErrDone = errors.New("entrypoint: process already finished")

// Spec says how to start a child.
type Spec struct {
	// Path is the executable (absolute, or relative to Dir).
	Path string
	// Argv is the whole argument vector, argv[0] included.
	Argv []string
	// Env is the complete environment ("K=V").
	Env []string
	// Dir is the working directory; empty means ours.
	Dir string
	// Files become the child's fds 0, 1, 2, 3, ...; a nil entry is closed in
	// the child. Empty means inherit our stdin, stdout and stderr, so the
	// child's output goes straight to the container log, never through us.
	Files []*os.File
	// Foreground gives the child's process group the terminal on fd 0
	// (only when fd 0 is a terminal), so Ctrl-C and job control reach it.
	Foreground bool
}

// ExitStatus is how a process ended.
type ExitStatus struct {
	// Signal is the signal that killed it, 0 if it exited.
	Signal syscall.Signal
	// Status is the exit status when Signal is 0.
	Status int
}

// Code is the status a shell would report: the exit status, or 128+N when
// killed by signal N. hotswap exits with it so the kubelet sees the truth.
func (s ExitStatus) Code() int {
	if s.Signal != 0 {
		return 128 + int(s.Signal)
	}
	return s.Status
}

// String is "exit status 3" or "killed by signal 9 (killed)".
func (s ExitStatus) String() string {
	if s.Signal != 0 {
		return fmt.Sprintf("killed by signal %d (%v)", int(s.Signal), s.Signal)
	}
	return fmt.Sprintf("exit status %d", s.Status)
}

func exitStatusOf(ws syscall.WaitStatus) ExitStatus {
	if ws.Signaled() {
		return ExitStatus{Signal: ws.Signal()}
	}
	return ExitStatus{Status: ws.ExitStatus()}
}

// Process is a child started by Reaper.Start. It leads its own process group
// (PGID == PID). Its status arrives on Done; there is deliberately no method
// that waits in the kernel.
type Process struct {
	// PID is the child's process ID and its process group ID.
	PID int
	// Started is when fork returned.
	Started time.Time

	reaper     *Reaper
	startTicks uint64 // bootTicks just before fork
	done       chan struct{}
	status     ExitStatus
	ended      time.Time

	reaped bool // under reaper.mu: -PID may no longer be our group

	// Under gmu, set when the leader is reaped (group_linux.go).
	gmu       sync.Mutex
	groupGone bool     // no member outlived the leader, or none is left
	members   []member // pidfds on the members that outlived the leader
}

// Done is closed when the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has been reaped.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Status is the exit status; valid once Done is closed.
func (p *Process) Status() ExitStatus {
	<-p.done
	return p.status
}

// Ended is when the process was reaped; valid once Done is closed.
func (p *Process) Ended() time.Time {
	<-p.done
	return p.ended
}

// Signal sends sig to the process's whole group, so helpers and workers it
// started go with it. It keeps working after the leader exited while any
// member of the group lives, and never reaches a group that merely got the
// same number later (see group_linux.go). It returns ErrDone when the group
// is gone.
func (p *Process) Signal(sig syscall.Signal) error {
	r := p.reaper
	r.mu.Lock()
	if !p.reaped {
		// Unreaped, the leader holds the number: -PID is our group. The
		// lock keeps the reaper from reaping it until the signal is sent.
		err := syscall.Kill(-p.PID, sig)
		r.mu.Unlock()
		if err != nil {
			if errors.Is(err, syscall.ESRCH) {
				return ErrDone
			}
			return fmt.Errorf("entrypoint: signal %v to group %d: %w", sig, p.PID, err)
		}
		return nil
	}
	r.mu.Unlock()
	_, err := p.signalMembers(sig)
	return err
}

// Kill sends SIGKILL to the whole group.
func (p *Process) Kill() error { return p.Signal(syscall.SIGKILL) }
