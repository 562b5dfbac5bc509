package upgradesig

import (
	"os"
	"os/signal"
	"syscall"
)

// Env is the variable an upgrading hotswap sets to the fd of its state.
const Env = "HOTSWAP_UPGRADE_STATE"

var early chan os.Signal

// signals is every signal a process can send us, a superset of
// entrypoint.CatchSignals (the engine filters): not the uncatchable ones,
// not the synchronous faults, not SIGCHLD (the reaper waits on its own) and
// not SIGURG (the Go scheduler's own, frequent: it could fill the buffer).
func signals() []os.Signal {
	skip := map[syscall.Signal]bool{
		syscall.SIGKILL: true, syscall.SIGSTOP: true, syscall.SIGCHLD: true, syscall.SIGURG: true,
		syscall.SIGSEGV: true, syscall.SIGBUS: true, syscall.SIGFPE: true, syscall.SIGILL: true,
		syscall.SIGTRAP: true, syscall.SIGSYS: true, syscall.SIGPROF: true, syscall.SIGPIPE: true,
	}
	var out []os.Signal
	for s := syscall.Signal(1); s <= 64; s++ {
		if skip[s] || s == 32 || s == 33 { // 32, 33: the C library's own
			continue
		}
		out = append(out, s)
	}
	return out
}

func init() {
	if os.Getenv(Env) == "" {
		return
	}
	early = make(chan os.Signal, 256)
	signal.Notify(early, signals()...)
}

// Stop ends the early subscription (once the engine subscribed itself)
// and returns what arrived meanwhile.
func Stop() []os.Signal {
	if early == nil {
		return nil
	}
	signal.Stop(early)
	var out []os.Signal
	for {
		select {
		case s := <-early:
			out = append(out, s)
		default:
			return out
		}
	}
}
