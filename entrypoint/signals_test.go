package entrypoint

import (
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseSignal(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want syscall.Signal
	}{
		{"TERM", syscall.SIGTERM},
		{"SIGTERM", syscall.SIGTERM},
		{"sigterm", syscall.SIGTERM},
		{" term ", syscall.SIGTERM},
		{"15", syscall.SIGTERM},
		{"9", syscall.SIGKILL},
		{"1", syscall.SIGHUP},
		{"64", 64},
		{"QUIT", syscall.SIGQUIT},
		{"hup", syscall.SIGHUP},
		{"USR1", syscall.SIGUSR1},
		{"USR2", syscall.SIGUSR2},
		{"WINCH", syscall.SIGWINCH},
		{"RTMIN", 34},
		{"SIGRTMIN", 34},
		{"RTMIN+0", 34},
		{"RTMIN+2", 36},
		{"rtmin+30", 64},
	} {
		got, err := ParseSignal(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSignal(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "0", "65", "-1", "FOO", "SIG", "RTMIN+31", "RTMIN+x", "RTMIN-1", "TERM2"} {
		if got, err := ParseSignal(in); err == nil {
			t.Errorf("ParseSignal(%q) = %d, want an error", in, got)
		} else if !strings.Contains(err.Error(), in) {
			t.Errorf("ParseSignal(%q): error %q does not name the input", in, err)
		}
	}
}

// TestSignalNameRoundTrip: every signal has a name that parses back to it.
func TestSignalNameRoundTrip(t *testing.T) {
	for s := syscall.Signal(1); s <= 64; s++ {
		if s == 32 || s == 33 {
			continue // glibc's, not ours
		}
		name := SignalName(s)
		got, err := ParseSignal(name)
		if err != nil || got != s {
			t.Errorf("SignalName(%d) = %q, parses back as %d, %v", s, name, got, err)
		}
	}
	for _, tc := range []struct {
		s    syscall.Signal
		want string
	}{{syscall.SIGTERM, "TERM"}, {syscall.SIGUSR2, "USR2"}, {34, "RTMIN"}, {36, "RTMIN+2"}, {64, "RTMIN+30"}} {
		if got := SignalName(tc.s); got != tc.want {
			t.Errorf("SignalName(%d) = %q, want %q", tc.s, got, tc.want)
		}
	}
}

func TestSignalNames(t *testing.T) {
	names := SignalNames()
	if len(names) != 31+31 {
		t.Errorf("SignalNames has %d entries, want 62 (1-31, 34-64)", len(names))
	}
	for _, want := range []string{" 1) SIGHUP", "15) SIGTERM", "34) SIGRTMIN", "64) SIGRTMIN+30"} {
		if !slices.Contains(names, want) {
			t.Errorf("SignalNames lacks %q", want)
		}
	}
}

// TestSignalTable pins the init's signal decisions documented in signals.go.
func TestSignalTable(t *testing.T) {
	never := []syscall.Signal{unix.SIGCHLD, unix.SIGTTIN, unix.SIGTTOU, unix.SIGURG, unix.SIGPIPE,
		unix.SIGKILL, unix.SIGSTOP, unix.SIGFPE, unix.SIGILL, unix.SIGSEGV, unix.SIGBUS,
		unix.SIGTRAP, unix.SIGSYS, unix.SIGABRT, 0, 32, 33, 65}
	forwarded := []syscall.Signal{unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH,
		unix.SIGCONT, unix.SIGTSTP, unix.SIGALRM, unix.SIGVTALRM, unix.SIGPROF, unix.SIGXCPU,
		unix.SIGXFSZ, unix.SIGPWR, unix.SIGSTKFLT, unix.SIGIO, 34, 40, 64}
	for _, s := range never {
		if Forwardable(s) {
			t.Errorf("Forwardable(%d %s) = true", s, SignalName(s))
		}
	}
	for _, s := range forwarded {
		if !Forwardable(s) {
			t.Errorf("Forwardable(%d %s) = false", s, SignalName(s))
		}
	}
	caught := map[syscall.Signal]bool{}
	for _, s := range CatchSignals() {
		caught[s.(syscall.Signal)] = true
	}
	for _, s := range append(forwarded, unix.SIGTERM, unix.SIGINT) {
		if !caught[s] {
			t.Errorf("CatchSignals lacks %s", SignalName(s))
		}
	}
	for _, s := range never {
		if caught[s] {
			t.Errorf("CatchSignals includes %d %s", s, SignalName(s))
		}
	}
	// Everything caught except TERM and INT is forwardable.
	for s := range caught {
		if s != unix.SIGTERM && s != unix.SIGINT && !Forwardable(s) {
			t.Errorf("%s is caught but not forwardable", SignalName(s))
		}
	}
}

func TestParseRewrite(t *testing.T) {
	rw, err := ParseRewrite([]string{"TERM:QUIT", "HUP:0", "sigusr1:USR2", "10:12", "RTMIN+1:RTMIN"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		in     syscall.Signal
		out    syscall.Signal
		sendOK bool
	}{
		{syscall.SIGTERM, syscall.SIGQUIT, true},
		{syscall.SIGHUP, 0, false},
		{syscall.SIGUSR1, syscall.SIGUSR2, true},
		{syscall.SIGWINCH, syscall.SIGWINCH, true}, // not rewritten
		{35, 34, true},
	} {
		out, ok := rw.Apply(tc.in)
		if out != tc.out || ok != tc.sendOK {
			t.Errorf("Apply(%s) = %d, %v; want %d, %v", SignalName(tc.in), out, ok, tc.out, tc.sendOK)
		}
	}
	if got, want := rw.String(), "HUP:0,RTMIN+1:RTMIN,TERM:QUIT,USR1:USR2"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	// A nil Rewrite forwards everything unchanged.
	var none Rewrite
	if out, ok := none.Apply(syscall.SIGHUP); out != syscall.SIGHUP || !ok {
		t.Errorf("nil Rewrite Apply(HUP) = %v, %v", out, ok)
	}
	if rw, err := ParseRewrite(nil); err != nil || len(rw) != 0 {
		t.Errorf("ParseRewrite(nil) = %v, %v", rw, err)
	}
	for _, bad := range []string{"TERM", "TERM:", ":QUIT", "FOO:QUIT", "TERM:BAR", "TERM:QUIT:HUP", "99:1"} {
		if _, err := ParseRewrite([]string{bad}); err == nil {
			t.Errorf("ParseRewrite(%q) accepted", bad)
		} else if !strings.Contains(err.Error(), bad) {
			t.Errorf("ParseRewrite(%q): error %q does not name the pair", bad, err)
		}
	}
}
