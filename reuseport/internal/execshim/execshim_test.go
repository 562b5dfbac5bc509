package execshim

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	RunIfRequested() // the test binary is its own shim
	os.Exit(m.Run())
}

// TestExecFD: the shim runs the open file it is given, not what its path
// holds by then, under the target's name, and the server inherits neither
// the descriptor nor HOTSWAP_EXEC_FD.
func TestExecFD(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	sh, _ = filepath.EvalSymlinks(sh)
	dir := t.TempDir()
	target := filepath.Join(dir, "server")
	b, err := os.ReadFile(sh)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(target, b, 0o755); err != nil {
		t.Fatal(err)
	}
	pinned, err := os.Open(target)
	if err != nil {
		t.Fatal(err)
	}
	defer pinned.Close()
	// Replace the file at the path: a shell that would say so.
	imp := filepath.Join(dir, "impostor")
	if err := os.WriteFile(imp, []byte("#!/bin/sh\necho impostor\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(imp, target); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	script := `echo "arg0=$0 env=${HOTSWAP_EXEC_FD:-unset} fd3=$(readlink /proc/$$/fd/3 || echo closed)"`
	cmd := &exec.Cmd{Path: self, Args: []string{Arg0, target, "-c", script}}
	cmd.Env = append(os.Environ(), ExecFDEnv+"=3")
	cmd.ExtraFiles = []*os.File{pinned}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("shim: %v\n%s", err, out)
	}
	got := string(out)
	if strings.Contains(got, "impostor") {
		t.Fatalf("the shim ran what the path holds now, not the open file:\n%s", got)
	}
	if !strings.Contains(got, "arg0="+target+" env=unset") {
		t.Fatalf("want argv[0] %s and no %s:\n%s", target, ExecFDEnv, got)
	}
	// (fd 3 may be the shell's own pipe for $(...); never the binary.)
	if strings.Contains(got, "fd3="+target) {
		t.Fatalf("the server inherited the shim's descriptor 3:\n%s", got)
	}
	t.Logf("%s", got)
}

// TestExecFDRefusesBadDescriptor: a value that is no descriptor hotswap
// passes is an exec failure (126), never a fallback to the path.
func TestExecFDRefusesBadDescriptor(t *testing.T) {
	for _, v := range []string{"x", "1", "-1"} {
		var ran string
		var sb strings.Builder
		code := Run([]string{"/bin/true"}, []string{ExecFDEnv + "=" + v}, 1, &sb,
			func(p string, _, _ []string) error { ran = p; return nil },
			func(int, []string, []string) error { ran = "fd"; return nil })
		if code != 126 || ran != "" {
			t.Errorf("%s=%s: exit %d, ran %q; want 126 and nothing run", ExecFDEnv, v, code, ran)
		}
	}
}
