package hotswap

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/entrypoint"
	"github.com/hotswap-dev/hotswap/internal/tinyshim"
	"github.com/hotswap-dev/hotswap/reuseport/activation"
)

func loadTinyShim(t *testing.T) *tinyshim.Shim {
	t.Helper()
	s, err := tinyshim.Load()
	if err != nil {
		if !tinyshim.Built() {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func withListener(c *Config) {
	c.Listeners = []ListenSpec{{Name: "http", URL: "tcp://127.0.0.1:0"}}
}

// TestExecShimSpec: with listeners, a generation starts through the tiny
// shim's memfd, passed as the descriptor after the listeners, with the
// LISTEN_PID placeholder the shim fills in.
func TestExecShimSpec(t *testing.T) {
	rt := newFakeRuntime()
	rt.shim = loadTinyShim(t)
	h := newHarnessOn(t, rt, withListener).start()
	p := h.proc(1)
	if p.spec.Path != "/proc/self/fd/4" || !slices.Equal(p.spec.Argv, []string{tinyshim.Arg0, "4", "/app/server-v1", "/app/server-v1"}) {
		t.Fatalf("spec %q %q; want the tiny shim at fd 4", p.spec.Path, p.spec.Argv)
	}
	if len(p.spec.Files) != 5 || !slices.Contains(p.spec.Env, "LISTEN_PID=XXXXXXXXXX") || !slices.Contains(p.spec.Env, "LISTEN_FDS=1") {
		t.Fatalf("files %d, env %q", len(p.spec.Files), p.spec.Env)
	}
	if st := h.e.Status(); st.ExecShim != ExecShimTiny {
		t.Fatalf("status says exec shim %q, want %q", st.ExecShim, ExecShimTiny)
	}
}

// TestExecShimFallback: where the kernel or a policy refuses to exec the
// memfd, the generation starts through the self re-exec instead, and so do
// all later ones; status says so. A fake runtime without a tiny shim is
// the self re-exec from the start.
func TestExecShimFallback(t *testing.T) {
	rt := newFakeRuntime()
	rt.shim = loadTinyShim(t)
	rt.startErr["/proc/self/fd/4"] = &entrypoint.StartError{Path: "/proc/self/fd/4", Err: syscall.EACCES}
	h := newHarnessOn(t, rt, withListener).start()
	p := h.proc(1)
	if p.spec.Path != "/proc/self/exe" || p.spec.Argv[0] != activation.ShimArg0 || p.env("LISTEN_PID") != "" {
		t.Fatalf("spec %q %q env %q; want the self re-exec", p.spec.Path, p.spec.Argv, p.spec.Env)
	}
	if st := h.e.Status(); st.ExecShim != ExecShimReexec {
		t.Fatalf("status says exec shim %q, want %q", st.ExecShim, ExecShimReexec)
	}
	// A failure that is not the shim's (the self re-exec fails as well)
	// leaves the tiny shim in place.
	rt3 := newFakeRuntime()
	rt3.shim = loadTinyShim(t)
	refused := &entrypoint.StartError{Path: "/proc/self/fd/4", Err: syscall.EACCES}
	rt3.startErr["/proc/self/fd/4"] = refused
	rt3.startErr["/proc/self/exe"] = &entrypoint.StartError{Path: "/proc/self/exe", Err: syscall.EACCES}
	h3 := newHarnessOn(t, rt3, withListener)
	if _, err := h3.e.startGeneration(h3.e.current, true); err == nil || h3.e.shim == nil || h3.e.Status().ExecShim != ExecShimTiny {
		t.Fatalf("start: %v, tiny shim %v, status %q; want the error and the tiny shim kept", err, h3.e.shim != nil, h3.e.Status().ExecShim)
	}
	h2 := newHarness(t, withListener).start()
	if p := h2.proc(1); p.spec.Path != "/proc/self/exe" || h2.e.Status().ExecShim != ExecShimReexec {
		t.Fatalf("without a tiny shim: %q, status %q", p.spec.Path, h2.e.Status().ExecShim)
	}
}

// TestShimPath: a bare command is found in the generation's PATH, as the
// self re-exec shim finds it; never relative to the working directory.
func TestShimPath(t *testing.T) {
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Skip("no /bin/sh")
	}
	dir := filepath.Dir(sh)
	for _, tc := range []struct {
		name, path, want string
		ok               bool
	}{
		{"./x", "", "./x", true},
		{"/a/b", "", "/a/b", true},
		{filepath.Base(sh), "PATH=/nonexistent:" + dir, sh, true},
		{filepath.Base(sh), "PATH=.:/nonexistent", filepath.Base(sh), false},
		{"no-such-command-hotswap", "PATH=" + dir, "no-such-command-hotswap", false},
	} {
		got, ok := shimPath(tc.name, []string{"A=1", tc.path})
		if got != tc.want || ok != tc.ok {
			t.Errorf("shimPath(%q, %q) = %q, %v; want %q, %v", tc.name, tc.path, got, ok, tc.want, tc.ok)
		}
	}
}

// TestRealExecShim: on the real runtime, a generation with a listener runs
// its verified open binary through the tiny shim, with LISTEN_PID its own
// PID and neither the shim nor the binary among its descriptors.
func TestRealExecShim(t *testing.T) {
	if !tinyshim.Built() {
		t.Skip("no tiny shim for " + runtime.GOARCH)
	}
	out := filepath.Join(t.TempDir(), "out")
	events := make(chan Event, 64)
	cfg := Config{
		Release: Release{Path: "/bin/sh", Args: []string{"-c",
			`echo "$$ $LISTEN_PID $LISTEN_FDS $(ls -l /proc/$$/fd | grep -c -e memfd: -e /bin/)" > ` + out + `.tmp; mv ` + out + `.tmp ` + out + `; exec sleep 60`}},
		Ready:      ReadyCheck{Kind: ReadyDelay, Delay: 10 * time.Millisecond},
		Listeners:  []ListenSpec{{Name: "http", URL: "tcp://127.0.0.1:0"}},
		RuntimeDir: t.TempDir(),
		Observers:  []Observer{ObserverFunc(func(e Event) { events <- e })},
		Log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	e, err := New(cfg, reaper(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() { code <- e.run(ctx, nil) }()
	go func() {
		for range events {
		}
	}()
	var b []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if b, err = os.ReadFile(out); err == nil {
			break
		}
	}
	cancel()
	<-code
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) != 4 || f[0] != f[1] || f[2] != "1" || f[3] != "0" {
		t.Fatalf("the server saw pid, LISTEN_PID, LISTEN_FDS, shim or binary fds = %q; want pid twice, 1, 0", b)
	}
	if st := e.Status(); st.ExecShim != ExecShimTiny {
		t.Fatalf("status says exec shim %q", st.ExecShim)
	}
	if _, err := strconv.Atoi(f[0]); err != nil {
		t.Fatal(err)
	}
}
