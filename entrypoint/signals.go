package entrypoint

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// What an init does with each signal it receives. Every catchable signal is
// forwarded to the serving child's process group except these:
//
//	SIGCHLD          the reaper's wake-up; a child's exit is our business, not the server's.
//	SIGTERM, SIGINT  shutdown: the stop signal goes to every generation, SIGKILL after the
//	                 grace period, then hotswap exits with the serving child's code.
//	swap signal      (SIGUSR2 by default) triggers a swap instead of being forwarded.
//	SIGTTIN, SIGTTOU ignored: when the child owns the terminal, hotswap is a background
//	                 process and would otherwise be stopped for writing its own logs.
//	SIGURG           not caught: the Go runtime sends it to itself to preempt goroutines,
//	                 so a forwarded SIGURG would be noise, not the sender's intent.
//	SIGPIPE          not caught: it concerns a write of ours, never the child.
//	SIGFPE, SIGILL, SIGSEGV, SIGBUS, SIGTRAP, SIGSYS, SIGABRT
//	                 synchronous faults of our own (or kill -s of them, which tini also
//	                 does not forward): Go turns them into a crash report.
//	SIGKILL, SIGSTOP cannot be caught; as PID 1 the kernel does not even deliver them
//	                 from inside the namespace.
//
// Forwarded ones include SIGHUP (reload), SIGQUIT (nginx-style graceful
// stop), SIGUSR1, SIGUSR2 when it is not the swap signal, SIGWINCH (resize),
// SIGCONT, SIGTSTP, SIGALRM, SIGVTALRM, SIGPROF, SIGXCPU, SIGXFSZ, SIGPWR,
// SIGSTKFLT, SIGIO and the real-time signals.

// notForwarded are the signals an init never passes on (see above).
var notForwarded = map[syscall.Signal]bool{
	unix.SIGCHLD: true, unix.SIGTTIN: true, unix.SIGTTOU: true,
	unix.SIGURG: true, unix.SIGPIPE: true, unix.SIGKILL: true, unix.SIGSTOP: true,
	unix.SIGFPE: true, unix.SIGILL: true, unix.SIGSEGV: true, unix.SIGBUS: true,
	unix.SIGTRAP: true, unix.SIGSYS: true, unix.SIGABRT: true,
}

// sigRTMin is the first real-time signal glibc leaves to applications
// (32 and 33 are reserved for its threads).
const sigRTMin, sigRTMax = 34, 64

// CatchSignals lists the signals an init should receive with signal.Notify:
// every forwardable one plus SIGTERM and SIGINT. SIGCHLD belongs to the
// Reaper and is not included.
func CatchSignals() []os.Signal {
	var out []os.Signal
	for s := syscall.Signal(1); s <= sigRTMax; s++ {
		if notForwarded[s] || (s > 31 && s < sigRTMin) {
			continue
		}
		out = append(out, s)
	}
	return out
}

// Forwardable reports whether sig is one an init passes to its child.
func Forwardable(sig syscall.Signal) bool {
	return sig > 0 && sig <= sigRTMax && !notForwarded[sig] && !(sig > 31 && sig < sigRTMin)
}

// IgnoreTTYSignals ignores SIGTTIN and SIGTTOU (see the table above).
func IgnoreTTYSignals() {
	signalIgnore(unix.SIGTTIN, unix.SIGTTOU)
}

// ParseSignal reads "TERM", "SIGTERM", "sigterm", "15" or "RTMIN+2".
func ParseSignal(s string) (syscall.Signal, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	if n, err := strconv.Atoi(t); err == nil {
		if n < 1 || n > sigRTMax {
			return 0, fmt.Errorf("signal %q: number out of range 1-%d", s, sigRTMax)
		}
		return syscall.Signal(n), nil
	}
	t = strings.TrimPrefix(t, "SIG")
	if rest, ok := strings.CutPrefix(t, "RTMIN"); ok {
		off := 0
		if rest != "" {
			n, err := strconv.Atoi(rest)
			if err != nil || n < 0 || sigRTMin+n > sigRTMax {
				return 0, fmt.Errorf("signal %q: want RTMIN or RTMIN+N with N 0-%d", s, sigRTMax-sigRTMin)
			}
			off = n
		}
		return syscall.Signal(sigRTMin + off), nil
	}
	if sig := unix.SignalNum("SIG" + t); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q: use a name like TERM, QUIT, HUP, USR2 or a number (see `kill -l`)", s)
}

// SignalName is "TERM" for SIGTERM, "RTMIN+2" for real-time signals, or the
// number when the signal has no name.
func SignalName(sig syscall.Signal) string {
	if n := unix.SignalName(sig); n != "" {
		return strings.TrimPrefix(n, "SIG")
	}
	if sig >= sigRTMin && sig <= sigRTMax {
		if sig == sigRTMin {
			return "RTMIN"
		}
		return fmt.Sprintf("RTMIN+%d", int(sig)-sigRTMin)
	}
	return strconv.Itoa(int(sig))
}

// SignalNames lists "N) NAME" pairs for `kill -l`.
func SignalNames() []string {
	var out []string
	for s := syscall.Signal(1); s <= sigRTMax; s++ {
		if s > 31 && s < sigRTMin {
			continue
		}
		out = append(out, fmt.Sprintf("%2d) SIG%s", int(s), SignalName(s)))
	}
	return out
}

// Rewrite maps a received signal to the one forwarded, as dumb-init's
// --rewrite does. A mapping to 0 drops the signal.
type Rewrite map[syscall.Signal]syscall.Signal

// ParseRewrite reads "FROM:TO" pairs such as "TERM:QUIT" or "HUP:0".
func ParseRewrite(pairs []string) (Rewrite, error) {
	rw := Rewrite{}
	for _, p := range pairs {
		from, to, ok := strings.Cut(p, ":")
		if !ok {
			return nil, fmt.Errorf("rewrite %q: want FROM:TO, e.g. TERM:QUIT (TO may be 0 to drop the signal)", p)
		}
		f, err := ParseSignal(from)
		if err != nil {
			return nil, fmt.Errorf("rewrite %q: %w", p, err)
		}
		var t syscall.Signal
		if strings.TrimSpace(to) != "0" {
			if t, err = ParseSignal(to); err != nil {
				return nil, fmt.Errorf("rewrite %q: %w", p, err)
			}
		}
		rw[f] = t
	}
	return rw, nil
}

// Apply returns the signal to forward for sig and whether to forward at all.
func (rw Rewrite) Apply(sig syscall.Signal) (syscall.Signal, bool) {
	to, ok := rw[sig]
	if !ok {
		return sig, true
	}
	return to, to != 0
}

// String is the rewrite in flag form, sorted.
func (rw Rewrite) String() string {
	var parts []string
	for f, t := range rw {
		parts = append(parts, SignalName(f)+":"+SignalName(t))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}
