package activation

import "github.com/hotswap-dev/hotswap/reuseport/internal/execshim"

// ShimArg0 is the argv[0] that makes the hotswap binary act as the exec shim
// (see [ShimCommand] and [RunShimIfRequested]). The literal lives in one
// place, the shim itself (reuseport/internal/execshim).
const ShimArg0 = execshim.Arg0

// ShimExecFDEnv, set to N in the shim's environment with an open executable
// at descriptor N, makes the shim execute that open file instead of looking
// target up by path (argv[0] stays target); the descriptor is closed on exec
// and the variable removed. hotswap uses it to run exactly the file it
// verified (docs/security.md).
const ShimExecFDEnv = execshim.ExecFDEnv

// ShimCommand returns the path and argv that start target with args through
// the exec shim: the supervisor starts path with argv (os.StartProcess, with
// LISTEN_FDS, LISTEN_FDNAMES and the files from [ExportFiles] at fds 3..);
// the shim sets LISTEN_PID to its own PID — which stays the PID of target
// after execve — and execs target with argv {target, args...}. A target
// without '/' is looked up in PATH.
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
// in main; importing package reuseport/shim runs it even earlier, before
// heavy package initializers. When it runs it never returns: the process
// becomes the target or exits.
func RunShimIfRequested() { execshim.RunIfRequested() }
