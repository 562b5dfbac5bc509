package hotswap

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/hotswap-dev/hotswap/entrypoint"
	"github.com/hotswap-dev/hotswap/hotswap/listenenv"
)

// Mode says who owns the listening sockets.
type Mode string

const (
	// ModeHandoff: hotswap binds every --listen socket once and passes it to
	// each generation (systemd LISTEN_FDS). Old and new share one accept
	// queue, so a queued connection is never reset.
	ModeHandoff Mode = "handoff"
	// ModeReuseport: the server binds its own SO_REUSEPORT socket; hotswap
	// only orchestrates the overlap. Needs net.ipv4.tcp_migrate_req=1 to
	// avoid resets of connections queued on the old generation's socket.
	ModeReuseport Mode = "reuseport"
)

// Steer says whether hotswap steers the server's own SO_REUSEPORT group in
// reuseport mode (package reuseport/groupsteer).
type Steer string

const (
	// SteerAuto steers where it can (same uid, a kernel with reuseport
	// programs, sock_diag) and says once why where it cannot.
	SteerAuto Steer = "auto"
	// SteerOff leaves the group to the kernel's hash: what the old
	// generation's sockets hold when it stops is reset unless
	// net.ipv4.tcp_migrate_req=1.
	SteerOff Steer = "off"
)

// ParseSteer checks a --reuseport-steer value.
func ParseSteer(s string) (Steer, error) {
	switch Steer(s) {
	case SteerAuto, SteerOff:
		return Steer(s), nil
	}
	return "", fmt.Errorf("%q: want auto or off", s)
}

// ParseMode checks a --mode value.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case ModeHandoff, ModeReuseport:
		return Mode(s), nil
	}
	return "", fmt.Errorf("mode %q: want handoff (hotswap owns the sockets) or reuseport (the server binds with SO_REUSEPORT)", s)
}

// OnExit says what happens when the serving generation exits on its own.
type OnExit string

const (
	// OnExitExit stops everything and exits with the child's code, so the
	// kubelet sees the failure and applies the pod's restartPolicy.
	OnExitExit OnExit = "exit"
	// OnExitRestart starts the same release again in place, with
	// exponential backoff.
	OnExitRestart OnExit = "restart"
)

// ParseOnExit checks an --on-exit value.
func ParseOnExit(s string) (OnExit, error) {
	switch OnExit(s) {
	case OnExitExit, OnExitRestart:
		return OnExit(s), nil
	}
	return "", fmt.Errorf("on-exit %q: want exit (exit with the child's code) or restart (restart in place with backoff)", s)
}

// ReadyKind is how readiness of a new generation is decided.
type ReadyKind string

// The readiness checks, weakest last.
const (
	ReadyNotify ReadyKind = "notify" // READY=1 on NOTIFY_SOCKET
	ReadyHTTP   ReadyKind = "http"   // GET URL answers 2xx/3xx
	ReadyTCP    ReadyKind = "tcp"    // ADDR accepts a connection
	ReadyExec   ReadyKind = "exec"   // CMD exits 0
	ReadyDelay  ReadyKind = "delay"  // DUR after start
)

// ReadyCheck is a parsed --ready value.
type ReadyCheck struct {
	Kind   ReadyKind
	Target string        // URL, address or command
	Delay  time.Duration // for delay
}

// String is the check in flag form.
func (r ReadyCheck) String() string {
	switch r.Kind {
	case ReadyNotify:
		return "notify"
	case ReadyDelay:
		return "delay=" + r.Delay.String()
	}
	return string(r.Kind) + "=" + r.Target
}

// ParseReady reads notify, http=URL, tcp=ADDR, exec=CMD or delay=DUR.
func ParseReady(s string) (ReadyCheck, error) {
	kind, arg, _ := strings.Cut(s, "=")
	bad := func(why string) (ReadyCheck, error) {
		return ReadyCheck{}, fmt.Errorf("ready %q: %s; want notify, http=URL, tcp=HOST:PORT, exec=CMD or delay=DURATION", s, why)
	}
	switch ReadyKind(kind) {
	case ReadyNotify:
		if arg != "" {
			return bad("notify takes no value")
		}
		return ReadyCheck{Kind: ReadyNotify}, nil
	case ReadyHTTP:
		u, err := url.Parse(arg)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad("not an http:// URL")
		}
		return ReadyCheck{Kind: ReadyHTTP, Target: arg}, nil
	case ReadyTCP:
		if !strings.Contains(arg, ":") {
			return bad("not HOST:PORT")
		}
		return ReadyCheck{Kind: ReadyTCP, Target: arg}, nil
	case ReadyExec:
		if strings.TrimSpace(arg) == "" {
			return bad("empty command")
		}
		return ReadyCheck{Kind: ReadyExec, Target: arg}, nil
	case ReadyDelay:
		d, err := time.ParseDuration(arg)
		if err != nil || d < 0 {
			return bad("not a duration like 2s")
		}
		return ReadyCheck{Kind: ReadyDelay, Delay: d}, nil
	}
	return bad("unknown kind")
}

// ListenSpec is one --listen NAME=URL.
type ListenSpec struct {
	Name string // passed in LISTEN_FDNAMES
	URL  string // tcp://ADDR or unix://PATH
}

// ParseListen reads NAME=tcp://ADDR or NAME=unix://PATH.
func ParseListen(s string) (ListenSpec, error) {
	name, u, ok := strings.Cut(s, "=")
	if !ok || name == "" || strings.ContainsAny(name, ":=") {
		return ListenSpec{}, fmt.Errorf("listen %q: want NAME=tcp://HOST:PORT or NAME=unix:///PATH, e.g. http=tcp://:8080", s)
	}
	if !strings.HasPrefix(u, "tcp://") && !strings.HasPrefix(u, "tcp4://") &&
		!strings.HasPrefix(u, "tcp6://") && !strings.HasPrefix(u, "unix://") {
		return ListenSpec{}, fmt.Errorf("listen %q: address must start with tcp://, tcp4://, tcp6:// or unix://", s)
	}
	return ListenSpec{Name: name, URL: u}, nil
}

// VerifyFunc checks a release before anything starts. A non-nil error
// rejects it and the serving generation never notices.
type VerifyFunc func(ctx context.Context, r Release) error

// Config is everything the engine needs. cmd/hotswap fills it from flags,
// HOTSWAP_* variables and the config file.
type Config struct {
	// Release is the first release: the command line.
	Release Release
	// Listeners are bound once and passed to every generation (handoff mode).
	Listeners []ListenSpec
	Mode      Mode
	// ReuseportSteer: in reuseport mode, steer new connections to the new
	// generation and stop the old one only once its sockets hold nothing
	// (reset-free with net.ipv4.tcp_migrate_req=0); see docs/perf-swap.md.
	ReuseportSteer Steer
	// Ready decides when a new generation may take over.
	Ready ReadyCheck
	// NotifyAccessAll accepts READY=1 from any process of the generation's
	// group, not only its main PID.
	NotifyAccessAll bool
	StopSignal      syscall.Signal
	SwapSignal      syscall.Signal
	Rewrite         entrypoint.Rewrite
	// StartTimeout bounds start → ready; DrainTimeout bounds stop signal →
	// SIGKILL of an old generation; Grace bounds shutdown.
	StartTimeout, DrainTimeout, Grace time.Duration
	OnExit                            OnExit
	// RestartBackoff is the first and RestartBackoffMax the largest delay
	// between restarts with OnExitRestart; a run longer than RestartReset
	// resets it.
	RestartBackoff, RestartBackoffMax, RestartReset time.Duration
	// RollbackWindow: a generation that took over by a swap and dies within
	// this time (or while its predecessor still drains) is replaced by the
	// previous release at once instead of following OnExit.
	RollbackWindow time.Duration
	// MaxGenerations bounds live generations (serving + draining +
	// starting); a swap waits for a draining one to exit past it.
	MaxGenerations int
	// HandoffKeepAlive gives each generation a private handoff socket
	// (handoff.SocketEnv) and, once a new generation is ready,
	// tells the older ones to hand it their idle keep-alive connections
	// (see hotswap/handoff.go and docs/handoff.md).
	HandoffKeepAlive bool
	// ListenEnv presents the listeners in a server's own form, e.g.
	// NGINX="3;" (--listen-env; see package listenenv).
	ListenEnv []listenenv.Var
	// RuntimeDir holds the control socket and the notify sockets.
	RuntimeDir string
	// ControlSocket is the control socket's path; empty: RuntimeDir/control.sock.
	ControlSocket string
	// Verify checks each new release; nil accepts anything that exists.
	Verify VerifyFunc
	// Observers are told about every event.
	Observers []Observer
	// Self is the hotswap binary, re-executed as the LISTEN_PID shim where
	// the tiny shim (internal/tinyshim) cannot run; default /proc/self/exe.
	Self string
	// HotswapVersion is this hotswap's own version, as `hotswap status` and
	// an upgrade report it.
	HotswapVersion string
	// Env is the environment every generation starts from (default os.Environ()).
	Env []string
	Log *slog.Logger
}

// Defaults is the configuration hotswap runs with when nothing is set: the
// one table behind both New's filling of zero fields and cmd/hotswap's flag
// defaults (and so the environment's and the config file's). Ready is not in
// it: its default follows Listeners and Mode (see setDefaults).
func Defaults() Config {
	return Config{
		Mode:              ModeHandoff,
		ReuseportSteer:    SteerAuto,
		StopSignal:        syscall.SIGTERM,
		SwapSignal:        syscall.SIGUSR2,
		StartTimeout:      30 * time.Second,
		DrainTimeout:      20 * time.Second,
		Grace:             25 * time.Second,
		OnExit:            OnExitExit,
		RestartBackoff:    500 * time.Millisecond,
		RestartBackoffMax: 30 * time.Second,
		RestartReset:      time.Minute,
		RollbackWindow:    10 * time.Second,
		MaxGenerations:    4,
	}
}

// setDefaults fills every zero field from Defaults, so a library caller sets
// only what it cares about.
func (c *Config) setDefaults() {
	d := Defaults()
	orDefault(&c.Mode, d.Mode)
	orDefault(&c.ReuseportSteer, d.ReuseportSteer)
	if c.Ready.Kind == "" {
		if len(c.Listeners) > 0 || c.Mode == ModeReuseport {
			c.Ready = ReadyCheck{Kind: ReadyNotify}
		} else {
			c.Ready = ReadyCheck{Kind: ReadyDelay}
		}
	}
	orDefault(&c.StopSignal, d.StopSignal)
	orDefault(&c.SwapSignal, d.SwapSignal)
	orDefault(&c.StartTimeout, d.StartTimeout)
	orDefault(&c.DrainTimeout, d.DrainTimeout)
	orDefault(&c.Grace, d.Grace)
	orDefault(&c.OnExit, d.OnExit)
	orDefault(&c.RestartBackoff, d.RestartBackoff)
	orDefault(&c.RestartBackoffMax, d.RestartBackoffMax)
	orDefault(&c.RestartReset, d.RestartReset)
	orDefault(&c.MaxGenerations, d.MaxGenerations)
	orDefault(&c.RollbackWindow, d.RollbackWindow)
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

func orDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// FieldError is a Config value that is not valid. Key is the setting's
// name, as flag (--KEY), HOTSWAP_KEY variable and config-file key, so the
// caller can say which of those the bad value came from.
type FieldError struct {
	Key string
	Err error
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

func badField(key, format string, a ...any) error {
	return &FieldError{Key: key, Err: fmt.Errorf(format, a...)}
}

// Validate checks c as given, before defaults: a zero duration is an error
// here, not a request for the default. It is the one check of these values;
// New runs it too, after filling zero fields. Bad values are *FieldError.
func (c *Config) Validate() error {
	if c.Release.Path == "" {
		return fmt.Errorf("no command to run: give it after --, e.g. hotswap -- /app/server")
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"start-timeout", c.StartTimeout}, {"drain-timeout", c.DrainTimeout}, {"grace", c.Grace}, {"rollback-window", c.RollbackWindow}} {
		if d.v <= 0 {
			return badField(d.key, "%s: must be positive, e.g. 10s", d.v)
		}
	}
	if c.MaxGenerations < 2 {
		return badField("max-generations", "%d: must be at least 2 (the serving one and its successor)", c.MaxGenerations)
	}
	if c.Mode == ModeReuseport && len(c.Listeners) > 0 {
		return badField("listen", "not with mode reuseport: in reuseport mode the server binds its own socket; drop --listen or use --mode handoff")
	}
	if _, err := c.listenEnv(); err != nil {
		return &FieldError{Key: "listen-env", Err: err}
	}
	if c.SwapSignal == c.StopSignal || c.SwapSignal == syscall.SIGTERM || c.SwapSignal == syscall.SIGINT {
		return badField("swap-signal", "%s: must differ from TERM, INT and the stop signal", entrypoint.SignalName(c.SwapSignal))
	}
	if !entrypoint.Forwardable(c.SwapSignal) {
		return badField("swap-signal", "%s: hotswap cannot catch it; use USR2, USR1, HUP or a real-time signal", entrypoint.SignalName(c.SwapSignal))
	}
	return nil
}

// validate is New's check, after setDefaults.
func (c *Config) validate() error { return c.Validate() }
