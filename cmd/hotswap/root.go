package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hotswap-dev/hotswap/entrypoint"
	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/internal/startuppages"
)

const rootLong = `hotswap runs a server as PID 1 of a container: it reaps zombies, forwards
signals and propagates the exit code like tini, and it replaces the server
with a new version in place on SIGUSR2, 'hotswap swap' or a new release, on
the same listening sockets, without dropping a request.

Every flag can also be set as HOTSWAP_<FLAG> (dashes become underscores) or as
a key in the --config YAML file; a flag beats the environment, which beats the
file.

How COMMAND is told from a subcommand: 'hotswap -- COMMAND' always runs
COMMAND. Without '--', a first word naming a subcommand (swap, status, ...)
runs it; any other word is the command to run, except one that is neither a
path nor an executable on $PATH and is within two typos of a subcommand
('hotswap sawp'): that is a usage error suggesting the subcommand.`

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "hotswap [flags] -- COMMAND [ARGS...]",
		Short:         "PID-1 entrypoint that hot-swaps the serving process without dropping requests",
		Long:          rootLong,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.ArbitraryArgs,
	}
	run := &cobra.Command{
		Use:   "run [flags] -- COMMAND [ARGS...]",
		Short: "Supervise COMMAND as PID 1 and swap it in place (the default command)",
		Long:  rootLong,
		Args:  cobra.ArbitraryArgs,
	}
	for _, c := range []*cobra.Command{root, run} {
		rc := newRunCommand()
		c.Flags().SetInterspersed(false)
		rc.addFlags(c.Flags())
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if cmd == root {
				if err := nearMissSubcommand(root, args); err != nil {
					return err
				}
			}
			cfg, d, err := rc.load(cmd.Flags(), args)
			if err != nil {
				return err
			}
			return rc.run(cmd.Context(), cfg, d)
		}
	}
	root.AddCommand(run, newVersionCommand(), newSwapCommand(), newStatusCommand(), newDemoCommand(), newServeCommand(), newKillCommand(), newFlagsDocCommand(), newInstallCommand(), newRolloutCommand(), newUpgradeCommand())
	// No SetVersionTemplate: a cobra template is executed by text/template,
	// whose reflective method lookup makes the linker keep every exported
	// method in the binary (+5.9 MB, docs/perf-footprint.md). --version
	// prints cobra's template-free default, "hotswap version X".
	return root
}

// runCommand is `hotswap run`: its options and its features, which are set
// up in this fixed order (bake after sources and reporting, admin last: it
// reads the reporter's counters).
type runCommand struct {
	opts     runOptions
	features []feature
}

func newRunCommand() *runCommand {
	srcs := &sourcesFeature{}
	kube, reportErrors := kubeFeatures(&srcs.releaseRoot)
	fs := []feature{&handoffFeature{}, srcs}
	fs = append(fs, kube...)
	// The bake after the sources and reporting: it wraps their Verify
	// hook and reports through their observers.
	fs = append(fs, &bakeFeature{})
	fs = append(fs, &adminFeature{reportErrors: reportErrors})
	return &runCommand{features: fs}
}

// addFlags declares every flag of `hotswap run`.
func (c *runCommand) addFlags(fs *pflag.FlagSet) {
	c.opts.addFlags(fs)
	for _, f := range c.features {
		f.addFlags(fs)
	}
}

// load merges flags, environment and config file into the options, and
// turns them into the engine's Config and the features' dependencies.
func (c *runCommand) load(fs *pflag.FlagSet, args []string) (hotswap.Config, *deps, error) {
	s, err := loadSettings(fs)
	if err != nil {
		return hotswap.Config{}, nil, err
	}
	cfg, err := c.opts.hotswapConfig(s, args)
	if err != nil {
		return cfg, nil, err
	}
	return cfg, &deps{log: cfg.Log, set: s}, nil
}

// run is the init: reaper, features, engine, exit code.
func (c *runCommand) run(ctx context.Context, cfg hotswap.Config, d *deps) error {
	log := d.log
	cfg.HotswapVersion = version
	// An upgrade exec'ed us: its children are ours to adopt before the
	// reaper's first wait (docs/upgrade.md).
	up, err := hotswap.LoadHandover()
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("upgrade: %w", err)}
	}
	var reaper *entrypoint.Reaper
	var adopted map[int]*entrypoint.Process
	if up != nil {
		reaper, adopted, err = entrypoint.NewReaperAdopting(log, up.Adopt())
	} else {
		reaper, err = entrypoint.NewReaper(log)
	}
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	if entrypoint.IsPID1() {
		log.Debug("running as PID 1")
	} else {
		if err := entrypoint.BecomeSubreaper(); err != nil {
			log.Warn("cannot become a child subreaper; orphans of the server will not be reaped by hotswap", "err", err)
		} else {
			log.Info("not PID 1: running as a child subreaper; `kill -USR2 1` does not reach hotswap here (e.g. shareProcessNamespace), use `hotswap swap`", "pid", os.Getpid())
		}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	d.reaper = reaper
	d.group = newGroup(ctx)
	defer d.group.cancel()
	var starters []func(*hotswap.Engine) error
	for _, f := range c.features {
		start, err := f.setup(d, &cfg)
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		if start != nil {
			starters = append(starters, start)
		}
	}
	cfg.Observers = append(cfg.Observers, releasePages(ctx, log))
	var eng *hotswap.Engine
	if up != nil {
		eng, err = hotswap.NewResumed(cfg, reaper, up, adopted)
	} else {
		eng, err = hotswap.New(cfg, reaper)
	}
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	for _, start := range starters {
		if err := start(eng); err != nil {
			log.Warn("optional feature did not start; serving goes on", "err", err)
		}
	}
	code := eng.Run(ctx)
	if !d.group.stop(3 * time.Second) {
		log.Warn("features did not stop within 3s; exiting anyway")
	}
	if code != 0 {
		return &exitError{code: code, err: fmt.Errorf("")}
	}
	return nil
}

// pagesQuiet is how long after start, and after each swap, hotswap gives
// back the pages of its binary that only that burst of work touched: long
// enough for the generation to be up and the apiserver connection made.
const pagesQuiet = 10 * time.Second

// releasePages unmaps the read-only pages of hotswap's own binary once
// start-up, and later each swap, has been over for pagesQuiet: without it
// most of an idle hotswap's RSS is code and data that only package init and
// set-up ran (internal/startuppages, docs/perf-footprint.md). It returns
// the observer that postpones the release after a swap.
func releasePages(ctx context.Context, log *slog.Logger) hotswap.Observer {
	s := startuppages.NewScheduler(pagesQuiet, func(kB int, err error) {
		if err != nil {
			log.Debug("could not give back the binary's pages", "err", err)
			return
		}
		log.Debug("gave back the binary's pages touched by start-up or a swap", "kB", kB)
	})
	context.AfterFunc(ctx, s.Stop)
	return hotswap.ObserverFunc(func(e hotswap.Event) {
		if e.Type == hotswap.SwapSucceeded || e.Type == hotswap.SwapFailed {
			s.Poke()
		}
	})
}

// newLogger builds the slog logger for --log-format and --log-level. A bad
// value is a *hotswap.FieldError, so the caller can name its source.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, &hotswap.FieldError{Key: "log-level", Err: fmt.Errorf("%q: want debug, info, warn or error", level)}
	}
	ho := &slog.HandlerOptions{Level: lv, ReplaceAttr: readableDurations}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(withComponent(slog.NewTextHandler(w, ho), "hotswap")), nil
	case "json":
		return slog.New(withComponent(slog.NewJSONHandler(w, ho), "hotswap")), nil
	}
	return nil, &hotswap.FieldError{Key: "log-format", Err: fmt.Errorf("%q: want text or json", format)}
}

// readableDurations writes durations as Go durations ("1.5s") in every
// format: slog's JSON handler would write nanoseconds. `hotswap status -o
// json` follows the same convention.
func readableDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}
