package execshim

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

// Arg0 is the argv[0] that marks the shim; activation.ShimArg0 is this
// constant, so the literal lives here only.
const Arg0 = "hotswap-exec-shim"

// RunIfRequested execs the target if this process is the shim.
func RunIfRequested() {
	if len(os.Args) == 0 || os.Args[0] != Arg0 {
		return
	}
	os.Exit(Run(os.Args[1:], os.Environ(), os.Getpid(), os.Stderr, unix.Exec))
}

// Run is the shim: args are {target, target's args...}. It returns an exit
// code only when execve fails: 127 not found, 126 not executable, 2 usage.
func Run(args, env []string, pid int, stderr io.Writer, execve func(string, []string, []string) error) int {
	if len(args) == 0 || args[0] == "" {
		fmt.Fprintf(stderr, "%s: usage: %s TARGET [ARG...] (started by hotswap; not meant to be run by hand)\n", Arg0, Arg0)
		return 2
	}
	target := args[0]
	path := target
	if !strings.Contains(target, "/") {
		p, err := exec.LookPath(target)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %s: command not found in PATH\n", Arg0, target)
			return 127
		}
		path = p
	}
	err := execve(path, args, Env(env, pid))
	fmt.Fprintf(stderr, "%s: exec %s: %v\n", Arg0, path, err)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return 127
	}
	return 126
}

// Env sets LISTEN_PID=pid when listeners are passed, dropping any old
// LISTEN_PID (systemd: LISTEN_PID is only meaningful with LISTEN_FDS).
func Env(env []string, pid int) []string {
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
