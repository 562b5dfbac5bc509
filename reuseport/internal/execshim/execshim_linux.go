package execshim

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Arg0 is the argv[0] that marks the shim; activation.ShimArg0 is this
// constant, so the literal lives here only.
const Arg0 = "hotswap-exec-shim"

// ExecFDEnv, when set to N in the shim's environment, makes the shim execute
// its open descriptor N instead of looking the target up by path: hotswap
// passes the release's binary it verified (hotswap.Binary), so the inode
// that was verified is the inode that runs, whatever the path holds now.
// argv[0] stays the target. The variable is removed and N is closed on exec:
// the server sees neither.
const ExecFDEnv = "HOTSWAP_EXEC_FD"

// RunIfRequested execs the target if this process is the shim.
func RunIfRequested() {
	if len(os.Args) == 0 || os.Args[0] != Arg0 {
		return
	}
	os.Exit(Run(os.Args[1:], os.Environ(), os.Getpid(), os.Stderr, unix.Exec, ExecFD))
}

// Run is the shim: args are {target, target's args...}. It returns an exit
// code only when the exec fails: 127 not found, 126 not executable, 2 usage.
// execve runs a path, execfd an open descriptor (ExecFDEnv).
func Run(args, env []string, pid int, stderr io.Writer, execve func(string, []string, []string) error, execfd func(int, []string, []string) error) int {
	if len(args) == 0 || args[0] == "" {
		fmt.Fprintf(stderr, "%s: usage: %s TARGET [ARG...] (started by hotswap; not meant to be run by hand)\n", Arg0, Arg0)
		return 2
	}
	if fd, env, ok := takeExecFD(env); ok {
		if fd < 3 {
			fmt.Fprintf(stderr, "%s: %s: not a descriptor hotswap passes\n", Arg0, ExecFDEnv)
			return 126
		}
		err := execfd(fd, args, Env(env, pid))
		fmt.Fprintf(stderr, "%s: exec %s (descriptor %d): %v\n", Arg0, args[0], fd, err)
		return 126
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

// takeExecFD removes ExecFDEnv from env and returns its descriptor; fd is -1
// when the value is not a number.
func takeExecFD(env []string) (fd int, rest []string, ok bool) {
	rest = make([]string, 0, len(env))
	fd = -1
	for _, kv := range env {
		if v, found := strings.CutPrefix(kv, ExecFDEnv+"="); found {
			ok = true
			if n, err := strconv.Atoi(v); err == nil {
				fd = n
			}
			continue
		}
		rest = append(rest, kv)
	}
	return fd, rest, ok
}

// ExecFD executes the open file fd with argv and env. fd is marked
// close-on-exec first, so the program never inherits it: the kernel keeps
// its own reference to the file it runs. execveat(fd, "", AT_EMPTY_PATH)
// also names the process after the file (its comm, what ps and pkill see);
// kernels (or seccomp profiles) without execveat get execve of
// /proc/self/fd/N.
// A #! script cannot run this way (its interpreter would open the closed
// /dev/fd/N): hotswap runs scripts by path.
func ExecFD(fd int, argv, env []string) error {
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		return fmt.Errorf("descriptor %d: %w", fd, err)
	}
	argvp, err := syscall.SlicePtrFromStrings(argv)
	if err != nil {
		return err
	}
	envp, err := syscall.SlicePtrFromStrings(env)
	if err != nil {
		return err
	}
	empty, err := syscall.BytePtrFromString("")
	if err != nil {
		return err
	}
	_, _, errno := unix.Syscall6(unix.SYS_EXECVEAT, uintptr(fd), uintptr(unsafe.Pointer(empty)),
		uintptr(unsafe.Pointer(&argvp[0])), uintptr(unsafe.Pointer(&envp[0])), unix.AT_EMPTY_PATH, 0)
	// ENOSYS: a kernel before 3.19; EPERM: a seccomp profile that knows
	// execve but not execveat. Either way /proc/self/fd/N names the file.
	if errno != unix.ENOSYS && errno != unix.EPERM {
		return errno
	}
	return unix.Exec("/proc/self/fd/"+strconv.Itoa(fd), argv, env)
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
