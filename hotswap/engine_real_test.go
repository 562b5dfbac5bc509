package hotswap

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/entrypoint"
)

var (
	testReaper     *entrypoint.Reaper
	testReaperOnce sync.Once
)

// reaper is the package's one real reaper (a process may hold only one),
// shared by the tests that run real processes.
func reaper(t *testing.T) *entrypoint.Reaper {
	testReaperOnce.Do(func() {
		r, err := entrypoint.NewReaper(slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		testReaper = r
	})
	return testReaper
}

// TestRealRuntimeSwap is the one engine test on real processes: it proves
// the real Runtime's wiring (reaper start and exit, the delay probe, the
// wall clock) that the fake stands in for everywhere else. Sockets, PID 1
// and load are covered by e2e/swap and e2e/pid1.
func TestRealRuntimeSwap(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	events := make(chan Event, 64)
	cfg := Config{
		Release:    Release{Path: "/bin/sh", Args: []string{"-c", "exec sleep 60"}, Version: "v1"},
		Ready:      ReadyCheck{Kind: ReadyDelay, Delay: 10 * time.Millisecond},
		RuntimeDir: t.TempDir(),
		Observers:  []Observer{ObserverFunc(func(e Event) { events <- e })},
		Log:        log,
	}
	e, err := New(cfg, reaper(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	code := make(chan int, 1)
	go func() { code <- e.run(ctx, nil) }()
	for ev := range events {
		if ev.Status.Phase == PhaseServing {
			break
		}
	}
	first := e.Status()
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	res, err := e.Swap(sctx, "test")
	if err != nil || res.Result != ResultSucceeded {
		t.Fatalf("swap: %+v %v", res, err)
	}
	if st := e.Status(); st.Generation != 2 || st.PID == first.PID {
		t.Fatalf("after swap %+v, before %+v", st, first)
	}
	go func() {
		for range events {
		}
	}()
	cancel()
	select {
	case c := <-code:
		if c != 143 { // sleep dies of the stop signal
			t.Fatalf("exit code %d, want 143", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("engine did not stop")
	}
}
