package hotswap

import (
	"context"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/entrypoint"
)

// The engine tests run real processes (/bin/sh) through one real reaper in
// this test process. Socket handoff and load are covered by e2e/swap.

var (
	testReaper     *entrypoint.Reaper
	testReaperOnce sync.Once
)

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

type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) Observe(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) count(t EventType) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Type == t {
			n++
		}
	}
	return n
}

func sh(script string, version string) Release {
	return Release{Path: "/bin/sh", Args: []string{"-c", script}, Version: version}
}

// startEngine runs an engine whose generations are `sh -c script`, ready
// after a short delay, and returns it with a stop function giving the exit code.
func startEngine(t *testing.T, rel Release, tweak func(*Config)) (*Engine, *recorder, func() int) {
	t.Helper()
	rec := &recorder{}
	cfg := Config{
		Release:      rel,
		Ready:        ReadyCheck{Kind: ReadyDelay, Delay: 30 * time.Millisecond},
		StartTimeout: 5 * time.Second,
		DrainTimeout: 2 * time.Second,
		Grace:        3 * time.Second,
		RuntimeDir:   t.TempDir(),
		Observers:    []Observer{rec},
		Log:          slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if testing.Verbose() {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if tweak != nil {
		tweak(&cfg)
	}
	e, err := New(cfg, reaper(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	codec := make(chan int, 1)
	go func() { codec <- e.Run(ctx) }()
	waitPhase(t, e, PhaseServing)
	stopped := false
	stop := func() int {
		if stopped {
			return -1
		}
		stopped = true
		cancel()
		select {
		case c := <-codec:
			return c
		case <-time.After(10 * time.Second):
			t.Fatal("engine did not stop within 10s")
			return -1
		}
	}
	t.Cleanup(func() { stop() })
	return e, rec, stop
}

func waitPhase(t *testing.T, e *Engine, p Phase) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if e.Status().Phase == p {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("phase %s not reached; status %+v", p, e.Status())
}

func TestSwapReplacesGeneration(t *testing.T) {
	e, rec, stop := startEngine(t, sh("exec sleep 60", "v1"), nil)
	first := e.Status()
	res, err := e.Swap(context.Background(), "test")
	if err != nil || res.Result != ResultSucceeded {
		t.Fatalf("swap: %+v %v", res, err)
	}
	st := e.Status()
	if st.Generation != first.Generation+1 || st.PID == first.PID {
		t.Fatalf("after swap: %+v (before %+v)", st, first)
	}
	if rec.count(SwapStarted) != 1 || rec.count(SwapSucceeded) != 1 {
		t.Fatalf("events: started %d succeeded %d", rec.count(SwapStarted), rec.count(SwapSucceeded))
	}
	// sleep dies of the stop signal: shutdown reports 128+15.
	if code := stop(); code != 143 {
		t.Fatalf("exit code %d, want 143", code)
	}
}

func TestConcurrentSwapsCoalesce(t *testing.T) {
	e, _, _ := startEngine(t, sh("exec sleep 60", "v1"), nil)
	const callers = 20
	var wg sync.WaitGroup
	results := make([]SwapResult, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := e.Swap(context.Background(), "test")
			if err != nil {
				t.Error(err)
			}
			results[i] = r
		}()
	}
	wg.Wait()
	ids := map[uint64]bool{}
	for _, r := range results {
		if r.Result != ResultSucceeded {
			t.Fatalf("caller got %+v", r)
		}
		ids[r.ID] = true
	}
	// One swap may be running when the first caller arrives; all the others
	// fold into at most one more each time a swap ends.
	if len(ids) > 3 {
		t.Fatalf("%d callers produced %d swaps, want coalescing into <= 3", callers, len(ids))
	}
}

func TestFailedReleaseKeepsServingAndIsNotRetried(t *testing.T) {
	e, rec, _ := startEngine(t, sh("exec sleep 60", "v1"), nil)
	before := e.Status()
	// A release that cannot even start fails deterministically; one that
	// exits at once would race the readiness delay on a loaded machine.
	bad := Release{Path: "/nonexistent/v2/server", Version: "v2-broken"}
	bad.Source = "test"
	e.Offer(bad)
	deadline := time.Now().Add(5 * time.Second)
	for rec.count(SwapFailed) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	st := e.Status()
	if rec.count(SwapFailed) != 1 || st.PID != before.PID || st.Version != "v1" {
		t.Fatalf("after broken release: failed=%d status %+v", rec.count(SwapFailed), st)
	}
	if st.LastSwap == nil || st.LastSwap.Reason == "" {
		t.Fatalf("status must say why: %+v", st.LastSwap)
	}
	// The same release offered again is not retried in a loop.
	e.Offer(bad)
	time.Sleep(200 * time.Millisecond)
	if n := rec.count(SwapStarted); n != 1 {
		t.Fatalf("broken release retried: %d swaps started", n)
	}
	good := sh("exec sleep 60", "v3")
	good.Source = "test"
	e.Offer(good)
	deadline = time.Now().Add(5 * time.Second)
	for e.Status().Version != "v3" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if v := e.Status().Version; v != "v3" {
		t.Fatalf("good release not swapped in: version %q", v)
	}
}

func TestStartTimeoutRollsBack(t *testing.T) {
	flag := t.TempDir() + "/ready"
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	e, rec, _ := startEngine(t, sh("exec sleep 60", "v1"), func(c *Config) {
		c.StartTimeout = 300 * time.Millisecond
		c.Ready = ReadyCheck{Kind: ReadyExec, Target: "test -e " + flag}
	})
	before := e.Status()
	os.Remove(flag) // the next generation never becomes ready
	res, err := e.Swap(context.Background(), "test")
	if err != nil || res.Result != ResultFailed {
		t.Fatalf("swap: %+v %v", res, err)
	}
	st := e.Status()
	if st.PID != before.PID || rec.count(SwapFailed) != 1 {
		t.Fatalf("old generation must keep serving: %+v", st)
	}
	deadline := time.Now().Add(3 * time.Second)
	for len(e.Status().Generations) != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := e.Status().Generations; len(g) != 1 {
		t.Fatalf("the failed generation was not killed: %+v", g)
	}
}

func TestRejectedByVerify(t *testing.T) {
	e, rec, _ := startEngine(t, sh("exec sleep 60", "v1"), func(c *Config) {
		c.Verify = func(_ context.Context, r Release) error {
			if r.Version == "evil" {
				return os.ErrPermission
			}
			return nil
		}
	})
	evil := sh("exec sleep 60", "evil")
	evil.Source = "test"
	e.Offer(evil)
	deadline := time.Now().Add(5 * time.Second)
	for rec.count(ReleaseRejected) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	st := e.Status()
	if rec.count(ReleaseRejected) != 1 || st.Version != "v1" || st.LastRejected == nil {
		t.Fatalf("rejected=%d status %+v", rec.count(ReleaseRejected), st)
	}
}

func TestServingExitPropagatesCode(t *testing.T) {
	e, _, stop := startEngine(t, sh("sleep 0.3; exit 7", "v1"), nil)
	_ = e
	deadline := time.Now().Add(5 * time.Second)
	for e.Status().Phase != PhaseStopping && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if code := stop(); code != 7 {
		t.Fatalf("exit code %d, want 7", code)
	}
}

func TestRejectShowsInStatus(t *testing.T) {
	e, rec, _ := startEngine(t, sh("exec sleep 60", "v1"), nil)
	before := e.Status()
	e.Reject("manifest:/etc/hotswap/release.yaml", "line 3: image: unknown field")
	deadline := time.Now().Add(5 * time.Second)
	for rec.count(ReleaseRejected) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	st := e.Status()
	if st.LastRejected == nil || st.LastRejected.Reason != "line 3: image: unknown field" || st.PID != before.PID {
		t.Fatalf("status after Reject: %+v", st)
	}
}

// On a read-only root with no writable mount, hotswap still runs like tini
// when nothing but the control socket needs a file; sd_notify readiness
// cannot work without one, so that is refused up front.
func TestNoWritableRuntimeDir(t *testing.T) {
	unwritable := "/proc/hotswap-test-no-such-dir"
	cfg := Config{Release: sh("exec sleep 60", "v1"), RuntimeDir: unwritable, Ready: ReadyCheck{Kind: ReadyDelay}}
	if _, err := New(cfg, reaper(t)); err != nil {
		t.Fatalf("delay readiness without a runtime dir: %v", err)
	}
	cfg.Ready = ReadyCheck{Kind: ReadyNotify}
	if _, err := New(cfg, reaper(t)); err == nil {
		t.Fatal("notify readiness without a runtime dir: want an error")
	}
}

// A swapped-in generation that dies right after taking over is replaced by
// the previous release, not left to --on-exit (which would end the pod).
func TestDeathRightAfterSwapRollsBack(t *testing.T) {
	e, rec, _ := startEngine(t, sh("exec sleep 60", "v1"), func(c *Config) {
		c.DrainTimeout = 50 * time.Millisecond // the old one is gone at once, as with --handoff-keepalive
	})
	flaky := sh("sleep 0.5; exit 1", "v2")
	flaky.Source = "test"
	e.Offer(flaky)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if st := e.Status(); st.Version == "v1" && rec.count(SwapSucceeded) == 1 && rec.count(ChildExited) == 1 && st.Phase == PhaseServing {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no rollback to v1: status %+v, succeeded %d, exited %d", e.Status(), rec.count(SwapSucceeded), rec.count(ChildExited))
}
