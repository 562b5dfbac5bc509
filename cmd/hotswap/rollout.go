//go:build !nokube

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/hotswap-dev/hotswap/hotswap/fleet"
	"github.com/hotswap-dev/hotswap/hotswap/rollout"
	"github.com/hotswap-dev/hotswap/hotswap/source"
)

// rolloutFlags are the flags every rollout subcommand shares: where the
// release ConfigMap is and how to reach the apiserver (kubectl's names, so
// `kubectl hotswap` reads like kubectl).
type rolloutFlags struct {
	namespace, kubeconfig, context, key string
	interval                            time.Duration
}

const rolloutLong = `Takes a release through the pods of a Deployment in place: canary steps,
a health bake per step, halt and roll back on the first bad sign. The
fleet's state lives in the release ConfigMap the pods already watch
(--configmap on each pod); see docs/rollout.md.

  hotswap rollout start web-release -f v2.yaml --deployment web --steps 1,25%,50%,100% --bake 1m
  hotswap rollout status web-release
  hotswap rollout pause|resume|abort|promote web-release
  hotswap rollout drive web-release          # continue after a killed driver

As a kubectl plugin (kubectl-hotswap on PATH, a link to hotswap):
  kubectl hotswap start web-release -f v2.yaml --deployment web`

// newRolloutCommand is `hotswap rollout`; kubectl-hotswap is the same tree.
func newRolloutCommand() *cobra.Command {
	var f rolloutFlags
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Roll a release out to a Deployment's pods in canary steps, in place",
		Long:  rolloutLong,
	}
	pf := cmd.PersistentFlags()
	pf.StringVarP(&f.namespace, "namespace", "n", "", "namespace of the ConfigMap and pods (default: the kubeconfig context's)")
	pf.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster)")
	pf.StringVar(&f.context, "context", "", "kubeconfig context")
	pf.StringVar(&f.key, "configmap-key", rollout.DefaultKey, "the key the pods read the stable manifest from (their --configmap-key)")
	pf.DurationVar(&f.interval, "interval", time.Second, "how often the driver looks at the pods")
	cmd.AddCommand(newRolloutStart(&f), newRolloutDrive(&f), newRolloutStatus(&f),
		newRolloutSteer(&f, "pause", "Hold the rollout where it is (canary pods stay on the canary)"),
		newRolloutSteer(&f, "resume", "Continue a paused rollout (the step's bake starts over)"),
		newRolloutSteer(&f, "abort", "Stop the rollout and send every canary pod back to stable"),
		newRolloutSteer(&f, "promote", "Make the canary the stable release now"))
	return cmd
}

// kubectlPluginMain runs `kubectl hotswap ...`: the rollout commands at the top.
func kubectlPluginMain(args []string) int {
	root := newRolloutCommand()
	root.Use = "kubectl-hotswap"
	root.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl hotswap"}
	root.SilenceUsage, root.SilenceErrors = true, true
	root.SetArgs(args)
	return exitCode(root.Execute())
}

// exitCode prints err as execute does and maps it to an exit code.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(os.Stderr, "hotswap:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "hotswap:", err)
	return 2
}

// driver builds a driver for the ConfigMap named by arg ([NAMESPACE/]NAME).
func (f *rolloutFlags) driver(arg string, mod func(*rollout.Options)) (*rollout.Driver, error) {
	ns, name, ok := strings.Cut(arg, "/")
	if !ok {
		ns, name = f.namespace, arg
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: f.context})
	rc, err := cc.ClientConfig()
	if err != nil {
		return nil, &exitError{code: 1, err: fmt.Errorf("rollout: no apiserver: %w", err)}
	}
	if ns == "" {
		if ns, _, err = cc.Namespace(); err != nil || ns == "" {
			ns = "default"
		}
	}
	o := rollout.Options{REST: rc, Namespace: ns, ConfigMap: name, Key: f.key, Interval: f.interval,
		Log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	if mod != nil {
		mod(&o)
	}
	d, err := rollout.New(o)
	if err != nil {
		return nil, usageErr("%v", err)
	}
	return d, nil
}

// signalContext ends on SIGINT/SIGTERM: a killed driver leaves the rollout
// where the ConfigMap says, to be continued by `rollout drive`.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// driveFlags are the flags of the commands that drive (start, drive).
type driveFlags struct {
	analysis        string
	analysisTimeout time.Duration
	metricsAddr     string
}

func (df *driveFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&df.analysis, "analysis", "", "command run with sh -c after each step's bake; a non-zero exit rolls back (env: HOTSWAP_ROLLOUT_STEP, _CANARY_VERSION, _STABLE_VERSION, _PODS)")
	cmd.Flags().DurationVar(&df.analysisTimeout, "analysis-timeout", time.Minute, "the analysis command fails after this long")
	cmd.Flags().StringVar(&df.metricsAddr, "metrics-address", "", "serve the driver's metrics (Prometheus text) on this address, e.g. :9090")
}

func (df *driveFlags) options(o *rollout.Options) {
	o.Analysis, o.AnalysisTimeout = df.analysis, df.analysisTimeout
}

// drive runs d until the rollout ends and maps the outcome to an exit code.
func (df *driveFlags) drive(cmd *cobra.Command, d *rollout.Driver) error {
	ctx, cancel := signalContext()
	defer cancel()
	if df.metricsAddr != "" {
		ln, err := net.Listen("tcp", df.metricsAddr)
		if err != nil {
			return &exitError{code: 1, err: fmt.Errorf("--metrics-address: %w", err)}
		}
		srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			_ = d.Metrics().WriteMetrics(w)
		})}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
	}
	r, err := d.Drive(ctx)
	out := cmd.OutOrStdout()
	switch {
	case errors.Is(err, rollout.ErrRolledBack) || errors.Is(err, rollout.ErrAborted):
		return &exitError{code: 1, err: err}
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(out, "driver stopped; the rollout stays where the ConfigMap says: continue it with `hotswap rollout drive`")
		return &exitError{code: 1}
	case err != nil:
		return &exitError{code: 1, err: err}
	}
	fmt.Fprintf(out, "%s: %s\n", r.Phase, r.Reason)
	return nil
}

func newRolloutStart(f *rolloutFlags) *cobra.Command {
	var file, deployment, selector, stepsFlag string
	var bake, swapTimeout time.Duration
	var maxSwapping int
	var promote, detach bool
	var df driveFlags
	cmd := &cobra.Command{
		Use:   "start CONFIGMAP -f MANIFEST (--deployment NAME | -l SELECTOR)",
		Short: "Start a rollout of MANIFEST and drive it to the end (exit 0 promoted, 1 rolled back)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return usageErr("-f MANIFEST is required (the release manifest, docs/sources.md; - for stdin)")
			}
			var man []byte
			var err error
			if file == "-" {
				man, err = readAllLimited(os.Stdin)
			} else {
				man, err = os.ReadFile(file)
			}
			if err != nil {
				return usageErr("-f: %v", err)
			}
			steps, err := fleet.ParseSteps(stepsFlag)
			if err != nil {
				return usageErr("--steps: %v", err)
			}
			d, err := f.driver(args[0], df.options)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			r, err := d.Start(ctx, rollout.Spec{Manifest: man, Deployment: deployment, Selector: selector, Steps: steps,
				Bake: bake, SwapTimeout: swapTimeout, MaxSwapping: maxSwapping, AutoPromote: promote})
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rollout of %s (stable %s) to %s: %s\n", r.CanaryVersion, r.StableVersion, r.Target, r.Phase)
			if detach {
				return nil
			}
			return df.drive(cmd, d)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&file, "filename", "f", "", "the release manifest to roll out (- for stdin)")
	fl.StringVar(&deployment, "deployment", "", "roll out to this Deployment's pods")
	fl.StringVarP(&selector, "selector", "l", "", "roll out to the pods this label selector selects")
	fl.StringVar(&stepsFlag, "steps", "1,25%,50%,100%", "pods on the canary per step: counts or percentages, growing; ends at 100%")
	fl.DurationVar(&bake, "bake", 30*time.Second, "how long every pod of a step must stay healthy before the next step")
	fl.DurationVar(&swapTimeout, "swap-timeout", 2*time.Minute, "a pod that does not serve the canary healthy this long after being told is a bad sign")
	fl.IntVar(&maxSwapping, "max-swapping", 1, "pods told to swap at once, at most")
	fl.BoolVar(&promote, "promote", true, "make the canary stable when the last step has baked (false: stop at Completed and wait for `promote`)")
	fl.BoolVar(&detach, "detach", false, "only record the rollout; a driver elsewhere (the in-cluster one, `rollout drive`) takes it")
	df.add(cmd)
	return cmd
}

func readAllLimited(f *os.File) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(f, source.MaxManifestSize+1))
	if err == nil && len(b) > source.MaxManifestSize {
		err = fmt.Errorf("manifest larger than %d bytes", source.MaxManifestSize)
	}
	return b, err
}

func newRolloutDrive(f *rolloutFlags) *cobra.Command {
	var forever bool
	var df driveFlags
	cmd := &cobra.Command{
		Use:   "drive CONFIGMAP",
		Short: "Drive the rollout recorded in CONFIGMAP to its end (continues after a killed driver)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := f.driver(args[0], func(o *rollout.Options) { df.options(o); o.Forever = forever })
			if err != nil {
				return err
			}
			return df.drive(cmd, d)
		},
	}
	cmd.Flags().BoolVar(&forever, "forever", false, "keep running after a rollout ends and drive the next one (the in-cluster driver)")
	df.add(cmd)
	return cmd
}

func newRolloutStatus(f *rolloutFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status CONFIGMAP",
		Short: "Where the rollout stands: its phase and step, and every pod's release, generation, state and last swap",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return usageErr("-o %q: want table or json", output)
			}
			d, err := f.driver(args[0], nil)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			rep, err := d.Status(ctx)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return rep.WriteTable(cmd.OutOrStdout(), time.Now())
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

func newRolloutSteer(f *rolloutFlags, verb, short string) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   verb + " CONFIGMAP",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := f.driver(args[0], nil)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			why := reason
			if why == "" {
				why = "by " + userName()
			}
			var r *fleet.Rollout
			switch verb {
			case "pause":
				r, err = d.Pause(ctx, why)
			case "resume":
				r, err = d.Resume(ctx)
			case "abort":
				r, err = d.Abort(ctx, why)
			case "promote":
				r, err = d.Promote(ctx, why)
			}
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", r.Phase, r.Reason)
			return nil
		},
	}
	if verb != "resume" {
		cmd.Flags().StringVar(&reason, "reason", "", "why, for the record and the event")
	}
	return cmd
}

func userName() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	h, _ := os.Hostname()
	return h
}
