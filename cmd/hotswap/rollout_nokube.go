//go:build nokube

package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// newRolloutCommand: a `-tags nokube` build has no rollout driver (it links
// client-go); the command says so instead of being unknown.
func newRolloutCommand() *cobra.Command {
	return &cobra.Command{
		Use: "rollout", Short: "Fleet rollouts (not in this build: -tags nokube)", Hidden: true,
		DisableFlagParsing: true,
		RunE: func(*cobra.Command, []string) error {
			return &exitError{code: 2, err: fmt.Errorf("rollout: this hotswap was built with -tags nokube, without Kubernetes support")}
		},
	}
}

// kubectlPluginMain: see newRolloutCommand.
func kubectlPluginMain([]string) int {
	fmt.Fprintln(os.Stderr, "kubectl-hotswap: this hotswap was built with -tags nokube, without Kubernetes support")
	return 2
}
