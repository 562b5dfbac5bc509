package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hotswap-dev/hotswap/hotswap"
)

// The client side of the control socket: `hotswap swap` and `hotswap
// status`, as an operator runs them (often at 2 am, through kubectl exec).

// clientFlags are where a client finds the control socket: the same
// --runtime-dir / HOTSWAP_RUNTIME_DIR the server reads, or the socket itself.
type clientFlags struct {
	socket     string
	runtimeDir string
}

func (c *clientFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&c.socket, "control-socket", os.Getenv("HOTSWAP_CONTROL_SOCKET"), "control socket path (default: control.sock in --runtime-dir, else search /run/hotswap and $TMPDIR/hotswap-UID)")
	cmd.Flags().StringVar(&c.runtimeDir, "runtime-dir", os.Getenv("HOTSWAP_RUNTIME_DIR"), "the server's --runtime-dir (env HOTSWAP_RUNTIME_DIR, as for the server)")
}

// path is the control socket to dial; "" searches the defaults.
func (c *clientFlags) path() string {
	switch {
	case c.socket != "":
		return c.socket
	case c.runtimeDir != "":
		if abs, err := filepath.Abs(c.runtimeDir); err == nil {
			return filepath.Join(abs, "control.sock")
		}
		return filepath.Join(c.runtimeDir, "control.sock")
	}
	return ""
}

func (c *clientFlags) status(timeout time.Duration) (*hotswap.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := hotswap.Control(ctx, c.path(), hotswap.ControlRequest{Op: "status"})
	if err != nil {
		return nil, err
	}
	if resp.Error != "" || resp.Status == nil {
		return nil, fmt.Errorf("status: %s", resp.Error)
	}
	return resp.Status, nil
}

// swapTimedOut explains a `hotswap swap` that got no outcome in time:
// whether the swap was requested at all (the engine goes on with it; a
// client's timeout never cancels a swap) and where to see how it ends.
func (c *clientFlags) swapTimedOut(before *hotswap.Status, timeout time.Duration) error {
	now, err := c.status(5 * time.Second)
	switch {
	case err != nil:
		return fmt.Errorf("no outcome within --timeout %s, and hotswap does not answer `status` either (%v): the swap may or may not have been requested", timeout, err)
	case before != nil && now.Swaps > before.Swaps || now.Phase == hotswap.PhaseSwapping:
		return fmt.Errorf("no outcome within --timeout %s: the swap was requested (swap #%d, phase %s) and goes on without this client; run `hotswap status` to see how it ends", timeout, now.Swaps, now.Phase)
	case now.Phase == hotswap.PhaseStarting:
		return fmt.Errorf("no outcome within --timeout %s: the swap is requested and waits for the first generation to be ready; run `hotswap status`", timeout)
	default:
		return fmt.Errorf("no outcome within --timeout %s: no swap started (phase %s, still %d swaps); run `hotswap status`, and retry with a longer --timeout", timeout, now.Phase, now.Swaps)
	}
}

func newSwapCommand() *cobra.Command {
	var cf clientFlags
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "swap",
		Short: "Swap the serving process now and print the outcome (exit 0 swapped, 1 failed)",
		Long: `Asks the running hotswap, through its control socket, to start a new
generation, wait until it is ready and drain the old one. It waits for the
outcome: exit 0 when the new generation serves, 1 when the swap failed or
was rejected (the old generation keeps serving), 2 on usage errors.

--timeout only bounds how long this command waits: a swap already requested
goes on, and the message says whether it was; ` + "`hotswap status`" + ` shows its
outcome.

In a pod: kubectl exec POD -- /hotswap swap`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			before, _ := cf.status(min(timeout, 5*time.Second))
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			resp, err := hotswap.Control(ctx, cf.path(), hotswap.ControlRequest{Op: "swap", Timeout: timeout.String()})
			if err == nil && resp.Error != "" {
				err = errors.New(resp.Error)
				if strings.Contains(resp.Error, context.DeadlineExceeded.Error()) {
					err = context.DeadlineExceeded
				}
			}
			// The socket's deadline is the context's: an i/o timeout is
			// the --timeout running out as well.
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || err != nil && ctx.Err() != nil {
				return &exitError{code: 1, err: cf.swapTimedOut(before, timeout)}
			}
			if err != nil {
				return &exitError{code: 1, err: fmt.Errorf("swap: %w", err)}
			}
			r := resp.Swap
			out := cmd.OutOrStdout()
			switch r.Result {
			case hotswap.ResultSucceeded:
				fmt.Fprintf(out, "swapped: generation %d (%s) -> %d (%s) in %s\n", r.FromGen, orDash(r.FromVersion), r.ToGen, orDash(r.ToVersion), r.Duration.Round(time.Millisecond))
				return nil
			default:
				return &exitError{code: 1, err: fmt.Errorf("swap %s: %s; generation %d (%s) keeps serving", r.Result, r.Reason, r.FromGen, orDash(r.FromVersion))}
			}
		},
	}
	cf.add(cmd)
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "stop waiting for the outcome after this long (the swap itself goes on)")
	return cmd
}

func newStatusCommand() *cobra.Command {
	var cf clientFlags
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the phase, each generation (binary, version, age), swap counts and the last swap",
		Long: `Shows what the running hotswap serves: the phase, each live generation
(PID, version, binary, state, age), how many swaps succeeded, failed or were
rejected, the last swap and the last release a source offered that was
refused (until a later swap succeeds). -o json has the same fields;
durations are Go durations ("1.204s"), times RFC 3339.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return usageErr("-o %q: want text or json", output)
			}
			st, err := cf.status(10 * time.Second)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			if output == "json" {
				return writeStatusJSON(cmd.OutOrStdout(), st)
			}
			printStatus(cmd.OutOrStdout(), st, time.Now())
			return nil
		},
	}
	cf.add(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

// age is how long ago t was, for humans: "35s", "4m10s", "3h2m", "2d5h".
func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

func printStatus(w io.Writer, s *hotswap.Status, now time.Time) {
	var serving, starting *hotswap.GenerationStatus
	for i := range s.Generations {
		g := &s.Generations[i]
		if g.Generation == s.Generation && s.Generation != 0 {
			serving = g
		}
		if g.State == hotswap.GenStarting {
			starting = g
		}
	}
	fmt.Fprintf(w, "phase: %s\n", s.Phase)
	switch {
	case serving != nil:
		fmt.Fprintf(w, "serving: generation %d, version %s, pid %d, %s, up %s\n", serving.Generation, orDash(serving.Version), serving.PID, orDash(serving.Path), age(now, serving.Started))
	case s.Phase == hotswap.PhaseStopping:
		fmt.Fprintf(w, "serving: generation %d, version %s, pid %d (stopping)\n", s.Generation, orDash(s.Version), s.PID)
	default:
		fmt.Fprintln(w, "serving: nothing yet")
	}
	if starting != nil {
		fmt.Fprintf(w, "starting: generation %d, version %s, pid %d, %s: waiting for %s for %s\n", starting.Generation, orDash(starting.Version), starting.PID, orDash(starting.Path), orDash(starting.WaitingFor), age(now, starting.Started))
	}
	c := s.Counts
	fmt.Fprintf(w, "swaps: %d (%d succeeded, %d failed, %d rejected, %d canceled)\n", s.Swaps, c.Succeeded, c.Failed, c.Rejected, c.Canceled)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GEN\tPID\tVERSION\tSTATE\tAGE\tBINARY\tSTATUS")
	for _, g := range s.Generations {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\n", g.Generation, g.PID, orDash(g.Version), g.State, age(now, g.Started), orDash(g.Path), g.Status)
	}
	tw.Flush()
	for _, x := range []struct {
		label string
		r     *hotswap.SwapResult
	}{{"last swap", s.LastSwap}, {"last rejected release", s.LastRejected}} {
		if x.r == nil {
			continue
		}
		fmt.Fprintf(w, "%s: #%d %s by %s, %s ago (%s, took %s)", x.label, x.r.ID, x.r.Result, x.r.Trigger, age(now, x.r.Started), x.r.Started.UTC().Format(time.RFC3339), x.r.Duration.Round(time.Millisecond))
		if x.r.ToVersion != "" {
			fmt.Fprintf(w, " to %s", x.r.ToVersion)
		}
		if x.r.Reason != "" {
			fmt.Fprintf(w, ": %s", x.r.Reason)
		}
		fmt.Fprintln(w)
	}
}
