package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hotswap-dev/hotswap/entrypoint"
	"github.com/hotswap-dev/hotswap/hotswap"
)

const rootLong = `hotswap runs a server as PID 1 of a container: it reaps zombies, forwards
signals and propagates the exit code like tini, and it replaces the server
with a new version in place on SIGUSR2, 'hotswap swap' or a new release, on
the same listening sockets, without dropping a request.

Every flag can also be set as HOTSWAP_<FLAG> (dashes become underscores) or as
a key in the --config YAML file; a flag beats the environment, which beats the
file.`

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
		c.Flags().SetInterspersed(false)
		addRunFlags(c.Flags())
		c.RunE = func(cmd *cobra.Command, args []string) error {
			return runMain(cmd.Context(), cmd.Flags(), args)
		}
	}
	root.AddCommand(run, newVersionCommand(), newSwapCommand(), newStatusCommand(), newDemoCommand(), newServeCommand(), newKillCommand(), newFlagsDocCommand(), newInstallCommand())
	root.SetVersionTemplate("hotswap {{.Version}}\n")
	return root
}

// runMain loads the configuration and runs the engine until shutdown.
func runMain(ctx context.Context, fs *pflag.FlagSet, args []string) error {
	opts, err := loadOptions(fs, args)
	if err != nil {
		return err
	}
	return supervise(ctx, opts)
}

// supervise is the init: reaper, engine, exit code.
func supervise(ctx context.Context, opts *options) error {
	log := opts.log
	reaper, err := entrypoint.NewReaper(log)
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
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var starters []func(context.Context, *hotswap.Engine) error
	for _, f := range features {
		if f.setup == nil {
			continue
		}
		start, err := f.setup(ctx, opts.flags, &opts.cfg, log)
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		if start != nil {
			starters = append(starters, start)
		}
	}
	eng, err := hotswap.New(opts.cfg, reaper)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	for _, start := range starters {
		if err := start(ctx, eng); err != nil {
			log.Warn("optional feature did not start; serving goes on", "err", err)
		}
	}
	code := eng.Run(ctx)
	// Let features finish their last act (the reporter's final patch, the
	// admin endpoint's shutdown), bounded so exit is never held up long.
	cancel()
	done := make(chan struct{})
	go func() { background.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		log.Warn("features did not stop within 3s; exiting anyway")
	}
	if code != 0 {
		return &exitError{code: code, err: fmt.Errorf("")}
	}
	return nil
}

// background holds the goroutines features start; supervise waits for them
// (briefly) before exiting.
var background sync.WaitGroup

// newLogger builds the slog logger for --log-format and --log-level.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageErr("log-level %q: want debug, info, warn or error", level)
	}
	ho := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, ho)).With("component", "hotswap"), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, ho)).With("component", "hotswap"), nil
	}
	return nil, usageErr("log-format %q: want text or json", format)
}
