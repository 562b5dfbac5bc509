package tinyshim

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

const seccompHelperEnv = "TINYSHIM_TEST_NO_EXECVEAT"

func TestMain(m *testing.M) {
	if os.Getenv(seccompHelperEnv) != "" {
		os.Exit(noExecveatHelper(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// noExecveatHelper installs a seccomp filter that refuses execveat with
// EPERM (as a profile that knows execve but not execveat does), then runs
// the shim on an open binary: args are the binary and the shell script.
func noExecveatHelper(args []string) int {
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_EXECVEAT, Jt: 0, Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		os.Stderr.WriteString("no_new_privs: " + err.Error() + "\n")
		return 90
	}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		os.Stderr.WriteString("seccomp: " + errno.Error() + "\n")
		return 90
	}
	// The filter is on: execveat of no descriptor is refused, not EBADF.
	if _, _, errno := unix.Syscall6(unix.SYS_EXECVEAT, ^uintptr(0), 0, 0, 0, 0, 0); errno != unix.EPERM {
		os.Stderr.WriteString("execveat not refused by the filter: " + errno.Error() + "\n")
		return 91
	}
	s, err := Load()
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return 90
	}
	bin, err := os.Open(args[0])
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return 90
	}
	c := s.Command(args[0], bin, []string{"srv", "-c", args[1]}, []string{"LISTEN_FDS=0"}, []*os.File{os.Stdin, os.Stdout, os.Stderr})
	p, err := os.StartProcess(c.Path, c.Argv, &os.ProcAttr{Env: c.Env, Files: c.Files})
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return 90
	}
	st, err := p.Wait()
	if err != nil {
		return 90
	}
	return st.ExitCode()
}

// TestExecveatRefused: under a seccomp profile that refuses execveat, the
// shim runs the open binary through /proc/self/fd/N instead, and the
// server still inherits neither it nor the shim.
func TestExecveatRefused(t *testing.T) {
	if !Built() {
		t.Skip("no tiny shim for " + runtime.GOARCH)
	}
	shell := sh(t)
	dir := t.TempDir()
	target := filepath.Join(dir, "server")
	b, err := os.ReadFile(shell)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(target, b, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	probe := `echo "$0 $$=$LISTEN_PID exe=$(readlink /proc/$$/exe) fds=$(ls -l /proc/$$/fd | grep -c -e memfd: -e ` + target + `)"`
	cmd := exec.Command(self, target, probe)
	cmd.Env = append(os.Environ(), seccompHelperEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	f := strings.Fields(string(out))
	if len(f) < 4 || f[0] != "srv" || !strings.HasSuffix(f[1], "="+strings.Split(f[1], "=")[0]) || f[2] != "exe="+target || f[3] != "fds=0" {
		t.Fatalf("server saw %q; want srv, LISTEN_PID its PID, exe %s, no shim or binary descriptor", out, target)
	}
	t.Logf("%s", out)
}
