package main

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"os/exec"
	"time"

	"github.com/spf13/pflag"

	"github.com/hotswap-dev/hotswap/entrypoint"
	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/hotswap/listenenv"
)

// runOptions are the core flags of `hotswap run`, one field each, as the
// user wrote them. Their defaults come from hotswap.Defaults, their checks
// from the hotswap parsers and Config.Validate: cmd only converts. The
// features' flags live in the features' own options.
type runOptions struct {
	config         string
	listen         []string
	listenEnv      []string
	mode           string
	reuseportSteer string
	ready          string
	notifyAccess   string
	stopSignal     string
	swapSignal     string
	rewrite        []string
	startTimeout   time.Duration
	drainTimeout   time.Duration
	grace          time.Duration
	onExit         string
	rollbackWindow time.Duration
	maxGenerations int
	releaseVersion string
	runtimeDir     string
	controlSocket  string
	logFormat      string
	logLevel       string
}

func (o *runOptions) addFlags(f *pflag.FlagSet) {
	d := hotswap.Defaults()
	f.StringVar(&o.config, "config", "", "YAML file with any of these flags as keys (flag > HOTSWAP_* env > file > default)")
	f.StringSliceVar(&o.listen, "listen", nil, "NAME=tcp://HOST:PORT or NAME=unix:///PATH: bind once, pass to every generation as fd 3.. (repeatable)")
	f.StringArrayVar(&o.listenEnv, "listen-env", nil, "NAME=TEMPLATE: give every generation NAME rendered from the listeners' fds, for servers that take inherited sockets in their own form, e.g. 'NGINX={{range .}}{{.FD}};{{end}}' (repeatable; see docs/servers.md)")
	f.StringVar(&o.mode, "mode", string(d.Mode), "handoff: hotswap owns the sockets; reuseport: the server binds its own with SO_REUSEPORT")
	f.StringVar(&o.reuseportSteer, "reuseport-steer", string(d.ReuseportSteer), "reuseport mode: auto steers new connections to the ready generation and stops the old one once its sockets hold nothing (no reset, whatever net.ipv4.tcp_migrate_req says); off leaves the server's SO_REUSEPORT group to the kernel")
	f.StringVar(&o.ready, "ready", "", "when a new generation is ready: notify, http=URL, tcp=HOST:PORT, exec=CMD, delay=DUR (default notify with --listen or reuseport mode, else delay=0s)")
	f.StringVar(&o.notifyAccess, "notify-access", "main", "who may send READY=1: main (the generation's main PID) or all (any process of its group)")
	f.StringVar(&o.stopSignal, "stop-signal", entrypoint.SignalName(d.StopSignal), "signal that asks a generation to drain and exit (QUIT for nginx)")
	f.StringVar(&o.swapSignal, "swap-signal", entrypoint.SignalName(d.SwapSignal), "signal that triggers a swap")
	f.StringSliceVar(&o.rewrite, "rewrite", nil, "FROM:TO signal rewrite for forwarded signals, e.g. TERM:QUIT; TO=0 drops (repeatable)")
	f.DurationVar(&o.startTimeout, "start-timeout", d.StartTimeout, "how long a new generation may take to become ready before the swap fails")
	f.DurationVar(&o.drainTimeout, "drain-timeout", d.DrainTimeout, "how long an old generation may drain before its group is SIGKILLed")
	f.DurationVar(&o.grace, "grace", d.Grace, "on SIGTERM: how long generations may stop before SIGKILL (keep below terminationGracePeriodSeconds)")
	f.StringVar(&o.onExit, "on-exit", string(d.OnExit), "when the serving process exits on its own: exit (with its code) or restart (in place, with backoff)")
	f.DurationVar(&o.rollbackWindow, "rollback-window", d.RollbackWindow, "a swapped-in generation that dies within this time rolls back to the previous release instead of following --on-exit")
	f.IntVar(&o.maxGenerations, "max-generations", d.MaxGenerations, "bound on live generations (serving + draining + starting); further swaps wait")
	f.StringVar(&o.releaseVersion, "release-version", "", "version label of the command-line release (HOTSWAP_VERSION of the first generation)")
	f.StringVar(&o.runtimeDir, "runtime-dir", "", "absolute directory for the control and notify sockets (default /run/hotswap, else $TMPDIR/hotswap-UID if it is hotswap's own, mode 0700)")
	f.StringVar(&o.controlSocket, "control-socket", "", "path of the control socket (default RUNTIME_DIR/control.sock)")
	f.StringVar(&o.logFormat, "log-format", "text", "text or json")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
}

// hotswapConfig turns the options and the command line into the engine's
// Config, checked; a bad value is a usage error naming its source.
func (o *runOptions) hotswapConfig(s *settings, args []string) (hotswap.Config, error) {
	var cfg hotswap.Config
	log, err := newLogger(os.Stderr, o.logFormat, o.logLevel)
	if err != nil {
		return cfg, s.badField(err)
	}
	if len(args) == 0 {
		return cfg, usageErr("no command to run: hotswap [flags] -- COMMAND [ARGS...], e.g. hotswap --listen http=tcp://:8080 -- /app/server (or try `hotswap demo`)")
	}
	path, err := findCommand(args[0])
	if err != nil {
		return cfg, err
	}
	cfg = hotswap.Config{
		Release:        hotswap.Release{Path: path, Args: args[1:], Version: o.releaseVersion, Source: "command line"},
		StartTimeout:   o.startTimeout,
		DrainTimeout:   o.drainTimeout,
		Grace:          o.grace,
		RollbackWindow: o.rollbackWindow,
		MaxGenerations: o.maxGenerations,
		RuntimeDir:     o.runtimeDir,
		ControlSocket:  o.controlSocket,
		Log:            log,
	}
	for _, l := range o.listen {
		ls, err := hotswap.ParseListen(l)
		if err != nil {
			return cfg, s.bad("listen", err)
		}
		cfg.Listeners = append(cfg.Listeners, ls)
	}
	for _, e := range o.listenEnv {
		v, err := listenenv.Parse(e)
		if err != nil {
			return cfg, s.bad("listen-env", err)
		}
		cfg.ListenEnv = append(cfg.ListenEnv, v)
	}
	if cfg.Mode, err = hotswap.ParseMode(o.mode); err != nil {
		return cfg, s.bad("mode", err)
	}
	if cfg.ReuseportSteer, err = hotswap.ParseSteer(o.reuseportSteer); err != nil {
		return cfg, s.bad("reuseport-steer", err)
	}
	if o.ready != "" {
		if cfg.Ready, err = hotswap.ParseReady(o.ready); err != nil {
			return cfg, s.bad("ready", err)
		}
	}
	switch o.notifyAccess {
	case "main":
	case "all":
		cfg.NotifyAccessAll = true
	default:
		return cfg, s.bad("notify-access", fmt.Errorf("%q: want main or all", o.notifyAccess))
	}
	if cfg.StopSignal, err = entrypoint.ParseSignal(o.stopSignal); err != nil {
		return cfg, s.bad("stop-signal", err)
	}
	if cfg.SwapSignal, err = entrypoint.ParseSignal(o.swapSignal); err != nil {
		return cfg, s.bad("swap-signal", err)
	}
	if cfg.Rewrite, err = entrypoint.ParseRewrite(o.rewrite); err != nil {
		return cfg, s.bad("rewrite", err)
	}
	if cfg.OnExit, err = hotswap.ParseOnExit(o.onExit); err != nil {
		return cfg, s.bad("on-exit", err)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, s.badField(err)
	}
	return cfg, nil
}

// findCommand resolves the command like a shell and fails like one: 127 for
// a command that does not exist, 126 for one that cannot be executed.
func findCommand(name string) (string, error) {
	path, err := exec.LookPath(name)
	if err == nil {
		return path, nil
	}
	if errors.Is(err, iofs.ErrNotExist) || errors.Is(err, exec.ErrNotFound) {
		return "", &exitError{code: 127, err: fmt.Errorf("command not found: %s (check the path, or the image's $PATH)", name)}
	}
	if fi, serr := os.Stat(name); serr == nil && fi.IsDir() {
		return "", &exitError{code: 126, err: fmt.Errorf("cannot execute %s: is a directory", name)}
	}
	return "", &exitError{code: 126, err: fmt.Errorf("cannot execute %s: %v (is it executable? chmod +x)", name, err)}
}
