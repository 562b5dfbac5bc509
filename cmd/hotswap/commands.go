package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/hotswap/exampleserver"
)

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print hotswap's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "hotswap %s %s/%s %s\n", version, runtime.GOOS, runtime.GOARCH, runtime.Version())
		},
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newServeCommand() *cobra.Command {
	var o exampleserver.Options
	var logLevel string
	cmd := &cobra.Command{
		Use:    "serve",
		Short:  "The built-in example HTTP server (answers with its PID, version and generation; ?sleep=DUR)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(os.Stderr, "text", logLevel)
			if err != nil {
				return usageErr("--%v", err)
			}
			if code := exampleserver.Run(o, log.With("component", "example-server")); code != 0 {
				return &exitError{code: code, err: fmt.Errorf("")}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Addr, "addr", ":8080", "address to bind when no listener is inherited")
	f.StringVar(&o.Version, "version", "", "version to report (default $HOTSWAP_VERSION)")
	f.DurationVar(&o.Grace, "grace", time.Second, "drain: answer with Connection: close this long before shutting down")
	f.DurationVar(&o.StartDelay, "start-delay", 0, "sleep before reporting ready")
	f.IntVar(&o.ExitAtStart, "exit-at-start", 0, "fault: exit with this code at start")
	f.BoolVar(&o.NeverReady, "never-ready", false, "fault: never report ready")
	f.DurationVar(&o.ExitAfterReady, "exit-after-ready", 0, "fault: exit 1 this long after ready")
	f.BoolVar(&o.IgnoreTerm, "ignore-term", false, "fault: ignore SIGTERM")
	f.DurationVar(&o.UnhealthyAfter, "unhealthy-after", 0, "fault: answer every request (and /healthz) with 503 this long after ready (a release that is ready, then fails its health check)")
	f.BoolVar(&o.ExitDrain, "exit-drain", false, "fault: with --exit-after-ready, drain before exiting 1 (a clean failure, not a crash)")
	f.BoolVar(&o.PlainShutdown, "plain-shutdown", false, "stop with plain http.Server.Shutdown instead of reuseport's Drain (for comparison)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

func newDemoCommand() *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the built-in example server behind hotswap on :8080 and swap it on SIGUSR2 or `hotswap swap`",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			self, err := os.Executable()
			if err != nil {
				return &exitError{code: 1, err: fmt.Errorf("find own binary: %w", err)}
			}
			fs := pflag.NewFlagSet("demo", pflag.ContinueOnError)
			rc := newRunCommand()
			rc.addFlags(fs)
			_ = fs.Set("listen", "http=tcp://"+addr)
			cfg, d, err := rc.load(fs, []string{self, "serve"})
			if err != nil {
				return err
			}
			cfg.Release.Version = "demo"
			host := addr
			if strings.HasPrefix(host, ":") {
				host = "127.0.0.1" + host
			}
			fmt.Fprintf(os.Stderr, `
hotswap demo: the example server is behind hotswap on %s.
  In another terminal:
    while :; do curl -s %s; sleep 0.2; done     # watch pid/generation change
    %s swap                                      # swap now, prints the outcome
    kill -USR2 %d                                   # the same, by signal
    %s status                                    # generations and last swap
  Ctrl-C stops it.

`, addr, "http://"+host+"/", self, os.Getpid(), self)
			return rc.run(context.Background(), cfg, d)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", ":8080", "address to serve on")
	return cmd
}

// newFlagsDocCommand prints the configuration reference as a Markdown table,
// generated from the flags so the README cannot drift from the binary.
func newFlagsDocCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "flags-doc",
		Short:  "Print the configuration reference (Markdown) generated from the flags",
		Hidden: true,
		Args:   cobra.NoArgs,
		Run:    func(cmd *cobra.Command, _ []string) { writeFlagsDoc(cmd.OutOrStdout()) },
	}
}

// writeFlagsDoc writes one table row per flag of `hotswap run`.
func writeFlagsDoc(w io.Writer) {
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	newRunCommand().addFlags(fs)
	fmt.Fprintln(w, "| flag | environment / config key | default | meaning |")
	fmt.Fprintln(w, "| --- | --- | --- | --- |")
	fs.VisitAll(func(f *pflag.Flag) {
		env := envName(f.Name)
		def := strings.Trim(f.DefValue, "[]")
		if def == "" || def == "0s" || def == "false" {
			def = "—"
		}
		fmt.Fprintf(w, "| `--%s` | `%s` / `%s` | %s | %s |\n", f.Name, env, f.Name, def, strings.ReplaceAll(f.Usage, "|", "\\|"))
	})
}

// writeStatusJSON is `hotswap status -o json`: the engine's Status as is.
func writeStatusJSON(w io.Writer, s *hotswap.Status) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}
