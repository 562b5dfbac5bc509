package tinyshim

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Arg0 is the shim's argv[0] (the same name as the self re-exec shim's):
// what ps shows for the instant between fork and the server's exec.
const Arg0 = "hotswap-exec-shim"

// listenPIDPlaceholder is the environment entry the shim overwrites in
// place with its PID's digits and a NUL: ten digits are more than any
// pid_max allows (2^22). shim_ARCH.S compares against the same bytes.
const listenPIDPlaceholder = "LISTEN_PID=XXXXXXXXXX"

// Shim is the tiny shim loaded into a sealed memfd, ready to run.
type Shim struct {
	f *os.File
}

// Load copies the shim into a memfd, seals it against every change and
// checks the memfd can be named through /proc. The error says why the
// tiny shim cannot be used here; the caller then starts generations
// through its self re-exec.
func Load() (*Shim, error) {
	if len(image) == 0 {
		return nil, fmt.Errorf("tinyshim: no tiny shim for %s", runtime.GOARCH)
	}
	// MFD_EXEC: where vm.memfd_noexec=1 makes memfds non-executable by
	// default, ask for an executable one; kernels before 6.3 do not know
	// the flag (EINVAL) and make every memfd executable.
	flags := unix.MFD_CLOEXEC | unix.MFD_ALLOW_SEALING
	fd, err := unix.MemfdCreate(Arg0, flags|unix.MFD_EXEC)
	if errors.Is(err, unix.EINVAL) {
		fd, err = unix.MemfdCreate(Arg0, flags)
	}
	if err != nil {
		return nil, fmt.Errorf("tinyshim: memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:"+Arg0)
	defer f.Close()
	if err := fill(f); err != nil {
		return nil, err
	}
	// Children get a read-only descriptor of the sealed inode (the shim
	// holds it until its exec); reopening it through /proc also proves the
	// path every child execs, /proc/self/fd/N, works here.
	ro, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(fd), os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("tinyshim: memfd not reachable through /proc: %w", err)
	}
	return &Shim{f: ro}, nil
}

// fill writes the image, seals it (nobody, not even hotswap, can change
// what every generation runs first) and checks it is executable.
func fill(f *os.File) error {
	if _, err := f.Write(image); err != nil {
		return fmt.Errorf("tinyshim: write memfd: %w", err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		return fmt.Errorf("tinyshim: seal memfd: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("tinyshim: stat memfd: %w", err)
	}
	if st.Mode&0o111 == 0 {
		return errors.New("tinyshim: memfds are not executable here (vm.memfd_noexec)")
	}
	return nil
}

// Built reports whether this architecture has a tiny shim (amd64, arm64).
func Built() bool { return len(image) > 0 }

// Size is the shim's size in bytes.
func (s *Shim) Size() int { return len(image) }

// Close releases the memfd; children already started are unaffected.
func (s *Shim) Close() error { return s.f.Close() }

// Cmd is what to pass to fork+exec (entrypoint.Spec, syscall.ForkExec) to
// start a program through the shim.
type Cmd struct {
	Path  string
	Argv  []string
	Env   []string
	Files []*os.File
}

// Command returns how to start a program through s: with descriptors
// files (0, 1, 2, the listeners from 3), environment env and argv, either
// the file at path, or, when bin is not nil, the open file bin (argv[0]
// stays argv[0]; the program inherits bin no more than the shim).
//
// path must be a path (containing '/'): the shim does no PATH lookup. A
// LISTEN_PID in env is dropped; with LISTEN_FDS the program gets
// LISTEN_PID set to its own PID (systemd's sd_listen_fds protocol).
//
// The shim's memfd becomes descriptor len(files) of the child — its own
// path, /proc/self/fd/len(files), is only resolved once the child's
// descriptors are in place — and bin, if any, the one after; the shim
// marks both close-on-exec before it execs the program.
func (s *Shim) Command(path string, bin *os.File, argv, env []string, files []*os.File) Cmd {
	m := len(files)
	if bin != nil {
		path = ""
	}
	args := make([]string, 0, len(argv)+3)
	args = append(args, Arg0, strconv.Itoa(m), path)
	args = append(args, argv...)
	fs := make([]*os.File, 0, m+2)
	fs = append(fs, files...)
	fs = append(fs, s.f)
	if bin != nil {
		fs = append(fs, bin)
	}
	return Cmd{Path: "/proc/self/fd/" + strconv.Itoa(m), Argv: args, Env: listenEnv(env), Files: fs}
}

// listenEnv drops any LISTEN_PID and, when listeners are passed
// (LISTEN_FDS), appends the placeholder the shim fills in.
func listenEnv(env []string) []string {
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
		out = append(out, listenPIDPlaceholder)
	}
	return out
}
