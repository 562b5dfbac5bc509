package hotswap

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/reuseport/activation"
)

// notifyChildEnv makes the test binary a server that reports READY=1 on its
// NOTIFY_SOCKET and runs until SIGTERM.
const notifyChildEnv = "ENGINE_TEST_NOTIFY_CHILD"

func init() {
	if os.Getenv(notifyChildEnv) == "" || len(os.Args) == 0 || os.Args[0] == activation.ShimArg0 {
		return
	}
	if err := activation.Notify("READY=1"); err != nil {
		os.Exit(3)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	<-sigs
	os.Exit(0)
}

// TestSharedRuntimeDir (issue 13, item 6): two hotswaps sharing a runtime
// directory (here two engines in one process: the same PID, the worst case
// for names made of a PID) each get their own notify sockets: both first
// generations become ready, and both swaps succeed.
func TestSharedRuntimeDir(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var engines []*Engine
	var codes []chan int
	for _, v := range []string{"a", "b"} {
		e, err := New(Config{
			Release:      Release{Path: exe, Env: []string{notifyChildEnv + "=1"}, Version: v},
			Ready:        ReadyCheck{Kind: ReadyNotify},
			StartTimeout: 10 * time.Second,
			RuntimeDir:   dir,
			Log:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		}, reaper(t))
		if err != nil {
			t.Fatal(err)
		}
		code := make(chan int, 1)
		go func() { code <- e.run(ctx, nil) }()
		engines = append(engines, e)
		codes = append(codes, code)
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, e := range engines {
		for e.Status().Phase != PhaseServing {
			if time.Now().After(deadline) {
				t.Fatalf("engine of %s: first generation never ready (its notify socket taken by the other?): %+v", e.current.Version, e.Status())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for _, e := range engines {
		sctx, scancel := context.WithTimeout(ctx, 15*time.Second)
		res, err := e.Swap(sctx, "test")
		scancel()
		if err != nil || res.Result != ResultSucceeded {
			t.Fatalf("swap of %s: %+v %v", e.current.Version, res, err)
		}
	}
	cancel()
	for _, c := range codes {
		select {
		case <-c:
		case <-time.After(10 * time.Second):
			t.Fatal("engine did not stop")
		}
	}
}

// TestPinnedBinariesClosed: the engine holds a release's open binary only
// while the release may start again (current, previous, live generations);
// twenty forced swaps leave at most two open once the old generations have
// exited, not twenty.
func TestPinnedBinariesClosed(t *testing.T) {
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Skip("no /bin/sh")
	}
	open := func() int {
		n := 0
		ents, _ := os.ReadDir("/proc/self/fd")
		for _, d := range ents {
			if p, err := os.Readlink("/proc/self/fd/" + d.Name()); err == nil && p == sh {
				n++
			}
		}
		return n
	}
	before := open()
	e, err := New(Config{
		Release:    Release{Path: "/bin/sh", Args: []string{"-c", "exec sleep 60"}, Version: "v1"},
		Ready:      ReadyCheck{Kind: ReadyDelay, Delay: time.Millisecond},
		RuntimeDir: t.TempDir(),
		Log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, reaper(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() { code <- e.run(ctx, nil) }()
	for i := 0; i < 20; i++ {
		sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
		res, err := e.Swap(sctx, "test")
		scancel()
		if err != nil || res.Result != ResultSucceeded {
			t.Fatalf("swap %d: %+v %v", i, res, err)
		}
	}
	// Draining generations still hold theirs; wait until they are gone.
	for deadline := time.Now().Add(10 * time.Second); len(e.Status().Generations) > 1; {
		if time.Now().After(deadline) {
			t.Fatalf("old generations never exited: %+v", e.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := open() - before; n < 1 {
		t.Errorf("no descriptor of %s open while it serves: the release is not pinned", sh)
	} else if n > 2 {
		t.Errorf("%d descriptors of %s open after 20 swaps; want at most 2 (current and previous)", n, sh)
	}
	cancel()
	<-code
	if n := open() - before; n != 0 {
		t.Errorf("%d descriptors of %s still open after the engine stopped", n, sh)
	}
}
