package hotswap

import (
	"context"
	"errors"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/entrypoint"
	"github.com/hotswap-dev/hotswap/reuseport/activation"
)

// The engine's unit tests run on fakeRuntime (fake_test.go): no process,
// no sleep, time moves when a test says so. Real processes, sockets and
// PID 1 are covered by engine_real_test.go and the e2e packages.

// gen is generation n's record; read only while the engine is settled.
func (h *harness) gen(n int) *generation {
	h.t.Helper()
	for _, g := range h.e.gens {
		if g.id == n {
			return g
		}
	}
	h.t.Fatalf("generation %d is not live", n)
	return nil
}

func wantSignals(t *testing.T, p *fakeProc, want ...syscall.Signal) {
	t.Helper()
	if got := p.signals(); !slices.Equal(got, want) {
		t.Fatalf("pid %d got signals %v, want %v", p.pid, got, want)
	}
}

func wantPhase(t *testing.T, h *harness, p Phase) {
	t.Helper()
	if st := h.e.Status(); st.Phase != p {
		t.Fatalf("phase %s, want %s (status %+v)", st.Phase, p, st)
	}
}

// ---- start and the first generation ----

func TestFirstGenerationStartsAndServes(t *testing.T) {
	h := newHarness(t, nil).start()
	wantPhase(t, h, PhaseStarting)
	if st := h.e.Status(); st.Generation != 0 || st.PID != 0 {
		t.Fatalf("nothing serves before ready: %+v", st)
	}
	p := h.proc(1)
	if !p.spec.Foreground || p.spec.Path != "/app/server-v1" || p.spec.Argv[0] != "/app/server-v1" {
		t.Fatalf("first generation spec %+v", p.spec)
	}
	h.ready(1)
	st := h.e.Status()
	if st.Phase != PhaseServing || st.Generation != 1 || st.PID != p.pid || st.Version != "v1" {
		t.Fatalf("after ready: %+v", st)
	}
	if !slices.Contains(h.rt.foreground, p.pid) {
		t.Fatalf("the serving generation did not get the terminal: %v", h.rt.foreground)
	}
	if h.rt.checks[0] != h.e.cfg.Ready {
		t.Fatalf("probe %v, want %v", h.rt.checks[0], h.e.cfg.Ready)
	}
}

func TestExecSpecEnvironment(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.Env = []string{"KEEP=1", "LISTEN_FDS=3", "LISTEN_PID=7", "NOTIFY_SOCKET=/stale", "HOTSWAP_GENERATION=9", "HOTSWAP_VERSION=old"}
		c.Release.Args = []string{"-a", "b"}
		c.Release.Env = []string{"REL=yes"}
	}).start()
	p := h.proc(1)
	want := []string{"KEEP=1", "REL=yes", "HOTSWAP_GENERATION=1", "HOTSWAP_VERSION=v1"}
	if !slices.Equal(p.spec.Env, want) {
		t.Fatalf("env %q, want %q", p.spec.Env, want)
	}
	if !slices.Equal(p.spec.Argv, []string{"/app/server-v1", "-a", "b"}) {
		t.Fatalf("argv %q", p.spec.Argv)
	}
}

func TestStartFailureExitCode(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		code int
	}{
		{"not found", &entrypoint.StartError{Path: "x", Err: syscall.ENOENT}, 127},
		{"not executable", &entrypoint.StartError{Path: "x", Err: syscall.EACCES}, 126},
		{"other", errors.New("boom"), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.rt.startErr["/app/server-v1"] = tc.err
			h.start()
			if code := h.wait(); code != tc.code {
				t.Fatalf("exit code %d, want %d", code, tc.code)
			}
		})
	}
}

func TestFirstGenerationNeverReady(t *testing.T) {
	h := newHarness(t, nil).start()
	reply := h.requestSwap("control")
	h.advance(10 * h.e.cfg.StartTimeout) // no start timeout for the first generation
	wantPhase(t, h, PhaseStarting)
	wantSignals(t, h.proc(1))
	if h.started() != 1 {
		t.Fatal("a swap started while nothing served")
	}
	noResult(t, reply)
	h.signal(syscall.SIGTERM)
	if r := h.result(reply); r.Result != ResultCanceled {
		t.Fatalf("queued swap at shutdown: %+v", r)
	}
	wantSignals(t, h.proc(1), syscall.SIGTERM)
	h.exitSignal(1, syscall.SIGTERM)
	if code := h.wait(); code != 143 {
		t.Fatalf("exit code %d, want 143", code)
	}
}

func TestFirstGenerationExitsBeforeReady(t *testing.T) {
	h := newHarness(t, nil).start()
	h.exitCode(1, 3)
	if code := h.wait(); code != 3 {
		t.Fatalf("exit code %d, want 3", code)
	}
}

// ---- PID 1: signals ----

func TestSignalForwarding(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rewrite entrypoint.Rewrite
		send    syscall.Signal
		want    []syscall.Signal
	}{
		{"HUP", nil, syscall.SIGHUP, []syscall.Signal{syscall.SIGHUP}},
		{"QUIT", nil, syscall.SIGQUIT, []syscall.Signal{syscall.SIGQUIT}},
		{"WINCH", nil, syscall.SIGWINCH, []syscall.Signal{syscall.SIGWINCH}},
		{"rewrite HUP:USR1", entrypoint.Rewrite{syscall.SIGHUP: syscall.SIGUSR1}, syscall.SIGHUP, []syscall.Signal{syscall.SIGUSR1}},
		{"rewrite HUP:0 drops it", entrypoint.Rewrite{syscall.SIGHUP: 0}, syscall.SIGHUP, nil},
		{"swap signal is not forwarded", nil, syscall.SIGUSR2, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := running(t, func(c *Config) { c.Rewrite = tc.rewrite })
			h.signal(tc.send)
			wantSignals(t, h.proc(1), tc.want...)
		})
	}
}

func TestSwapSignalStartsSwap(t *testing.T) {
	h := running(t, nil)
	h.signal(syscall.SIGUSR2)
	if h.started() != 2 || h.rec.count(SwapStarted) != 1 {
		t.Fatalf("swap signal: %d generations, %d swaps", h.started(), h.rec.count(SwapStarted))
	}
	h.ready(2)
	if st := h.e.Status(); st.LastSwap == nil || st.LastSwap.Trigger != "signal" || st.Generation != 2 {
		t.Fatalf("after swap by signal: %+v", st)
	}
}

func TestSignalsGoOnlyToServingGeneration(t *testing.T) {
	h := running(t, nil)
	h.requestSwap("control")
	h.signal(syscall.SIGHUP) // generation 2 is starting, not serving
	wantSignals(t, h.proc(1), syscall.SIGHUP)
	wantSignals(t, h.proc(2))
	h.ready(2)
	h.signal(syscall.SIGHUP) // generation 1 drains: it got its stop signal only
	wantSignals(t, h.proc(1), syscall.SIGHUP, syscall.SIGTERM)
	wantSignals(t, h.proc(2), syscall.SIGHUP)
}

func TestSignalReachesStartingFirstGeneration(t *testing.T) {
	h := newHarness(t, nil).start()
	h.signal(syscall.SIGHUP)
	wantSignals(t, h.proc(1), syscall.SIGHUP)
}

// ---- PID 1: shutdown ----

func TestShutdownSignalStopsAndExitsWithChildCode(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(entrypoint.SignalName(sig), func(t *testing.T) {
			h := running(t, nil)
			h.rt.stragglers = []int{500}
			h.signal(sig)
			wantPhase(t, h, PhaseStopping)
			wantSignals(t, h.proc(1), syscall.SIGTERM)
			if !slices.Equal(h.rt.strSigs, []syscall.Signal{syscall.SIGTERM}) || !h.rt.strSkips[0][h.proc(1).pid] {
				t.Fatalf("stragglers got %v (skipping %v), want TERM skipping the generation's group", h.rt.strSigs, h.rt.strSkips)
			}
			h.exitSignal(1, syscall.SIGTERM)
			if h.isDone() {
				t.Fatal("Run returned while a straggler lives")
			}
			h.rt.mu.Lock()
			h.rt.stragglers = nil
			h.rt.mu.Unlock()
			h.advance(shutdownPoll)
			if code := h.wait(); code != 143 {
				t.Fatalf("exit code %d, want 143 (the child's)", code)
			}
			if e, _ := h.rec.last(StatusChanged); e.Message != "stopped" {
				t.Fatalf("last event %q, want stopped", e.Message)
			}
		})
	}
}

func TestTermIgnoredByRewrite(t *testing.T) {
	h := running(t, func(c *Config) { c.Rewrite = entrypoint.Rewrite{syscall.SIGTERM: 0} })
	h.signal(syscall.SIGTERM)
	wantPhase(t, h, PhaseServing)
	wantSignals(t, h.proc(1))
	if h.isDone() {
		t.Fatal("TERM:0 must leave hotswap running")
	}
}

func TestTermRewrittenIsTheStopSignal(t *testing.T) {
	h := running(t, func(c *Config) { c.Rewrite = entrypoint.Rewrite{syscall.SIGTERM: syscall.SIGQUIT} })
	h.requestSwap("control") // a starting generation is stopped the same way
	h.signal(syscall.SIGTERM)
	wantSignals(t, h.proc(1), syscall.SIGQUIT)
	wantSignals(t, h.proc(2), syscall.SIGQUIT)
	if !slices.Equal(h.rt.strSigs, []syscall.Signal{syscall.SIGQUIT}) {
		t.Fatalf("stragglers got %v, want QUIT", h.rt.strSigs)
	}
	h.exitSignal(2, syscall.SIGQUIT)
	h.exitSignal(1, syscall.SIGQUIT)
	if code := h.wait(); code != 128+int(syscall.SIGQUIT) {
		t.Fatalf("exit code %d", code)
	}
}

func TestGraceExpiryKillsEverything(t *testing.T) {
	h := running(t, func(c *Config) { c.DrainTimeout = time.Hour })
	h.requestSwap("control")
	h.ready(2) // 1 drains, 2 serves
	h.rt.stragglers = []int{500}
	h.signal(syscall.SIGTERM)
	h.advance(h.e.cfg.Grace - time.Millisecond)
	wantSignals(t, h.proc(1), syscall.SIGTERM) // draining: it had its stop signal
	wantSignals(t, h.proc(2), syscall.SIGTERM)
	h.advance(time.Millisecond)
	wantSignals(t, h.proc(1), syscall.SIGTERM, syscall.SIGKILL)
	wantSignals(t, h.proc(2), syscall.SIGTERM, syscall.SIGKILL)
	if !slices.Equal(h.rt.strSigs, []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}) {
		t.Fatalf("stragglers got %v", h.rt.strSigs)
	}
	h.rt.mu.Lock()
	h.rt.stragglers = nil
	h.rt.mu.Unlock()
	h.advance(shutdownPoll)
	if code := h.wait(); code != 137 {
		t.Fatalf("exit code %d, want 137 (serving child killed)", code)
	}
}

func TestSurvivorsOfKillDoNotHoldExit(t *testing.T) {
	h := running(t, nil)
	h.rt.stragglers = []int{500} // never goes away
	h.signal(syscall.SIGTERM)
	h.exitSignal(1, syscall.SIGTERM)
	h.advance(h.e.cfg.Grace)
	h.advance(killWait)
	if h.isDone() {
		t.Fatal("gave up before the wait after SIGKILL")
	}
	h.advance(shutdownPoll)
	if code := h.wait(); code != 143 {
		t.Fatalf("exit code %d, want 143", code)
	}
}

func TestServingExitPropagatesCode(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   entrypoint.ExitStatus
		code int
	}{
		{"exit 7", entrypoint.ExitStatus{Status: 7}, 7},
		{"exit 0", entrypoint.ExitStatus{}, 0},
		{"segfault", entrypoint.ExitStatus{Signal: syscall.SIGSEGV}, 139},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := running(t, nil)
			h.proc(1).end(tc.st)
			h.settle()
			if code := h.wait(); code != tc.code {
				t.Fatalf("exit code %d, want %d", code, tc.code)
			}
			ev, ok := h.rec.last(ChildExited)
			if !ok || ev.Warning != (tc.code != 0) {
				t.Fatalf("ChildExited %+v", ev)
			}
		})
	}
}

func TestServingExitStopsTheRest(t *testing.T) {
	h := running(t, nil)
	h.rt.stragglers = []int{500}
	h.exitCode(1, 5)
	wantPhase(t, h, PhaseStopping)
	if !slices.Equal(h.rt.strSigs, []syscall.Signal{syscall.SIGTERM}) {
		t.Fatalf("stragglers got %v", h.rt.strSigs)
	}
	h.advance(h.e.cfg.Grace) // the straggler ignores TERM
	if !slices.Equal(h.rt.strSigs, []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}) {
		t.Fatalf("stragglers got %v", h.rt.strSigs)
	}
	h.rt.mu.Lock()
	h.rt.stragglers = nil
	h.rt.mu.Unlock()
	h.advance(shutdownPoll)
	if code := h.wait(); code != 5 {
		t.Fatalf("exit code %d, want 5", code)
	}
}

func TestContextCancelShutsDown(t *testing.T) {
	h := running(t, nil)
	h.cancel()
	for i := 0; h.e.Status().Phase != PhaseStopping; i++ {
		if i > 1000 {
			t.Fatal("cancel did not start shutdown")
		}
		h.settle()
	}
	wantSignals(t, h.proc(1), syscall.SIGTERM)
	h.exitSignal(1, syscall.SIGTERM)
	if code := h.wait(); code != 143 {
		t.Fatalf("exit code %d", code)
	}
}

func TestShutdownMidSwap(t *testing.T) {
	h := running(t, nil)
	reply := h.requestSwap("control")
	h.signal(syscall.SIGTERM)
	if r := h.result(reply); r.Result != ResultCanceled || r.Reason != ErrShuttingDown.Error() {
		t.Fatalf("swap at shutdown: %+v", r)
	}
	h.wantGens(map[int]GenState{1: GenServing, 2: GenFailed})
	wantSignals(t, h.proc(1), syscall.SIGTERM)
	wantSignals(t, h.proc(2), syscall.SIGTERM)
	h.ready(2) // too late: it never serves
	h.exitSignal(2, syscall.SIGTERM)
	h.wantGens(map[int]GenState{1: GenServing})
	h.exitSignal(1, syscall.SIGTERM)
	if code := h.wait(); code != 143 {
		t.Fatalf("exit code %d", code)
	}
}

func TestShutdownWhileVerifying(t *testing.T) {
	h := running(t, nil)
	reply := make(chan SwapResult, 1)
	h.e.post(swapReq{trigger: "control", force: true, reply: reply})
	h.settleNoBackground() // verification has not finished
	h.signal(syscall.SIGTERM)
	if r := h.result(reply); r.Result != ResultCanceled {
		t.Fatalf("swap at shutdown: %+v", r)
	}
	if h.started() != 1 {
		t.Fatal("a generation started after shutdown began")
	}
}

func TestSwapRefusedDuringShutdown(t *testing.T) {
	h := running(t, nil)
	h.signal(syscall.SIGTERM)
	if r := h.result(h.requestSwap("control")); r.Result != ResultCanceled {
		t.Fatalf("swap during shutdown: %+v", r)
	}
	h.offer(rel("v2"))
	if h.started() != 1 {
		t.Fatal("a generation started during shutdown")
	}
}

func TestSwapAPI(t *testing.T) {
	h := running(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := h.e.Swap(ctx, "control")
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Swap with a canceled context: %v", err)
	}
	h.settle()
	h.signal(syscall.SIGTERM)
	h.stopForCleanup()
	if _, err := h.e.Swap(context.Background(), "control"); !errors.Is(err, ErrShuttingDown) {
		t.Fatalf("Swap after Run ended: %v", err)
	}
}

// ---- swaps ----

func TestSwapReplacesGeneration(t *testing.T) {
	h := running(t, nil)
	reply := h.requestSwap("control")
	wantPhase(t, h, PhaseSwapping)
	if h.proc(2).spec.Foreground {
		t.Fatal("a swap's generation must not take the terminal before it serves")
	}
	h.advance(3 * time.Second)
	noResult(t, reply)
	h.ready(2)
	r := h.result(reply)
	want := SwapResult{ID: 1, Trigger: "control", Result: ResultSucceeded, FromGen: 1, ToGen: 2, FromVersion: "v1", ToVersion: "v1", Duration: 3 * time.Second}
	r.Started = time.Time{}
	if r != want {
		t.Fatalf("result %+v, want %+v", r, want)
	}
	wantSignals(t, h.proc(1), syscall.SIGTERM)
	h.wantGens(map[int]GenState{1: GenDraining, 2: GenServing})
	if st := h.e.Status(); st.Phase != PhaseServing || st.Generation != 2 || st.PID != h.proc(2).pid {
		t.Fatalf("after swap: %+v", st)
	}
	h.exitSignal(1, syscall.SIGTERM)
	h.wantGens(map[int]GenState{2: GenServing})
	wantPhase(t, h, PhaseServing)
	if h.rec.count(ChildExited) != 0 || h.rec.count(SwapSucceeded) != 1 {
		t.Fatalf("events: exited %d succeeded %d", h.rec.count(ChildExited), h.rec.count(SwapSucceeded))
	}
}

func TestOfferSwapsToNewRelease(t *testing.T) {
	h := running(t, nil)
	h.offer(rel("v2"))
	p := h.proc(2)
	if p.spec.Path != "/app/server-v2" || p.env("HOTSWAP_VERSION") != "v2" {
		t.Fatalf("generation 2 spec %+v", p.spec)
	}
	h.ready(2)
	st := h.e.Status()
	if st.Version != "v2" || st.LastSwap == nil || st.LastSwap.Trigger != "source:test" {
		t.Fatalf("after offer: %+v", st)
	}
}

func TestForcedSwapOfServingRelease(t *testing.T) {
	h := running(t, nil)
	h.offer(rel("v1")) // what serves already: nothing to do
	if h.started() != 1 {
		t.Fatal("offering the serving release started a swap")
	}
	reply := h.requestSwap("control") // forced: restart the same release
	h.ready(2)
	if r := h.result(reply); r.Result != ResultSucceeded || r.ToVersion != "v1" {
		t.Fatalf("forced swap: %+v", r)
	}
	if h.proc(2).spec.Path != "/app/server-v1" {
		t.Fatalf("forced swap ran %s", h.proc(2).spec.Path)
	}
}

func TestConcurrentRequestsCoalesce(t *testing.T) {
	h := running(t, nil)
	first := h.requestSwap("control")
	var later []chan SwapResult
	for _, trig := range []string{"signal", "control", "signal", "source:test"} {
		later = append(later, h.requestSwap(trig))
	}
	if h.started() != 2 {
		t.Fatalf("%d generations started while one swap runs", h.started())
	}
	h.ready(2)
	if r := h.result(first); r.ID != 1 || r.Result != ResultSucceeded {
		t.Fatalf("first swap %+v", r)
	}
	h.ready(3) // the queued swap: all later callers in one
	for _, reply := range later {
		r := h.result(reply)
		if r.ID != 2 || r.Result != ResultSucceeded || r.Trigger != "signal,control,source:test" {
			t.Fatalf("coalesced caller got %+v", r)
		}
	}
	if n := h.rec.count(SwapStarted); n != 2 {
		t.Fatalf("%d swaps for 5 requests, want 2", n)
	}
}

func TestOfferLatestReleaseWins(t *testing.T) {
	h := running(t, nil)
	h.offer(rel("v2"))
	h.offer(rel("v3"))
	h.offer(rel("v4"))
	h.ready(2)
	if p := h.proc(3); p.spec.Path != "/app/server-v4" {
		t.Fatalf("queued swap runs %s, want v4", p.spec.Path)
	}
	h.ready(3)
	if h.started() != 3 || h.e.Status().Version != "v4" {
		t.Fatalf("started %d, status %+v", h.started(), h.e.Status())
	}
}

func TestOfferOfKnownReleaseIgnored(t *testing.T) {
	for _, tc := range []struct {
		name   string
		offers []string
		starts int // generations started, the first included
	}{
		{"serving", []string{"v1"}, 1},
		{"being swapped in", []string{"v2", "v2"}, 2},
		{"queued", []string{"v2", "v3", "v3"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := running(t, nil)
			for _, v := range tc.offers {
				h.offer(rel(v))
			}
			if h.started() != tc.starts {
				t.Fatalf("%d generations started, want %d", h.started(), tc.starts)
			}
			if tc.name == "queued" {
				h.ready(2)
				h.ready(3)
				if h.rec.count(SwapStarted) != 2 {
					t.Fatalf("%d swaps, want 2", h.rec.count(SwapStarted))
				}
			}
		})
	}
}

func TestSwapWaitsForFirstGeneration(t *testing.T) {
	h := newHarness(t, nil).start()
	reply := h.requestSwap("control")
	if h.started() != 1 || h.e.Status().Swaps != 0 {
		t.Fatal("swap started before the first generation was ready")
	}
	h.ready(1)
	if h.started() != 2 {
		t.Fatal("waiting swap did not start once generation 1 was ready")
	}
	h.ready(2)
	if r := h.result(reply); r.Result != ResultSucceeded || r.FromGen != 1 {
		t.Fatalf("%+v", r)
	}
}

// ---- failed swaps and rollback ----

func TestRollbackOnExitBeforeReady(t *testing.T) {
	h := running(t, nil)
	h.offer(rel("v2"))
	h.exitCode(2, 1)
	st := h.e.Status()
	if st.Generation != 1 || st.LastSwap == nil || st.LastSwap.Result != ResultFailed ||
		!strings.Contains(st.LastSwap.Reason, "exited before it was ready") || st.LastSwap.ToGen != 2 {
		t.Fatalf("after early exit: %+v %+v", st, st.LastSwap)
	}
	h.wantGens(map[int]GenState{1: GenServing})
	wantSignals(t, h.proc(1))
	if ev, _ := h.rec.last(SwapFailed); !ev.Warning {
		t.Fatal("SwapFailed must be a warning")
	}
}

func TestFailedReleaseNotRetriedUntilChange(t *testing.T) {
	h := running(t, nil)
	h.offer(rel("v2"))
	h.exitCode(2, 1)
	h.offer(rel("v2"))
	if h.started() != 2 {
		t.Fatal("a release that failed was retried")
	}
	h.offer(rel("v3"))
	h.ready(3)
	if h.e.Status().Version != "v3" {
		t.Fatal("a different release was not swapped in")
	}
	h.offer(rel("v2")) // a success since: v2 may be tried again
	if h.started() != 4 {
		t.Fatal("v2 still ignored after a successful swap")
	}
}

func TestRollbackOnStartTimeout(t *testing.T) {
	h := running(t, nil)
	reply := h.requestSwap("control")
	h.advance(h.e.cfg.StartTimeout - time.Millisecond)
	noResult(t, reply)
	h.advance(time.Millisecond)
	r := h.result(reply)
	if r.Result != ResultFailed || !strings.Contains(r.Reason, "--start-timeout") {
		t.Fatalf("%+v", r)
	}
	// Stopped like a draining one: it may hold accepted connections.
	wantSignals(t, h.proc(2), syscall.SIGTERM)
	h.wantGens(map[int]GenState{1: GenServing, 2: GenFailed})
	h.ready(2) // late: ignored
	if st := h.e.Status(); st.Generation != 1 || h.rec.count(SwapSucceeded) != 0 {
		t.Fatalf("a late ready took over: %+v", st)
	}
	h.advance(h.e.cfg.DrainTimeout)
	wantSignals(t, h.proc(2), syscall.SIGTERM, syscall.SIGKILL)
	h.wantGens(map[int]GenState{1: GenServing})
}

// A generation failed by a start timeout stays failed when it exits (it
// once became "exited", a backward move).
func TestFailedGenerationExitStaysFailed(t *testing.T) {
	h := running(t, nil)
	h.requestSwap("control")
	h.advance(h.e.cfg.StartTimeout)
	g := h.gen(2)
	h.exitSignal(2, syscall.SIGTERM)
	if g.state != GenFailed {
		t.Fatalf("state %s after exit, want failed", g.state)
	}
	if ev, _ := h.rec.last(StatusChanged); ev.Message != "generation 2 exited (killed by signal 15 (terminated))" {
		t.Fatalf("event %q", ev.Message)
	}
}

func TestStartErrorOfNewGeneration(t *testing.T) {
	h := running(t, nil)
	h.rt.startErr["/app/server-v2"] = &entrypoint.StartError{Path: "/app/server-v2", Err: syscall.ENOENT}
	h.offer(rel("v2"))
	st := h.e.Status()
	if st.LastSwap == nil || st.LastSwap.Result != ResultFailed || st.LastSwap.ToVersion != "v2" || st.Generation != 1 {
		t.Fatalf("%+v", st)
	}
	h.offer(rel("v2"))
	if h.rec.count(SwapStarted) != 1 {
		t.Fatal("a release that cannot start was retried")
	}
}

func TestRollbackWhenNewGenerationDiesWithinWindow(t *testing.T) {
	h := running(t, nil)
	h.offer(rel("v2"))
	h.ready(2)
	h.exitSignal(1, syscall.SIGTERM) // drained
	h.advance(h.e.cfg.RollbackWindow - time.Second)
	h.exitCode(2, 1)
	if h.isDone() || h.started() != 3 {
		t.Fatalf("no rollback: done %v, started %d", h.isDone(), h.started())
	}
	p := h.proc(3)
	if p.spec.Path != "/app/server-v1" || !p.spec.Foreground {
		t.Fatalf("rollback started %+v", p.spec)
	}
	wantPhase(t, h, PhaseStarting)
	h.ready(3)
	if st := h.e.Status(); st.Version != "v1" || st.Phase != PhaseServing {
		t.Fatalf("after rollback: %+v", st)
	}
	h.offer(rel("v2")) // it failed: not retried
	if h.started() != 3 {
		t.Fatal("the release that died was retried")
	}
	// previous was used up: a second death follows --on-exit.
	h.exitCode(3, 4)
	if code := h.wait(); code != 4 {
		t.Fatalf("exit code %d, want 4", code)
	}
}

func TestRollbackWhilePredecessorDrains(t *testing.T) {
	h := running(t, nil)
	h.offer(rel("v2"))
	h.ready(2)
	h.advance(h.e.cfg.RollbackWindow + time.Second) // past the window, 1 still drains
	h.exitCode(2, 1)
	if h.started() != 3 || h.proc(3).spec.Path != "/app/server-v1" {
		t.Fatal("no rollback while the predecessor drains")
	}
}

func TestNoRollbackAfterWindow(t *testing.T) {
	h := running(t, nil)
	h.offer(rel("v2"))
	h.ready(2)
	h.exitSignal(1, syscall.SIGTERM)
	h.advance(h.e.cfg.RollbackWindow + time.Second)
	h.exitCode(2, 6)
	if code := h.wait(); code != 6 {
		t.Fatalf("exit code %d, want 6", code)
	}
	if h.started() != 2 {
		t.Fatal("rolled back after the window")
	}
}

func TestRollbackOfForcedSwapRestartsSameRelease(t *testing.T) {
	h := running(t, nil)
	h.requestSwap("control")
	h.ready(2)
	h.exitCode(2, 1)
	if h.started() != 3 || h.proc(3).spec.Path != "/app/server-v1" {
		t.Fatal("no rollback of a same-release swap")
	}
	h.ready(3)
	h.requestSwap("control") // the same release is not marked failed
	if h.started() != 4 {
		t.Fatal("same release refused after its rollback")
	}
}

func TestMaxGenerationsHoldsSwap(t *testing.T) {
	h := running(t, func(c *Config) { c.MaxGenerations = 2 })
	h.requestSwap("control")
	h.ready(2) // 1 drains, 2 serves: the bound is reached
	reply := h.requestSwap("control")
	if h.started() != 2 || h.e.Status().Swaps != 1 {
		t.Fatal("swap started beyond --max-generations")
	}
	h.exitSignal(1, syscall.SIGTERM)
	if h.started() != 3 {
		t.Fatal("swap did not start once a slot freed")
	}
	h.ready(3)
	if r := h.result(reply); r.Result != ResultSucceeded || r.ToGen != 3 {
		t.Fatalf("%+v", r)
	}
}

func TestMaxGenerationsFailedGenerationFreesSlot(t *testing.T) {
	h := running(t, func(c *Config) { c.MaxGenerations = 2 })
	h.requestSwap("control")
	h.requestSwap("control") // queued
	h.advance(h.e.cfg.StartTimeout)
	if h.started() != 2 {
		t.Fatal("the failed generation still holds its slot until it exits")
	}
	h.exitSignal(2, syscall.SIGTERM)
	if h.started() != 3 {
		t.Fatal("queued swap did not start when the failed generation exited")
	}
}

func TestDrainDeadlineKills(t *testing.T) {
	h := running(t, nil)
	h.offer(rel("v2"))
	h.ready(2)
	h.advance(h.e.cfg.DrainTimeout - time.Millisecond)
	wantSignals(t, h.proc(1), syscall.SIGTERM)
	h.advance(time.Millisecond)
	wantSignals(t, h.proc(1), syscall.SIGTERM, syscall.SIGKILL)
	h.wantGens(map[int]GenState{2: GenServing})
	wantPhase(t, h, PhaseServing)
}

func TestDrainDeadlineAfterExitIsHarmless(t *testing.T) {
	h := running(t, nil)
	h.offer(rel("v2"))
	h.ready(2)
	h.exitSignal(1, syscall.SIGTERM)
	h.advance(h.e.cfg.DrainTimeout)
	wantSignals(t, h.proc(1), syscall.SIGTERM)
	wantPhase(t, h, PhaseServing)
}

// ---- verification and rejection ----

func TestRejectedByVerify(t *testing.T) {
	h := running(t, func(c *Config) {
		c.Verify = func(_ context.Context, r Release) error {
			if r.Version == "evil" {
				return errors.New("sha256 mismatch")
			}
			return nil
		}
	})
	h.offer(rel("evil"))
	st := h.e.Status()
	if h.started() != 1 || st.LastRejected == nil || st.LastRejected.Reason != "sha256 mismatch" || st.LastRejected.ToVersion != "evil" || st.LastSwap != nil {
		t.Fatalf("after rejected release: started %d, %+v", h.started(), st)
	}
	if ev, _ := h.rec.last(ReleaseRejected); !ev.Warning {
		t.Fatal("ReleaseRejected must be a warning")
	}
	h.offer(rel("evil"))
	if h.rec.count(SwapStarted) != 1 {
		t.Fatal("a rejected release was verified again")
	}
	h.offer(rel("v2"))
	h.ready(2)
	if h.e.Status().Version != "v2" {
		t.Fatal("a good release after a rejected one was not swapped in")
	}
}

func TestRejectedForcedSwapIsLastSwap(t *testing.T) {
	h := running(t, func(c *Config) {
		c.Verify = func(context.Context, Release) error { return errors.New("no") }
	})
	r := h.result(h.requestSwap("control"))
	st := h.e.Status()
	if r.Result != ResultRejected || st.LastSwap == nil || st.LastSwap.Result != ResultRejected || st.LastRejected != nil {
		t.Fatalf("result %+v, status %+v", r, st)
	}
}

func TestRejectShowsInStatus(t *testing.T) {
	h := running(t, nil)
	h.e.Reject("manifest:/etc/hotswap/release.yaml", "line 3: unknown field")
	h.settle()
	st := h.e.Status()
	r := st.LastRejected
	if r == nil || r.Reason != "line 3: unknown field" || r.Trigger != "source:manifest:/etc/hotswap/release.yaml" || r.FromGen != 1 || r.Result != ResultRejected {
		t.Fatalf("LastRejected %+v", r)
	}
	if st.Phase != PhaseServing || st.Generation != 1 || h.rec.count(ReleaseRejected) != 1 {
		t.Fatalf("status %+v", st)
	}
}

// ---- readiness ----

func notifyMsg(pid int, kv ...string) activation.NotifyMessage {
	m := activation.NotifyMessage{PID: pid, Fields: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		m.Fields[kv[i]] = kv[i+1]
	}
	return m
}

func (h *harness) notify(n int, m activation.NotifyMessage) {
	h.t.Helper()
	h.e.post(notifyEvent{g: h.gen(n), msg: m})
	h.settle()
}

func TestNotifyReadiness(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Ready = ReadyCheck{Kind: ReadyNotify} }).start()
	if len(h.rt.checks) != 0 {
		t.Fatal("notify readiness must not start a probe")
	}
	if ns := h.proc(1).env("NOTIFY_SOCKET"); !strings.HasPrefix(ns, h.e.runDir) {
		t.Fatalf("NOTIFY_SOCKET %q", ns)
	}
	pid := h.proc(1).pid
	h.notify(1, notifyMsg(pid, "STATUS", "warming up"))
	wantPhase(t, h, PhaseStarting)
	if g := h.e.Status().Generations[0]; g.Status != "warming up" {
		t.Fatalf("STATUS not shown: %+v", g)
	}
	h.notify(1, notifyMsg(pid, "READY", "1"))
	wantPhase(t, h, PhaseServing)
}

func TestNotifyFromOtherProcess(t *testing.T) {
	for _, tc := range []struct {
		name      string
		accessAll bool
		sameGroup bool
		ready     bool
	}{
		{"other pid ignored", false, true, false},
		{"access all, same group", true, true, true},
		{"access all, other group", true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) {
				c.Ready = ReadyCheck{Kind: ReadyNotify}
				c.NotifyAccessAll = tc.accessAll
			}).start()
			worker := 4242
			if tc.sameGroup {
				h.rt.groups[worker] = h.proc(1).pid
			}
			h.notify(1, notifyMsg(worker, "READY", "1"))
			if got := h.e.Status().Phase == PhaseServing; got != tc.ready {
				t.Fatalf("ready %v, want %v", got, tc.ready)
			}
		})
	}
}

func TestNotifyReadyIgnoredForOtherChecks(t *testing.T) {
	h := newHarness(t, nil).start() // delay readiness
	h.notify(1, notifyMsg(h.proc(1).pid, "READY", "1"))
	wantPhase(t, h, PhaseStarting)
}

// ---- --on-exit=restart ----

func TestRestartBackoffDoublesAndResets(t *testing.T) {
	h := running(t, func(c *Config) {
		c.OnExit = OnExitRestart
		c.RestartBackoff = time.Second
		c.RestartBackoffMax = 4 * time.Second
		c.RestartReset = time.Minute
	})
	gen := 1
	restartAfter := func(backoff time.Duration) {
		t.Helper()
		h.exitCode(gen, 1)
		wantPhase(t, h, PhaseStarting)
		h.advance(backoff - time.Millisecond)
		if h.started() != gen {
			t.Fatalf("generation %d: restart before its backoff %s", gen, backoff)
		}
		h.advance(time.Millisecond)
		if h.started() != gen+1 {
			t.Fatalf("generation %d: no restart after backoff %s", gen, backoff)
		}
		gen++
	}
	// Restarts that never get ready double the backoff up to the max.
	for _, b := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		restartAfter(b)
	}
	// A run longer than --restart-reset starts over, ready or not.
	h.advance(time.Minute + time.Second)
	restartAfter(time.Second)
	restartAfter(2 * time.Second)
	// So does a restart that got ready.
	h.ready(gen)
	restartAfter(time.Second)
	if h.e.Restarts() != 7 {
		t.Fatalf("restarts %d, want 7", h.e.Restarts())
	}
	if p := h.proc(gen); p.spec.Path != "/app/server-v1" || !p.spec.Foreground {
		t.Fatalf("restart spec %+v", p.spec)
	}
}

func TestShutdownDuringRestartBackoff(t *testing.T) {
	h := running(t, func(c *Config) { c.OnExit = OnExitRestart })
	h.exitCode(1, 9)
	h.signal(syscall.SIGTERM)
	if code := h.wait(); code != 9 {
		t.Fatalf("exit code %d, want 9", code)
	}
	h.rt.advance(time.Hour)
	if h.started() != 1 {
		t.Fatal("restarted after shutdown")
	}
}

func TestRestartFailureShutsDown(t *testing.T) {
	h := running(t, func(c *Config) { c.OnExit = OnExitRestart })
	h.rt.startErr["/app/server-v1"] = errors.New("fork: resource temporarily unavailable")
	h.exitCode(1, 0)
	h.advance(h.e.cfg.RestartBackoff)
	if code := h.wait(); code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
}

// ---- the state table ----

func TestGenerationStateMoves(t *testing.T) {
	all := []GenState{GenStarting, GenServing, GenDraining, GenExited, GenFailed}
	legal := map[[2]GenState]bool{
		{GenStarting, GenServing}: true, {GenStarting, GenFailed}: true,
		{GenServing, GenDraining}: true, {GenServing, GenExited}: true,
		{GenDraining, GenExited}: true,
	}
	saved := illegalMove
	defer func() { illegalMove = saved }()
	e := &Engine{log: testConfig(t).Log}
	for _, from := range all {
		for _, to := range all {
			var caught bool
			illegalMove = func(*Engine, *generation, GenState) { caught = true }
			g := &generation{id: 1, state: from}
			e.setState(g, to)
			if ok := legal[[2]GenState{from, to}]; ok == caught {
				t.Errorf("%s → %s: legal %v, caught %v", from, to, ok, caught)
			} else if ok && g.state != to || !ok && g.state != from {
				t.Errorf("%s → %s: state %s", from, to, g.state)
			}
		}
	}
}

func TestNoWritableRuntimeDir(t *testing.T) {
	// On a read-only root with no writable mount, hotswap still runs like
	// tini when nothing but the control socket needs a file; sd_notify
	// readiness cannot work without one, so that is refused up front.
	cfg := testConfig(t)
	cfg.RuntimeDir = "/proc/hotswap-test-no-such-dir"
	if _, err := NewWithRuntime(cfg, newFakeRuntime()); err != nil {
		t.Fatalf("delay readiness without a runtime dir: %v", err)
	}
	cfg.Ready = ReadyCheck{Kind: ReadyNotify}
	if _, err := NewWithRuntime(cfg, newFakeRuntime()); err == nil {
		t.Fatal("notify readiness without a runtime dir: want an error")
	}
}

// ---- reuseport steering ----

// TestReuseportStopsOldOnlyAfterCutover: in reuseport mode the old
// generation gets its stop signal only once the cutover says its sockets
// hold nothing (closing them earlier resets what they hold); the groups
// are read before the new generation starts and taken over when the first
// is ready; with --reuseport-steer=off the old one stops at once.
func TestReuseportStopsOldOnlyAfterCutover(t *testing.T) {
	h := running(t, func(c *Config) { c.Mode = ModeReuseport })
	if !slices.Equal(h.rt.steerMarks, []bool{true}) {
		t.Fatalf("first generation ready: SteerMark calls %v, want [true]", h.rt.steerMarks)
	}
	h.rt.holdSteer = true
	h.requestSwap("control")
	if !slices.Equal(h.rt.steerMarks, []bool{true, true}) {
		t.Fatalf("swap: SteerMark calls %v, want [true true] (read before generation 2 starts)", h.rt.steerMarks)
	}
	h.ready(2)
	wantSignals(t, h.proc(1)) // steering: not yet
	if st := h.e.Status(); st.Generation != 1 || st.LastSwap != nil {
		t.Fatalf("swap completed before the cutover: %+v", st)
	}
	if len(h.rt.steerDone) != 1 {
		t.Fatalf("%d cutovers, want 1", len(h.rt.steerDone))
	}
	h.rt.steerDone[0](nil)
	h.settle()
	wantSignals(t, h.proc(1), syscall.SIGTERM)
	if st := h.e.Status(); st.Generation != 2 || st.LastSwap == nil || st.LastSwap.Result != ResultSucceeded {
		t.Fatalf("after the cutover: %+v", st)
	}

	off := running(t, func(c *Config) { c.Mode = ModeReuseport; c.ReuseportSteer = SteerOff })
	off.rt.holdSteer = true
	off.requestSwap("control")
	off.ready(2)
	wantSignals(t, off.proc(1), syscall.SIGTERM)
	if len(off.rt.steerMarks) != 0 || len(off.rt.steerDone) != 0 {
		t.Fatalf("--reuseport-steer=off: %d marks, %d cutovers, want none", len(off.rt.steerMarks), len(off.rt.steerDone))
	}
}

// TestReuseportNewGenerationExitsDuringCutover: a new generation that dies
// while the cutover waits fails the swap; the old one keeps serving and
// the late cutover changes nothing.
func TestReuseportNewGenerationExitsDuringCutover(t *testing.T) {
	h := running(t, func(c *Config) { c.Mode = ModeReuseport })
	h.rt.holdSteer = true
	h.requestSwap("control")
	h.ready(2)
	h.exitCode(2, 1)
	h.rt.steerDone[0](nil)
	h.settle()
	wantSignals(t, h.proc(1))
	if st := h.e.Status(); st.Generation != 1 || st.LastSwap == nil || st.LastSwap.Result != ResultFailed {
		t.Fatalf("after the new generation died mid-cutover: %+v", st)
	}
}
