// Command hotswap is a container entrypoint that runs a server as PID 1 and
// replaces it with a new version in place, without dropping a request.
//
// This file only dispatches: the exec shim and `kill` are decided by argv
// before any flag parsing, everything else is a cobra command.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hotswap-dev/hotswap/hotswap"
	// Subscribes to signals at once in a hotswap exec'ed by an upgrade.
	_ "github.com/hotswap-dev/hotswap/internal/upgradesig"
	"github.com/hotswap-dev/hotswap/reuseport/activation"
	// Runs the LISTEN_PID exec shim from a package initializer, before the
	// heavier packages initialize, so a generation starts sooner.
	_ "github.com/hotswap-dev/hotswap/reuseport/shim"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	// A child started with listeners passes through this re-exec to learn
	// its own PID for LISTEN_PID; it never returns when it is the shim.
	activation.RunShimIfRequested()

	if hotswap.SelfTestRequested() {
		// A running hotswap asks this binary to prove it can take over
		// (docs/upgrade.md): nothing else may run.
		os.Exit(hotswap.SelfTest(version, os.Stdout, os.Stderr))
	}

	if filepath.Base(os.Args[0]) == "kill" {
		// Multi-call: /bin/kill -> /hotswap, so `kubectl exec POD -- kill
		// -USR2 1` works in a FROM-scratch image.
		os.Exit(killMain(os.Args[1:], os.Stdout, os.Stderr))
	}
	if filepath.Base(os.Args[0]) == "kubectl-hotswap" {
		// Multi-call: kubectl-hotswap -> hotswap on the PATH makes the
		// rollout commands a kubectl plugin (`kubectl hotswap status ...`).
		os.Exit(kubectlPluginMain(os.Args[1:]))
	}
	os.Exit(execute(os.Args[1:]))
}

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErr marks bad input: exit code 2, like other CLI tools.
func usageErr(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}

func execute(args []string) int {
	root := newRootCommand()
	root.SetArgs(args)
	err := root.Execute()
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
	// cobra's own errors are flag and argument mistakes.
	fmt.Fprintln(os.Stderr, "hotswap:", err)
	fmt.Fprintln(os.Stderr, "Run 'hotswap --help' for usage.")
	return 2
}
