package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/hotswap-dev/hotswap/hotswap"
)

func newUpgradeCommand() *cobra.Command {
	var socket, sum string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "upgrade PATH",
		Short: "Replace the running hotswap in place with the binary at PATH (exit 0 upgraded, 1 refused)",
		Long: `Asks the running hotswap, through its control socket, to replace itself
with the hotswap binary at PATH without a restart: same PID 1, the serving
generation keeps serving, the listeners stay open. The binary is verified
(regular, executable, not group/world-writable, ELF for this machine, the
--sha256 pin), copied, and run once in a self-test that decodes the state it
will be handed; only then is it exec'ed. A refused binary leaves the
running hotswap in charge. See docs/upgrade.md.

In a pod: kubectl exec POD -- /hotswap upgrade /releases/hotswap-v2`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := filepath.Abs(args[0])
			if err != nil {
				return usageErr("%s: %v", args[0], err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			before, err := hotswap.Control(ctx, socket, hotswap.ControlRequest{Op: "status"})
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			if before.Status == nil {
				return &exitError{code: 1, err: fmt.Errorf("status: %s", before.Error)}
			}
			resp, err := hotswap.Control(ctx, socket, hotswap.ControlRequest{Op: "upgrade", Path: path, SHA256: sum})
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			if resp.Error != "" || resp.Upgrade == nil {
				return &exitError{code: 1, err: fmt.Errorf("upgrade: %s; hotswap %s stays in charge", resp.Error, orDash(before.Status.Hotswap))}
			}
			// The old hotswap answered just before its exec: wait for the
			// new one to answer on the same socket.
			for {
				st, err := hotswap.Control(ctx, socket, hotswap.ControlRequest{Op: "status"})
				if err == nil && st.Status != nil && st.Status.Upgrades > before.Status.Upgrades {
					s := st.Status
					fmt.Fprintf(cmd.OutOrStdout(), "upgraded: hotswap %s -> %s (sha256 %.12s); generation %d (%s) serves on, pid %d\n",
						orDash(resp.Upgrade.From), orDash(s.Hotswap), resp.Upgrade.SHA256, s.Generation, orDash(s.Version), s.PID)
					return nil
				}
				select {
				case <-ctx.Done():
					return &exitError{code: 1, err: fmt.Errorf("upgrade: hotswap %s was exec'ed but did not answer within %s (last error: %v); see the container log", orDash(resp.Upgrade.To), timeout, err)}
				case <-time.After(50 * time.Millisecond):
				}
			}
		},
	}
	cmd.Flags().StringVar(&socket, "control-socket", os.Getenv("HOTSWAP_CONTROL_SOCKET"), "control socket path (default: search /run/hotswap and $TMPDIR/hotswap-UID)")
	cmd.Flags().StringVar(&sum, "sha256", "", "refuse the binary unless its content has this sha256 (hex)")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "give up waiting after this long")
	return cmd
}
