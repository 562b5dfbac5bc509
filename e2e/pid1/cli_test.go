package pid1

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runCLI runs hotswap (or argv0, e.g. a symlink to it) to completion and
// returns its exit code and combined output.
func runCLI(t testing.TB, argv0 string, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv0, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %q: still running after 20s:\n%s", argv0, args, out)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("%s %q: %v", argv0, args, err)
	return 0, ""
}

// TestBadInput: mistakes get a shell's exit code and a message that names
// what is wrong. None of these may start anything.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "server.sh")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\nexit 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	unknownKey := file("unknown.yaml", "grace: 5s\ngarce: 5s\n")
	badYAML := file("bad.yaml", "grace: [5s\n  stop-signal: : :\n")
	badValue := file("value.yaml", "grace: soon\n")
	badSignal := file("signal.yaml", "stop-signal: BOGUS\n")
	rt := []string{"--runtime-dir", filepath.Join(dir, "run")}
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		code int
		want []string
	}{
		{"no command", nil, nil, 2, []string{"no command to run", "hotswap [flags] -- COMMAND"}},
		{"only dashes", nil, []string{"--"}, 2, []string{"no command to run"}},
		{"not found", nil, []string{"--", filepath.Join(dir, "nope")}, 127, []string{"command not found", "nope"}},
		{"not in PATH", nil, []string{"--", "no-such-command-here"}, 127, []string{"command not found", "no-such-command-here"}},
		{"not executable", nil, []string{"--", notExec}, 126, []string{"cannot execute", notExec}},
		{"directory", nil, []string{"--", dir}, 126, []string{"cannot execute", "is a directory"}},
		{"unknown flag", nil, []string{"--no-such-flag", "--", "true"}, 2, []string{"unknown flag", "--no-such-flag"}},
		{"bad duration", nil, []string{"--grace", "soon", "--", "true"}, 2, []string{"--grace", "soon"}},
		{"negative duration", nil, []string{"--grace=-1s", "--", "true"}, 2, []string{"--grace", "must be positive"}},
		{"zero duration", nil, []string{"--drain-timeout=0s", "--", "true"}, 2, []string{"--drain-timeout", "must be positive"}},
		{"bad signal", nil, []string{"--stop-signal", "BOGUS", "--", "true"}, 2, []string{"--stop-signal", "BOGUS"}},
		{"bad rewrite", nil, []string{"--rewrite", "TERM", "--", "true"}, 2, []string{"--rewrite", "TERM", "FROM:TO"}},
		{"bad rewrite signal", nil, []string{"--rewrite", "TERM:NOPE", "--", "true"}, 2, []string{"--rewrite", "NOPE"}},
		{"bad on-exit", nil, []string{"--on-exit", "sometimes", "--", "true"}, 2, []string{"--on-exit", "sometimes", "restart"}},
		{"bad mode", nil, []string{"--mode", "magic", "--", "true"}, 2, []string{"--mode", "magic"}},
		{"bad ready", nil, []string{"--ready", "soon", "--", "true"}, 2, []string{"--ready", "soon"}},
		{"bad listen", nil, []string{"--listen", "8080", "--", "true"}, 2, []string{"--listen", "8080"}},
		{"bad max-generations", nil, []string{"--max-generations", "1", "--", "true"}, 2, []string{"--max-generations", "1"}},
		{"bad log level", nil, []string{"--log-level", "loud", "--", "true"}, 2, []string{"log-level", "loud"}},
		{"bad log format", nil, []string{"--log-format", "xml", "--", "true"}, 2, []string{"log-format", "xml"}},
		{"swap signal is TERM", nil, []string{"--swap-signal", "TERM", "--", "true"}, 2, []string{"swap-signal", "TERM"}},
		// Issue 13, item 12: a relative NOTIFY_SOCKET would leave the first
		// generation waiting forever; refused at start-up instead.
		{"relative runtime dir", nil, []string{"--runtime-dir", "relrun", "--", "true"}, 2, []string{"--runtime-dir", "must be an absolute path"}},
		{"bad env value", []string{"HOTSWAP_GRACE=soon"}, []string{"--", "true"}, 2, []string{"HOTSWAP_GRACE", "soon"}},
		{"bad env signal", []string{"HOTSWAP_STOP_SIGNAL=NOPE"}, []string{"--", "true"}, 2, []string{"environment variable HOTSWAP_STOP_SIGNAL", "NOPE"}},
		{"config missing", nil, []string{"--config", filepath.Join(dir, "none.yaml"), "--", "true"}, 2, []string{"none.yaml", "no such file"}},
		{"config unknown key", nil, []string{"--config", unknownKey, "--", "true"}, 2, []string{"unknown key", "garce"}},
		{"config bad YAML", nil, []string{"--config", badYAML, "--", "true"}, 2, []string{"bad.yaml", "YAML"}},
		{"config bad value", nil, []string{"--config", badValue, "--", "true"}, 2, []string{"grace", "soon"}},
		{"config bad signal", nil, []string{"--config", badSignal, "--", "true"}, 2, []string{"config file key stop-signal", "BOGUS"}},
		{"config from env", []string{"HOTSWAP_CONFIG=" + unknownKey}, []string{"--", "true"}, 2, []string{"unknown key", "garce"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := tc.args
			if len(args) > 0 && args[0] != "--" && !strings.HasPrefix(tc.name, "unknown flag") {
				args = append(append([]string{}, rt...), args...)
			}
			code, out := runCLI(t, hotswapBin, tc.env, args...)
			if code != tc.code {
				t.Errorf("hotswap %q: exit %d, want %d:\n%s", args, code, tc.code, out)
			}
			mustContain(t, "output", out, tc.want...)
			if strings.Contains(out, "goroutine ") || strings.Contains(out, "panic") {
				t.Errorf("a stack trace for bad input:\n%s", out)
			}
			if strings.Contains(out, "started generation") {
				t.Errorf("bad input started a child:\n%s", out)
			}
		})
	}
}

// TestConfigPrecedence: a flag beats HOTSWAP_* which beats the --config file
// which beats the default. The stop signal shows which won: the child exits
// with 100+the first signal it gets, and hotswap exits with that.
func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "hotswap.yaml")
	if err := os.WriteFile(conf, []byte("stop-signal: HUP\ngrace: 10s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  []string
		flag []string
		want syscall.Signal
	}{
		{"default", nil, nil, syscall.SIGTERM},
		{"file", []string{"HOTSWAP_CONFIG=" + conf}, nil, syscall.SIGHUP},
		{"env over file", []string{"HOTSWAP_CONFIG=" + conf, "HOTSWAP_STOP_SIGNAL=USR1"}, nil, syscall.SIGUSR1},
		{"flag over env", []string{"HOTSWAP_CONFIG=" + conf, "HOTSWAP_STOP_SIGNAL=USR1"}, []string{"--stop-signal", "WINCH"}, syscall.SIGWINCH},
		{"config flag", nil, []string{"--config", conf}, syscall.SIGHUP},
		{"config flag over env config", []string{"HOTSWAP_CONFIG=/nonexistent.yaml"}, []string{"--config", conf}, syscall.SIGHUP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			log := filepath.Join(tempDir(t), "child.log")
			args := append(append([]string{}, tc.flag...), childCmd("log="+log, "anyexit")...)
			r := startHotswap(t, opts{mode: onHost, env: tc.env}, args...)
			waitLog(t, r, log, "start gen=1", 10*time.Second)
			r.signal(syscall.SIGTERM)
			if got, want := r.wait(15*time.Second), 100+int(tc.want); got != want {
				t.Errorf("exit %d, want %d (child stopped by %v); child log:\n%s\nhotswap:\n%s", got, want, tc.want, readFile(log), r.out)
			}
		})
	}
}

// TestKill: hotswap is kill(1) too — as `hotswap kill` and when invoked
// through a link named kill (FROM-scratch images link /bin/kill to it).
func TestKill(t *testing.T) {
	dir := tempDir(t)
	link := filepath.Join(dir, "kill")
	if err := os.Symlink(hotswapBin, link); err != nil {
		t.Fatal(err)
	}
	for _, argv := range [][]string{{hotswapBin, "kill"}, {link}} {
		code, out := runCLI(t, argv[0], nil, append(argv[1:], "-l")...)
		if code != 0 {
			t.Errorf("%q -l: exit %d\n%s", argv, code, out)
		}
		mustContain(t, "kill -l", out, " 1) SIGHUP", "10) SIGUSR1", "12) SIGUSR2", "15) SIGTERM", "34) SIGRTMIN", "64) SIGRTMIN+30")
		for _, tc := range []struct {
			args []string
			code int
			want string
		}{
			{nil, 2, "no PID"},
			{[]string{"-USR2"}, 2, "no PID"},
			{[]string{"-NOPE", "1"}, 2, "NOPE"},
			{[]string{"-s"}, 2, "needs a signal"},
			{[]string{"notapid"}, 1, "not a PID"},
			{[]string{"-USR1", "999999999"}, 1, "999999999"},
		} {
			code, out := runCLI(t, argv[0], nil, append(argv[1:], tc.args...)...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Errorf("%q %q: exit %d %q, want %d and %q", argv, tc.args, code, out, tc.code, tc.want)
			}
		}
	}
	// The link delivers signals to a hotswap that is PID 1 of its namespace,
	// which forwards them; the swap signal starts a new generation.
	log := filepath.Join(dir, "child.log")
	r := startHotswap(t, opts{mode: asPID1}, childCmd("log="+log)...)
	waitLog(t, r, log, "start gen=1", 10*time.Second)
	pid := strconv.Itoa(r.pid)
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{[]string{link, "-USR1", pid}, "sig USR1\n"},
		{[]string{link, "-s", "HUP", pid}, "sig HUP\n"},
		{[]string{link, "-n", "28", pid}, "sig WINCH\n"},
		{[]string{hotswapBin, "kill", "-SIGQUIT", pid}, "sig QUIT\n"},
		{[]string{link, "-USR2", pid}, "start gen=2"},
	} {
		if code, out := runCLI(t, tc.argv[0], nil, tc.argv[1:]...); code != 0 {
			t.Fatalf("%q: exit %d\n%s", tc.argv, code, out)
		}
		waitLog(t, r, log, tc.want, 5*time.Second)
	}
	if code, out := runCLI(t, link, nil, pid); code != 0 {
		t.Fatalf("kill %s: exit %d\n%s", pid, code, out)
	}
	if code := r.wait(15 * time.Second); code != 0 {
		t.Errorf("hotswap exited %d after kill (TERM), want 0\n%s", code, r.out)
	}
}
