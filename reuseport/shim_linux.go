package reuseport

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ShimArg0 is the argv[0] that makes the hotswap binary act as the exec shim
// (see [ShimCommand] and [RunShimIfRequested]).
const ShimArg0 = "hotswap-exec-shim"

// ShimCommand returns the path and argv that start target with args through
// the exec shim: the supervisor starts path with argv (os.StartProcess, with
// LISTEN_FDS, LISTEN_FDNAMES and the files from [ExportFiles] at fds 3..);
// the shim sets LISTEN_PID to its own PID — which stays the PID of target
// after execve — and execs target with argv {target, args...}.
//
// self is the hotswap binary; "/proc/self/exe" is best: after fork it names
// the running binary even if the file on disk was replaced or deleted. The
// shim exits 127 if target is not found and 126 if it cannot be executed,
// like a shell, after one line on stderr.
func ShimCommand(self, target string, args []string) (path string, argv []string) {
	argv = make([]string, 0, len(args)+2)
	argv = append(argv, ShimArg0, target)
	argv = append(argv, args...)
	return self, argv
}

// RunShimIfRequested turns this process into the target program if it was
// started as the exec shim (argv[0] == [ShimArg0]) and returns otherwise. A
// binary that starts children through [ShimCommand] must call it first thing
// in main, before any other work: the shim sits on the path of every swap.
// It never returns when it runs: the process becomes the target or exits.
func RunShimIfRequested() {
	if len(os.Args) == 0 || os.Args[0] != ShimArg0 {
		return
	}
	os.Exit(runShim(os.Args[1:], os.Environ(), os.Getpid(), os.Stderr, unix.Exec))
}

// runShim is the shim; it returns an exit code only when execve fails.
func runShim(args, env []string, pid int, stderr io.Writer, execve func(string, []string, []string) error) int {
	if len(args) == 0 || args[0] == "" {
		fmt.Fprintf(stderr, "%s: usage: %s TARGET [ARG...] (started by hotswap; not meant to be run by hand)\n", ShimArg0, ShimArg0)
		return 2
	}
	target := args[0]
	path := target
	if !strings.Contains(target, "/") {
		p, err := exec.LookPath(target)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %s: command not found in PATH\n", ShimArg0, target)
			return 127
		}
		path = p
	}
	err := execve(path, args, shimEnv(env, pid))
	fmt.Fprintf(stderr, "%s: exec %s: %v\n", ShimArg0, path, err)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return 127
	}
	return 126
}

// shimEnv sets LISTEN_PID=pid when listeners are passed, dropping any old
// LISTEN_PID (systemd: LISTEN_PID is only meaningful with LISTEN_FDS).
func shimEnv(env []string, pid int) []string {
	out := make([]string, 0, len(env)+1)
	hasFds := false
	for _, kv := range env {
		if strings.HasPrefix(kv, "LISTEN_PID=") {
			continue
		}
		if strings.HasPrefix(kv, "LISTEN_FDS=") {
			hasFds = true
		}
		out = append(out, kv)
	}
	if hasFds {
		out = append(out, "LISTEN_PID="+strconv.Itoa(pid))
	}
	return out
}
