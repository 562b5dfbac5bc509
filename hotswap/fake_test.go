package hotswap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/entrypoint"
	"github.com/hotswap-dev/hotswap/internal/tinyshim"
	"github.com/hotswap-dev/hotswap/reuseport/activation"
	"github.com/hotswap-dev/hotswap/reuseport/groupsteer"
)

// fakeRuntime is the engine's Runtime for unit tests: processes are
// records the test ends explicitly, time moves only when the test calls
// advance, readiness passes only when the test calls ready, and background
// work (verification) runs only when the test settles. Every callback into
// the engine happens on the test's goroutine (or, for SIGKILL, on Run's),
// before the call that caused it returns, so a test can wait for the
// engine to be idle (settle) and then look.
type fakeRuntime struct {
	mu       sync.Mutex
	now      time.Time
	seq      int
	timers   []*fakeTimer
	procs    []*fakeProc
	nextPID  int
	startErr map[string]error // by path: Start fails
	probes   map[int]func()   // generation → its ready callback
	checks   []ReadyCheck     // every probe started
	bg       []func()

	stragglers []int            // pids outside the generations
	strSigs    []syscall.Signal // signals sent to the stragglers
	strSkips   []map[int]bool   // the skip sets they were sent with
	groups     map[int]int      // pid → process group, for ProcessGroup
	foreground []int            // SetForeground calls

	steerMarks []bool         // SteerMark calls (quiet)
	holdSteer  bool           // SteerCutover keeps done for the test to call
	steerDone  []func(error)  // held cutovers
	shim       *tinyshim.Shim // ExecShim; nil: the self re-exec
}

func newFakeRuntime() *fakeRuntime {
	return &fakeRuntime{
		now:      time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC),
		nextPID:  100,
		startErr: map[string]error{},
		probes:   map[int]func(){},
		groups:   map[int]int{},
	}
}

type fakeTimer struct {
	rt      *fakeRuntime
	when    time.Time
	seq     int
	f       func()
	stopped bool
	fired   bool
}

func (t *fakeTimer) Stop() bool {
	t.rt.mu.Lock()
	defer t.rt.mu.Unlock()
	was := !t.stopped && !t.fired
	t.stopped = true
	return was
}

type fakeProc struct {
	rt      *fakeRuntime
	pid     int
	spec    entrypoint.Spec
	started time.Time
	exited  func()

	// guarded by rt.mu
	sigs       []syscall.Signal
	done       bool
	status     entrypoint.ExitStatus
	ignoreKill bool // a process in uninterruptible sleep
}

// OpenBinary opens nothing: fake releases have no file, and start by path.
func (f *fakeRuntime) OpenBinary(string) (*Binary, error) { return nil, nil }

func (p *fakeProc) PID() int           { return p.pid }
func (p *fakeProc) Started() time.Time { return p.started }

func (p *fakeProc) Signal(sig syscall.Signal) error {
	p.rt.mu.Lock()
	if p.done {
		p.rt.mu.Unlock()
		return entrypoint.ErrDone
	}
	p.sigs = append(p.sigs, sig)
	dies := sig == syscall.SIGKILL && !p.ignoreKill
	if dies {
		p.done, p.status = true, entrypoint.ExitStatus{Signal: syscall.SIGKILL}
	}
	p.rt.mu.Unlock()
	if dies {
		p.exited()
	}
	return nil
}

func (p *fakeProc) Kill() error { return p.Signal(syscall.SIGKILL) }

func (p *fakeProc) Exited() bool {
	p.rt.mu.Lock()
	defer p.rt.mu.Unlock()
	return p.done
}

func (p *fakeProc) Status() entrypoint.ExitStatus {
	p.rt.mu.Lock()
	defer p.rt.mu.Unlock()
	return p.status
}

// end makes the process exit with st (no-op if it already did).
func (p *fakeProc) end(st entrypoint.ExitStatus) {
	p.rt.mu.Lock()
	if p.done {
		p.rt.mu.Unlock()
		return
	}
	p.done, p.status = true, st
	p.rt.mu.Unlock()
	p.exited()
}

// signals is a copy of what the process received.
func (p *fakeProc) signals() []syscall.Signal {
	p.rt.mu.Lock()
	defer p.rt.mu.Unlock()
	return slices.Clone(p.sigs)
}

func (p *fakeProc) env(key string) string {
	for _, kv := range p.spec.Env {
		if len(kv) > len(key) && kv[:len(key)] == key && kv[len(key)] == '=' {
			return kv[len(key)+1:]
		}
	}
	return ""
}

func (r *fakeRuntime) Start(spec entrypoint.Spec, exited func()) (Proc, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.startErr[spec.Path]; err != nil {
		return nil, err
	}
	r.nextPID++
	p := &fakeProc{rt: r, pid: r.nextPID, spec: spec, started: r.now, exited: exited}
	r.procs = append(r.procs, p)
	return p, nil
}

func (r *fakeRuntime) Probe(_ context.Context, check ReadyCheck, t ProbeTarget, ready func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.probes[t.Generation] = ready
	r.checks = append(r.checks, check)
}

func (r *fakeRuntime) Background(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bg = append(r.bg, f)
}

func (r *fakeRuntime) ExecShim() (*tinyshim.Shim, error) {
	if r.shim == nil {
		return nil, errors.New("fake runtime")
	}
	return r.shim, nil
}

func (r *fakeRuntime) Now() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.now
}

func (r *fakeRuntime) AfterFunc(d time.Duration, f func()) Timer {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	t := &fakeTimer{rt: r, when: r.now.Add(d), seq: r.seq, f: f}
	r.timers = append(r.timers, t)
	return t
}

func (r *fakeRuntime) Stragglers(skip map[int]bool) ([]int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	for _, pid := range r.stragglers {
		if !skip[r.groups[pid]] {
			out = append(out, pid)
		}
	}
	return out, nil
}

func (r *fakeRuntime) SignalStragglers(sig syscall.Signal, skip map[int]bool) (int, error) {
	left, _ := r.Stragglers(skip)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.strSigs = append(r.strSigs, sig)
	r.strSkips = append(r.strSkips, skip)
	return len(left), nil
}

func (r *fakeRuntime) ProcessGroup(pid int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.groups[pid]
}

func (r *fakeRuntime) SteerCheck() error { return nil }

func (r *fakeRuntime) SteerMark(quiet bool) groupsteer.Mark {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.steerMarks = append(r.steerMarks, quiet)
	return groupsteer.Mark{}
}

func (r *fakeRuntime) SteerCutover(_ groupsteer.Mark, done func(error)) {
	r.mu.Lock()
	if r.holdSteer {
		r.steerDone = append(r.steerDone, done)
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	done(nil)
}

func (r *fakeRuntime) SetForeground(pgid int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.foreground = append(r.foreground, pgid)
	return nil
}

// advance moves the clock by d, firing every timer that falls due, in order.
func (r *fakeRuntime) advance(d time.Duration) {
	r.mu.Lock()
	end := r.now.Add(d)
	r.mu.Unlock()
	for {
		r.mu.Lock()
		var next *fakeTimer
		for _, t := range r.timers {
			if t.stopped || t.fired || t.when.After(end) {
				continue
			}
			if next == nil || t.when.Before(next.when) || t.when.Equal(next.when) && t.seq < next.seq {
				next = t
			}
		}
		if next == nil {
			r.now = end
			r.mu.Unlock()
			return
		}
		next.fired = true
		if next.when.After(r.now) {
			r.now = next.when
		}
		r.mu.Unlock()
		next.f()
	}
}

func (r *fakeRuntime) takeBackground() []func() {
	r.mu.Lock()
	defer r.mu.Unlock()
	bg := r.bg
	r.bg = nil
	return bg
}

// pendingBackground is how much background work waits to run.
func (r *fakeRuntime) pendingBackground() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bg)
}

// harness runs one engine on a fakeRuntime.
type harness struct {
	t      *testing.T
	e      *Engine
	rt     *fakeRuntime
	rec    *recorder
	sigs   chan os.Signal
	cancel context.CancelFunc
	code   chan int
	ran    bool
	exit   int
	exited bool
}

// recorder keeps every event the engine published.
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

func (r *recorder) last(t EventType) (Event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.events) - 1; i >= 0; i-- {
		if r.events[i].Type == t {
			return r.events[i], true
		}
	}
	return Event{}, false
}

func rel(version string) Release {
	return Release{Path: "/app/server-" + version, Version: version, Source: "test"}
}

// testConfig is the config every engine test starts from: generations are
// ready when the test says so (delay readiness, through the fake Probe).
func testConfig(t *testing.T) Config {
	cfg := Config{
		Release:        rel("v1"),
		Ready:          ReadyCheck{Kind: ReadyDelay, Delay: time.Second},
		StartTimeout:   30 * time.Second,
		DrainTimeout:   20 * time.Second,
		Grace:          25 * time.Second,
		RollbackWindow: 10 * time.Second,
		RuntimeDir:     t.TempDir(),
		Env:            []string{"PATH=/usr/bin:/bin"},
		Log:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if testing.Verbose() {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return cfg
}

// newHarness builds an engine on a fake runtime; start runs it.
func newHarness(t *testing.T, tweak func(*Config)) *harness {
	t.Helper()
	return newHarnessOn(t, newFakeRuntime(), tweak)
}

// newHarnessOn is newHarness on a fake runtime the test prepared.
func newHarnessOn(t *testing.T, rt *fakeRuntime, tweak func(*Config)) *harness {
	t.Helper()
	cfg := testConfig(t)
	if tweak != nil {
		tweak(&cfg)
	}
	h := &harness{t: t, rt: rt, rec: &recorder{}, sigs: make(chan os.Signal), code: make(chan int, 1)}
	cfg.Observers = append(cfg.Observers, h.rec)
	e, err := NewWithRuntime(cfg, h.rt)
	if err != nil {
		t.Fatal(err)
	}
	h.e = e
	t.Cleanup(h.stopForCleanup)
	return h
}

// start runs the engine and waits until it handled its start.
func (h *harness) start() *harness {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.ran = true
	go func() { h.code <- h.e.run(ctx, h.sigs) }()
	h.settle()
	return h
}

// running starts the engine with generation 1 ready and serving.
func running(t *testing.T, tweak func(*Config)) *harness {
	t.Helper()
	h := newHarness(t, tweak).start()
	h.ready(1)
	if st := h.e.Status(); st.Phase != PhaseServing || st.Generation != 1 {
		t.Fatalf("generation 1 not serving: %+v", st)
	}
	return h
}

const hang = 10 * time.Second // a broken engine, not timing: tests never get near it

// settle waits until the engine handled everything posted so far and what
// that caused, running pending background work (verification) on the way.
func (h *harness) settle() {
	h.t.Helper()
	for range 1000 {
		for _, f := range h.rt.takeBackground() {
			f()
		}
		b := make(barrierEvent, 1)
		select {
		case h.e.events <- b:
		case <-h.e.done:
			return
		case <-time.After(hang):
			h.t.Fatal("engine stuck: inbox full")
		}
		var waiting int
		select {
		case waiting = <-b:
		case <-h.e.done:
			return
		case <-time.After(hang):
			h.t.Fatal("engine stuck: barrier not reached")
		}
		if waiting == 0 && h.rt.pendingBackground() == 0 {
			return
		}
	}
	h.t.Fatal("engine never settles")
}

// settleNoBackground is settle without running background work, to hold a
// swap in its verification.
func (h *harness) settleNoBackground() {
	h.t.Helper()
	b := make(barrierEvent, 1)
	h.e.events <- b
	select {
	case <-b:
	case <-h.e.done:
	case <-time.After(hang):
		h.t.Fatal("engine stuck")
	}
}

func (h *harness) signal(sig syscall.Signal) {
	h.t.Helper()
	select {
	case h.sigs <- sig: // unbuffered: Run has it once this returns
	case <-h.e.done:
		h.t.Fatalf("signal %v: engine already ended", sig)
	case <-time.After(hang):
		h.t.Fatal("engine stuck: signal not taken")
	}
	h.settle()
}

func (h *harness) advance(d time.Duration) {
	h.t.Helper()
	h.rt.advance(d)
	h.settle()
}

// proc is generation n's process.
func (h *harness) proc(n int) *fakeProc {
	h.t.Helper()
	h.rt.mu.Lock()
	defer h.rt.mu.Unlock()
	for _, p := range h.rt.procs {
		if p.env("HOTSWAP_GENERATION") == strconv.Itoa(n) {
			return p
		}
	}
	h.t.Fatalf("generation %d was never started", n)
	return nil
}

// started is how many generations have been started.
func (h *harness) started() int {
	h.rt.mu.Lock()
	defer h.rt.mu.Unlock()
	return len(h.rt.procs)
}

// ready makes generation n's readiness probe pass.
func (h *harness) ready(n int) {
	h.t.Helper()
	h.rt.mu.Lock()
	f := h.rt.probes[n]
	h.rt.mu.Unlock()
	if f == nil {
		h.t.Fatalf("generation %d has no readiness probe", n)
	}
	f()
	h.settle()
}

func (h *harness) exitCode(n, code int) {
	h.t.Helper()
	h.proc(n).end(entrypoint.ExitStatus{Status: code})
	h.settle()
}

func (h *harness) exitSignal(n int, sig syscall.Signal) {
	h.t.Helper()
	h.proc(n).end(entrypoint.ExitStatus{Signal: sig})
	h.settle()
}

// requestSwap posts a forced swap, as `hotswap swap` does, and returns where
// its result arrives.
func (h *harness) requestSwap(trigger string) chan SwapResult {
	h.t.Helper()
	reply := make(chan SwapResult, 1)
	h.e.post(swapReq{trigger: trigger, force: true, reply: reply})
	h.settle()
	return reply
}

func (h *harness) offer(r Release) {
	h.t.Helper()
	h.e.Offer(r)
	h.settle()
}

// result is the swap result already delivered on reply.
func (h *harness) result(reply chan SwapResult) SwapResult {
	h.t.Helper()
	select {
	case r := <-reply:
		return r
	default:
		h.t.Fatal("swap has no result yet")
		return SwapResult{}
	}
}

func noResult(t *testing.T, reply chan SwapResult) {
	t.Helper()
	select {
	case r := <-reply:
		t.Fatalf("swap already ended: %+v", r)
	default:
	}
}

// wait is Run's exit code; Run must have returned already.
func (h *harness) wait() int {
	h.t.Helper()
	if h.exited {
		return h.exit
	}
	select {
	case c := <-h.code:
		h.exit, h.exited = c, true
		return c
	case <-time.After(hang):
		h.t.Fatalf("Run did not return; status %+v", h.e.Status())
		return -1
	}
}

func (h *harness) isDone() bool {
	select {
	case <-h.e.done:
		return true
	default:
		return false
	}
}

// stopForCleanup ends a test's engine: everything exits at once.
func (h *harness) stopForCleanup() {
	if !h.ran || h.exited {
		return
	}
	h.cancel()
	for i := 0; i < 100 && !h.isDone(); i++ {
		h.rt.mu.Lock()
		procs := slices.Clone(h.rt.procs)
		h.rt.stragglers = nil
		h.rt.mu.Unlock()
		for _, p := range procs {
			h.rt.mu.Lock()
			p.ignoreKill = false
			h.rt.mu.Unlock()
			p.end(entrypoint.ExitStatus{Signal: syscall.SIGTERM})
		}
		h.rt.advance(time.Second)
		h.settle()
	}
	select {
	case h.exit = <-h.code:
		h.exited = true
	case <-time.After(hang):
		h.t.Error("engine did not stop at cleanup")
	}
}

// gens is the live generations as status shows them: id → state.
func (h *harness) gens() map[int]GenState {
	out := map[int]GenState{}
	for _, g := range h.e.Status().Generations {
		out[g.Generation] = g.State
	}
	return out
}

func (h *harness) wantGens(want map[int]GenState) {
	h.t.Helper()
	got := h.gens()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		h.t.Fatalf("generations %v, want %v", got, want)
	}
}

func sortedSignals(s []syscall.Signal) []syscall.Signal {
	s = slices.Clone(s)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s
}

// TestMain makes an illegal generation state move fatal in every test. The
// test binary is also the exec shim (Config.Self is /proc/self/exe): the
// real-runtime tests start their pinned binaries through it.
func TestMain(m *testing.M) {
	activation.RunShimIfRequested()
	illegalMove = func(_ *Engine, g *generation, to GenState) {
		panic(fmt.Sprintf("illegal generation state move: generation %d %s → %s", g.id, g.state, to))
	}
	os.Exit(m.Run())
}
