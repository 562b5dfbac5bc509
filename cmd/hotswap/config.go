package main

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"log/slog"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/hotswap-dev/hotswap/entrypoint"
	"github.com/hotswap-dev/hotswap/hotswap"
)

// feature is an optional part of hotswap (release sources, Kubernetes
// reporting, the admin endpoint) wired in by its own file: it adds its flags,
// then turns the loaded configuration into engine settings and a starter.
type feature struct {
	name  string
	flags func(fs *pflag.FlagSet)
	// setup reads its flags (already merged with env and file), may add
	// observers or a verifier to cfg, and returns a function started once
	// the engine exists (nil if nothing to start).
	setup func(ctx context.Context, fs *pflag.FlagSet, cfg *hotswap.Config, log *slog.Logger) (func(context.Context, *hotswap.Engine) error, error)
}

// features is filled by init functions of the feature files.
var features []feature

func registerFeature(f feature) { features = append(features, f) }

// addRunFlags declares every flag of `hotswap run`.
func addRunFlags(f *pflag.FlagSet) {
	f.String("config", "", "YAML file with any of these flags as keys (flag > HOTSWAP_* env > file > default)")
	f.StringSlice("listen", nil, "NAME=tcp://HOST:PORT or NAME=unix:///PATH: bind once, pass to every generation as fd 3.. (repeatable)")
	f.String("mode", "handoff", "handoff: hotswap owns the sockets; reuseport: the server binds its own with SO_REUSEPORT")
	f.String("ready", "", "when a new generation is ready: notify, http=URL, tcp=HOST:PORT, exec=CMD, delay=DUR (default notify with --listen or reuseport mode, else delay=0s)")
	f.String("notify-access", "main", "who may send READY=1: main (the generation's main PID) or all (any process of its group)")
	f.String("stop-signal", "TERM", "signal that asks a generation to drain and exit (QUIT for nginx)")
	f.String("swap-signal", "USR2", "signal that triggers a swap")
	f.StringSlice("rewrite", nil, "FROM:TO signal rewrite for forwarded signals, e.g. TERM:QUIT; TO=0 drops (repeatable)")
	f.Duration("start-timeout", 30*time.Second, "how long a new generation may take to become ready before the swap fails")
	f.Duration("drain-timeout", 20*time.Second, "how long an old generation may drain before its group is SIGKILLed")
	f.Duration("grace", 25*time.Second, "on SIGTERM: how long generations may stop before SIGKILL (keep below terminationGracePeriodSeconds)")
	f.String("on-exit", "exit", "when the serving process exits on its own: exit (with its code) or restart (in place, with backoff)")
	f.Duration("rollback-window", 10*time.Second, "a swapped-in generation that dies within this time rolls back to the previous release instead of following --on-exit")
	f.Int("max-generations", 4, "bound on live generations (serving + draining + starting); further swaps wait")
	f.String("release-version", "", "version label of the command-line release (HOTSWAP_VERSION of the first generation)")
	f.String("runtime-dir", "", "directory for the control and notify sockets (default /run/hotswap, else $TMPDIR/hotswap-UID)")
	f.String("control-socket", "", "path of the control socket (default RUNTIME_DIR/control.sock)")
	f.String("log-format", "text", "text or json")
	f.String("log-level", "info", "debug, info, warn or error")
	for _, ft := range features {
		if ft.flags != nil {
			ft.flags(f)
		}
	}
}

// options is the loaded configuration.
type options struct {
	cfg   hotswap.Config
	flags *pflag.FlagSet
	log   *slog.Logger
}

// mergeSources applies HOTSWAP_* variables and the config file to every flag
// not given on the command line, through viper, and validates each value with
// the flag's own parser so a bad one is named with its source.
func mergeSources(fs *pflag.FlagSet) error {
	v := viper.New()
	v.SetEnvPrefix("HOTSWAP")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	if err := v.BindPFlags(fs); err != nil {
		return usageErr("%v", err)
	}
	path, _ := fs.GetString("config")
	if !fs.Changed("config") {
		if p, ok := os.LookupEnv("HOTSWAP_CONFIG"); ok {
			path = p
		}
	}
	fileKeys := map[string]bool{}
	if path != "" {
		v.SetConfigFile(path)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			var pe *iofs.PathError
			if errors.As(err, &pe) {
				return usageErr("config file %s: %v", path, pe.Err)
			}
			return usageErr("config file %s: not valid YAML: %v", path, err)
		}
		// v's keys are the flags (bound above) plus the file's: any key that
		// names no flag came from the file, and InConfig tells which flags
		// the file sets.
		var unknown []string
		for _, k := range v.AllKeys() {
			top, _, _ := strings.Cut(k, ".")
			inFile := v.InConfig(top)
			if fs.Lookup(top) == nil || (top == "config" && inFile) {
				unknown = append(unknown, top)
			}
			if inFile {
				fileKeys[top] = true
			}
		}
		if len(unknown) > 0 {
			sort.Strings(unknown)
			return usageErr("config file %s: unknown key(s) %s; keys are the flag names of `hotswap run --help`", path, strings.Join(unknown, ", "))
		}
	}
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "config" || f.Name == "help" || f.Name == "version" {
			return
		}
		envName := "HOTSWAP_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		_, inEnv := os.LookupEnv(envName)
		if !inEnv && !fileKeys[f.Name] {
			return
		}
		source := "environment variable " + envName
		if !inEnv {
			source = "config file key " + f.Name
		}
		val := v.Get(f.Name)
		var s string
		switch x := val.(type) {
		case []any:
			parts := make([]string, len(x))
			for i, p := range x {
				parts[i] = fmt.Sprint(p)
			}
			s = strings.Join(parts, ",")
		case []string:
			s = strings.Join(x, ",")
		case nil:
			return
		default:
			s = fmt.Sprint(x)
		}
		if f.Value.Type() == "stringSlice" {
			// Replace the default instead of appending to it.
			if sv, ok := f.Value.(pflag.SliceValue); ok {
				var items []string
				if strings.TrimSpace(s) != "" {
					items = strings.Split(s, ",")
				}
				if err := sv.Replace(items); err != nil {
					errs = append(errs, fmt.Errorf("%s: value %q: %v", source, s, err))
				}
				return
			}
		}
		if err := f.Value.Set(s); err != nil {
			errs = append(errs, fmt.Errorf("%s: value %q is not a valid %s: %v", source, s, f.Value.Type(), err))
		}
	})
	if len(errs) > 0 {
		return usageErr("%v", errors.Join(errs...))
	}
	return nil
}

// loadOptions merges flags, env and file, and turns them into a Config.
func loadOptions(fs *pflag.FlagSet, args []string) (*options, error) {
	if err := mergeSources(fs); err != nil {
		return nil, err
	}
	get := func(name string) string { s, _ := fs.GetString(name); return s }
	log, err := newLogger(os.Stderr, get("log-format"), get("log-level"))
	if err != nil {
		return nil, err
	}
	if len(args) == 0 {
		return nil, usageErr("no command to run: hotswap [flags] -- COMMAND [ARGS...], e.g. hotswap --listen http=tcp://:8080 -- /app/server (or try `hotswap demo`)")
	}
	path, err := findCommand(args[0])
	if err != nil {
		return nil, err
	}
	cfg := hotswap.Config{
		Release: hotswap.Release{Path: path, Args: args[1:], Version: get("release-version"), Source: "command line"},
		Log:     log,
	}
	bad := func(flag string, err error) error { return usageErr("--%s: %v", flag, err) }
	listens, _ := fs.GetStringSlice("listen")
	for _, l := range listens {
		ls, err := hotswap.ParseListen(l)
		if err != nil {
			return nil, bad("listen", err)
		}
		cfg.Listeners = append(cfg.Listeners, ls)
	}
	if cfg.Mode, err = hotswap.ParseMode(get("mode")); err != nil {
		return nil, bad("mode", err)
	}
	if r := get("ready"); r != "" {
		if cfg.Ready, err = hotswap.ParseReady(r); err != nil {
			return nil, bad("ready", err)
		}
	}
	switch get("notify-access") {
	case "main":
	case "all":
		cfg.NotifyAccessAll = true
	default:
		return nil, bad("notify-access", fmt.Errorf("%q: want main or all", get("notify-access")))
	}
	for _, s := range []struct {
		flag string
		dst  *syscall.Signal
	}{{"stop-signal", &cfg.StopSignal}, {"swap-signal", &cfg.SwapSignal}} {
		sig, err := entrypoint.ParseSignal(get(s.flag))
		if err != nil {
			return nil, bad(s.flag, err)
		}
		*s.dst = sig
	}
	rw, _ := fs.GetStringSlice("rewrite")
	if cfg.Rewrite, err = entrypoint.ParseRewrite(rw); err != nil {
		return nil, bad("rewrite", err)
	}
	for _, d := range []struct {
		flag string
		dst  *time.Duration
	}{{"start-timeout", &cfg.StartTimeout}, {"drain-timeout", &cfg.DrainTimeout}, {"grace", &cfg.Grace}} {
		v, _ := fs.GetDuration(d.flag)
		if v <= 0 {
			return nil, bad(d.flag, fmt.Errorf("%s: must be positive, e.g. 10s", v))
		}
		*d.dst = v
	}
	if cfg.OnExit, err = hotswap.ParseOnExit(get("on-exit")); err != nil {
		return nil, bad("on-exit", err)
	}
	cfg.RollbackWindow, _ = fs.GetDuration("rollback-window")
	if cfg.RollbackWindow <= 0 {
		return nil, bad("rollback-window", fmt.Errorf("must be positive, e.g. 10s"))
	}
	cfg.MaxGenerations, _ = fs.GetInt("max-generations")
	if cfg.MaxGenerations < 2 {
		return nil, bad("max-generations", fmt.Errorf("%d: must be at least 2", cfg.MaxGenerations))
	}
	cfg.RuntimeDir = get("runtime-dir")
	cfg.ControlSocket = get("control-socket")
	return &options{cfg: cfg, flags: fs, log: log}, nil
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
