package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/hotswap-dev/hotswap/entrypoint"
)

const killUsage = `usage: kill [-s SIGNAL | -SIGNAL | -n NUMBER] PID...
       kill -l
Sends SIGNAL (default TERM) to each PID, like kill(1); -0 only checks that
PID exists and may be signalled. In a pod: kubectl exec POD -- kill -USR2 1
swaps the server (hotswap swap says how it ended).
`

// killMain is kill(1) for images without one: `kill [-SIG | -s SIG | -n NUM]
// PID...` and `kill -l`. The Dockerfile links /bin/kill to hotswap.
func killMain(args []string, stdout, stderr io.Writer) int {
	sig := syscall.SIGTERM
	usage := func(msg string) int {
		fmt.Fprintf(stderr, "kill: %s\nusage: kill [-s SIGNAL | -SIGNAL] PID... | kill -l\n", msg)
		return 2
	}
	for len(args) > 0 && strings.HasPrefix(args[0], "-") && args[0] != "-" {
		a := args[0]
		switch {
		case a == "--":
			args = args[1:]
			goto pids
		case a == "-h" || a == "--help":
			fmt.Fprint(stdout, killUsage)
			return 0
		case a == "-l" || a == "-L" || a == "--list":
			fmt.Fprintln(stdout, strings.Join(entrypoint.SignalNames(), "\n"))
			return 0
		case a == "-s" || a == "-n" || a == "--signal":
			if len(args) < 2 {
				return usage(a + " needs a signal")
			}
			s, err := entrypoint.ParseSignal(args[1])
			if err != nil {
				return usage(err.Error())
			}
			sig = s
			args = args[2:]
		case a == "-0":
			// kill -0 PID: deliver nothing, only check that PID exists and
			// may be signalled (the usual liveness probe).
			sig = 0
			args = args[1:]
		default:
			if _, err := strconv.Atoi(a); err == nil && len(a) > 1 && a[1] != '0' && len(args) == 1 {
				// "kill -1" alone would be PID -1 for some kills; we read it as a signal and need PIDs.
				return usage("no PID given")
			}
			s, err := entrypoint.ParseSignal(a[1:])
			if err != nil {
				return usage(err.Error())
			}
			sig = s
			args = args[1:]
		}
	}
pids:
	if len(args) == 0 {
		return usage("no PID given")
	}
	code := 0
	for _, a := range args {
		pid, err := strconv.Atoi(a)
		if err != nil {
			fmt.Fprintf(stderr, "kill: %s: not a PID\n", a)
			code = 1
			continue
		}
		if err := syscall.Kill(pid, sig); err != nil {
			fmt.Fprintf(stderr, "kill: (%d) - %v\n", pid, err)
			code = 1
		}
	}
	return code
}

func newKillCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "kill [-s SIGNAL | -SIGNAL] PID... | kill -l",
		Short:              "Send a signal, like kill(1) (also when hotswap is invoked as `kill`)",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := killMain(args, cmd.OutOrStdout(), cmd.ErrOrStderr()); code != 0 {
				return &exitError{code: code, err: fmt.Errorf("")}
			}
			return nil
		},
	}
}
