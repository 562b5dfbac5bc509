package tinyshim

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// run starts c for real and returns its exit code, stdout and stderr.
func run(t *testing.T, c Cmd) (code int, stdout, stderr string) {
	t.Helper()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	files := append([]*os.File{}, c.Files...)
	files[1], files[2] = outW, errW
	p, err := os.StartProcess(c.Path, c.Argv, &os.ProcAttr{Env: c.Env, Files: files})
	outW.Close()
	errW.Close()
	if err != nil {
		t.Fatalf("start %s %q: %v", c.Path, c.Argv, err)
	}
	var ob, eb bytes.Buffer
	done := make(chan struct{})
	go func() { _, _ = ob.ReadFrom(outR); close(done) }()
	_, _ = eb.ReadFrom(errR)
	<-done
	st, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return st.ExitCode(), ob.String(), eb.String()
}

func load(t *testing.T) *Shim {
	t.Helper()
	s, err := Load()
	if err != nil {
		if !Built() {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func stdio() []*os.File { return []*os.File{os.Stdin, os.Stdout, os.Stderr} }

func sh(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	p, err = filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// report is what a server started through the shim sees: its argv[0], PID,
// LISTEN_PID, and every descriptor it holds.
const report = `echo "a0=$0 pid=$$ lp=${LISTEN_PID-unset} fd=${HOTSWAP_EXEC_FD-unset}"; for f in /proc/$$/fd/*; do echo "$f $(readlink $f)"; done`

// TestListenPID: the server's LISTEN_PID is its own PID when listeners are
// passed, absent otherwise (a stale one dropped), and argv passes intact.
func TestListenPID(t *testing.T) {
	s := load(t)
	shell := sh(t)
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{"LISTEN_FDS=1", "LISTEN_PID=1"}, "pid"},
		{[]string{"LISTEN_PID=1"}, "unset"},
		{nil, "unset"},
	} {
		c := s.Command(shell, nil, []string{"my-server", "-c", report}, tc.env, stdio())
		code, out, errs := run(t, c)
		if code != 0 {
			t.Fatalf("env %q: exit %d: %s", tc.env, code, errs)
		}
		first, _, _ := strings.Cut(out, "\n")
		f := strings.Fields(first)
		pid := strings.TrimPrefix(f[1], "pid=")
		want := "lp=" + tc.want
		if tc.want == "pid" {
			want = "lp=" + pid
		}
		if f[0] != "a0=my-server" || f[2] != want {
			t.Errorf("env %q: %q; want a0=my-server and %s", tc.env, first, want)
		}
		if strings.Contains(out, "memfd:") {
			t.Errorf("the server inherited the shim's memfd:\n%s", out)
		}
	}
}

// TestRunsOpenFile: with bin, the shim runs the open file, not what its
// path holds by then, and the server inherits neither it nor the shim.
func TestRunsOpenFile(t *testing.T) {
	s := load(t)
	b, err := os.ReadFile(sh(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	target := filepath.Join(dir, "server")
	if err := os.WriteFile(target, b, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := os.Open(target)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	imp := filepath.Join(dir, "impostor")
	if err := os.WriteFile(imp, []byte("#!/bin/sh\necho impostor\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(imp, target); err != nil {
		t.Fatal(err)
	}
	c := s.Command(target, bin, []string{target, "-c", report}, []string{"LISTEN_FDS=0"}, stdio())
	code, out, errs := run(t, c)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if strings.Contains(out, "impostor") {
		t.Fatalf("the shim ran what the path holds now, not the open file:\n%s", out)
	}
	if !strings.HasPrefix(out, "a0="+target+" ") {
		t.Errorf("want argv[0] %s:\n%s", target, out)
	}
	// (the shell holds a pipe for $(...); never the binary or the shim.)
	if strings.Contains(out, " "+target) || strings.Contains(out, "memfd:") {
		t.Errorf("the server inherited the binary or the shim:\n%s", out)
	}
	t.Logf("%s", out)
}

// TestFailures: exit codes and stderr lines as a shell (and the self
// re-exec shim) give them; nothing is run.
func TestFailures(t *testing.T) {
	s := load(t)
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-exec")
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(garbage, []byte("\x00\x01 not an executable"), 0o755); err != nil {
		t.Fatal(err)
	}
	dirFile, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer dirFile.Close()
	for _, tc := range []struct {
		path string
		bin  *os.File
		code int
		msg  string
	}{
		{"/does/not/exist", nil, 127, "hotswap-exec-shim: exec /does/not/exist: no such file or directory\n"},
		{notExec + "/x", nil, 127, "not a directory"},
		{notExec, nil, 126, "exec " + notExec + ": permission denied\n"},
		{dir, nil, 126, "permission denied"},
		{garbage, nil, 126, "exec format error"},
		{dir, dirFile, 126, "hotswap-exec-shim: exec server (descriptor 4): permission denied\n"},
	} {
		c := s.Command(tc.path, tc.bin, []string{"server"}, nil, stdio())
		code, out, errs := run(t, c)
		if code != tc.code || !strings.Contains(errs, tc.msg) || out != "" {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", tc.path, code, errs, tc.code, tc.msg)
		}
	}
}

// TestUsage: run by hand, the shim says what it is and runs nothing.
func TestUsage(t *testing.T) {
	s := load(t)
	c := s.Command("/bin/true", nil, []string{"true"}, nil, stdio())
	for _, tc := range []struct {
		argv []string
		code int
		msg  string
	}{
		{[]string{Arg0}, 2, "usage: hotswap-exec-shim"},
		{[]string{Arg0, "3", "/bin/true"}, 2, "not meant to be run by hand"},
		{[]string{Arg0, "x", "/bin/true", "true"}, 126, "hotswap-exec-shim: x: not a descriptor hotswap passes\n"},
		{[]string{Arg0, "2", "/bin/true", "true"}, 126, "2: not a descriptor"},
		{[]string{Arg0, "", "/bin/true", "true"}, 126, ": not a descriptor"},
		{[]string{Arg0, "99999999999", "/bin/true", "true"}, 126, "not a descriptor"},
	} {
		c.Argv = tc.argv
		code, _, errs := run(t, c)
		if code != tc.code || !strings.Contains(errs, tc.msg) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tc.argv, code, errs, tc.code, tc.msg)
		}
	}
}

// TestSealed: nobody can change what every generation runs first.
func TestSealed(t *testing.T) {
	s := load(t)
	w, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(int(s.f.Fd())), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.WriteAt([]byte{0}, 0); err == nil {
		t.Fatal("wrote into the shim's memfd")
	}
	if err := w.Truncate(0); err == nil {
		t.Fatal("truncated the shim's memfd")
	}
}

// TestImageMatchesSource: the committed bytes are what shim_ARCH.S
// assembles to, for each architecture whose GNU binutils are installed
// (hack/install-test-deps.sh installs them); where qemu-user is installed,
// the arm64 shim is run through the cases the amd64 one meets natively.
func TestImageMatchesSource(t *testing.T) {
	for _, tool := range []string{"od", "gofmt"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	dir := t.TempDir()
	cmd := exec.Command("../../hack/tinyshim.sh", dir)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Skipf("hack/tinyshim.sh: %v (no binutils: cannot rebuild the shim)\n%s", err, b)
	}
	t.Logf("%s", b)
	for _, arch := range []string{"amd64", "arm64"} {
		fresh, err := os.ReadFile(filepath.Join(dir, "image_"+arch+".go"))
		if errors.Is(err, os.ErrNotExist) {
			continue // that assembler is missing: the script said so
		}
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile("image_" + arch + ".go")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fresh, committed) {
			t.Errorf("image_%s.go is not what shim_%s.S assembles to: run hack/tinyshim.sh and commit both", arch, arch)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "shim_arm64")); err == nil && runtime.GOARCH != "arm64" {
		t.Run("arm64 under qemu", func(t *testing.T) { testUnderQemu(t, filepath.Join(dir, "shim_arm64")) })
	}
}

// testUnderQemu runs the arm64 shim with qemu-aarch64: qemu translates its
// system calls, and its execve runs the host's programs natively.
func testUnderQemu(t *testing.T, shim string) {
	qemu, err := exec.LookPath("qemu-aarch64")
	if err != nil {
		t.Skip("no qemu-aarch64 (apt-get install qemu-user)")
	}
	if err := os.Chmod(shim, 0o755); err != nil {
		t.Fatal(err)
	}
	shell := sh(t)
	bin, err := os.Open(shell)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	for _, tc := range []struct {
		args []string
		bin  bool
		code int
		out  string // in stdout, with PID replaced by "P"
		msg  string // in stderr
	}{
		{[]string{"3", shell, "srv", "-c", `echo "$0 $$=$LISTEN_PID"`}, false, 0, "srv P=P", ""},
		{[]string{"3", "", "srv", "-c", `echo "$0 $$=$LISTEN_PID $(ls -l /proc/$$/fd | grep -c ` + shell + `)"`}, true, 0, "srv P=P 0", ""},
		{[]string{"3", "/does/not/exist", "x"}, false, 127, "", "hotswap-exec-shim: exec /does/not/exist: no such file or directory\n"},
		{[]string{"3", "/etc/passwd/x", "x"}, false, 127, "", "not a directory"},
		{[]string{"3", "/etc/passwd", "x"}, false, 126, "", "exec /etc/passwd: permission denied\n"},
		{[]string{"x", "/bin/true", "true"}, false, 126, "", "hotswap-exec-shim: x: not a descriptor hotswap passes\n"},
		{[]string{"3", "/bin/true"}, false, 2, "", "usage: hotswap-exec-shim"},
	} {
		cmd := exec.Command(qemu, append([]string{"-0", Arg0, shim}, tc.args...)...)
		cmd.Env = []string{"LISTEN_FDS=0", listenPIDPlaceholder}
		if tc.bin {
			// fd 3 is the shim's own memfd in hotswap; fd 4 the binary.
			cmd.ExtraFiles = []*os.File{bin, bin}
		}
		var out, errs bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errs
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		got := out.String()
		if cmd.Process != nil {
			got = strings.ReplaceAll(got, strconv.Itoa(cmd.Process.Pid), "P")
		}
		if code != tc.code || !strings.Contains(got, tc.out) || !strings.Contains(errs.String(), tc.msg) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %d, %q, %q", tc.args, code, got, errs.String(), tc.code, tc.out, tc.msg)
		}
	}
}
