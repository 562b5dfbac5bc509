package hotswap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hotswap-dev/hotswap/entrypoint"
	"github.com/hotswap-dev/hotswap/hotswap/listenenv"
	"github.com/hotswap-dev/hotswap/internal/tinyshim"
	"github.com/hotswap-dev/hotswap/internal/upgradesig"
	"github.com/hotswap-dev/hotswap/reuseport/activation"
)

// ErrShuttingDown is the reason of swaps refused or canceled by shutdown.
var ErrShuttingDown = errors.New("hotswap is shutting down")

// Engine owns the generations and runs the swap state machine. All state
// changes happen on the goroutine of Run; other goroutines talk to it
// through one inbox (events), so there is exactly one place where a
// generation moves, and events are handled in the order they were posted.
//
// The code is split by role: this file is the type, its public API and the
// Run loop; pid1.go the init's duties (signals, shutdown, exit code);
// swap.go the swap state machine; generation.go a generation's start and
// life; runtime.go and probe.go the side effects, behind the Runtime seam.
type Engine struct {
	cfg Config
	rt  Runtime
	log *slog.Logger

	listeners []activation.NamedListener
	runDir    string
	baseEnv   []string
	token     string // in socket names: this hotswap's, not another's (pin.go)

	events chan any // the inbox: requests, process events, timers
	done   chan struct{}

	restarts atomic.Uint64 // --on-exit=restart restarts, for metrics

	mu     sync.Mutex // guards status
	status Status

	// Owned by the Run goroutine.
	gens           []*generation
	serving        *generation
	lastGen        int
	current        Release
	previous       Release     // the release before the last successful swap
	swappedIn      *generation // the generation that last took over by a swap
	swap           *swapRun
	queued         *swapRun
	lastFailed     *Release
	lastFailedFile fileStamp // lastFailed's file when it failed (swap.go)
	swapID         uint64
	exitCode       int
	backoff        time.Duration
	restartAt      Timer
	bins           map[*Binary]bool // open release binaries to close (pin.go)
	// offered is the last release each source offered, by Release.Source.
	// It crosses an in-place upgrade, where the sources start again and
	// re-read what they offered before (see ignoreOffer).
	offered map[string]Release
	// unchangedOffers: after an upgrade, each source's first offer is
	// ignored if it is the one it made before the exec.
	unchangedOffers map[string]Release
	shim            *tinyshim.Shim // nil: the self re-exec shim (execshim.go)
	shimWhy         string         // why there is no tiny shim

	// resumed is the state an in-place upgrade handed over (upgrade.go);
	// Run restores from it instead of starting the command.
	resumed     *handover
	resumedGens []resumedGen

	// The running binary's sha256 (selfSHA256) and the last upgrade a
	// source offered (OfferUpgrade); any goroutine.
	selfSum        string
	selfSumOnce    sync.Once
	offeredUpgrade atomic.Pointer[string]

	// steering: reuseport mode steers the server's SO_REUSEPORT groups
	// (swap.go: cutover); decided once in run.
	steering bool

	// Shutdown (pid1.go), owned by the Run goroutine as well.
	stopping bool
	killedAt time.Time // when the grace period ended and SIGKILL went out
}

// Events delivered to the Run goroutine.
type (
	exitEvent     struct{ g *generation }
	readyEvent    struct{ g *generation }
	verifiedEvent struct {
		run *swapRun
		rel Release
		err error
	}
	startTimeoutEvent  struct{ run *swapRun }
	drainDeadlineEvent struct{ g *generation }
	notifyEvent        struct {
		g   *generation
		msg activation.NotifyMessage
	}
	restartEvent struct{}
	rejectEvent  struct{ source, reason string }
	// graceEvent ends the shutdown grace period; pollEvent re-checks
	// whether everything is gone (stragglers send no event when they exit).
	graceEvent struct{}
	pollEvent  struct{}
	// slowStartEvent: a first generation is still not ready after another
	// --start-timeout; slowVerifyEvent: a swap's verification (preflight)
	// still runs after another verifyProgress.
	// steeredEvent: the new generation g takes every new connection and
	// nothing is left on the old one's sockets (err: what was, at the bound).
	steeredEvent struct {
		g   *generation
		err error
	}
	slowStartEvent  struct{ g *generation }
	slowVerifyEvent struct{ run *swapRun }
	// barrierEvent is answered once every event posted before it has been
	// handled, with how many wait behind it: a way to wait for the engine
	// to be idle without sleeping (the tests use it).
	barrierEvent chan int
)

// New prepares an engine on the real runtime: processes start through
// reaper, timers on the wall clock. It validates cfg, binds the listeners
// and creates the runtime directory. Nothing is started until Run.
func New(cfg Config, reaper *entrypoint.Reaper) (*Engine, error) {
	cfg.setDefaults()
	return NewWithRuntime(cfg, NewRuntime(reaper, cfg.Log))
}

// NewWithRuntime is New with every side effect going through rt.
func NewWithRuntime(cfg Config, rt Runtime) (*Engine, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:    cfg,
		rt:     rt,
		log:    cfg.Log,
		events: make(chan any, 64),
		done:   make(chan struct{}),
	}
	if e.cfg.Self == "" {
		// Resolved by the kernel at each exec, in the forked child: it is
		// always the running hotswap, even after /hotswap was replaced or
		// deleted on disk (a new image layer, an init container's copy).
		if _, err := os.Stat("/proc/self/exe"); err != nil {
			return nil, fmt.Errorf("find own binary for the exec shim: %w (is /proc mounted?)", err)
		}
		e.cfg.Self = "/proc/self/exe"
	}
	env := cfg.Env
	if env == nil {
		env = os.Environ()
	}
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); IsHotswapEnv(k) {
			continue // ours to set per generation; never leak a stale one
		}
		e.baseEnv = append(e.baseEnv, kv)
	}
	listenEnv, err := cfg.listenEnv()
	if err != nil {
		return nil, err
	}
	e.baseEnv = listenenv.Override(e.baseEnv, listenEnv)
	e.token = instanceToken()
	if err := checkRuntimeDirFlag(cfg.RuntimeDir); err != nil {
		return nil, err
	}
	dir, err := pickRuntimeDir(cfg.RuntimeDir)
	if err != nil {
		if e.needsRuntimeDir() {
			return nil, err
		}
		// Only the control socket would live there: like tini, run anyway
		// on a read-only root with no writable mount; swaps still work by
		// signal.
		e.log.Warn("no control socket: `hotswap swap` and `hotswap status` will not work here; the swap signal still does", "err", err)
		dir = ""
	}
	e.runDir = dir
	for _, l := range cfg.Listeners {
		network, addr, err := activation.ParseAddr(l.URL)
		if err != nil {
			e.closeListeners()
			return nil, fmt.Errorf("listen %s: %w", l.Name, err)
		}
		ln, err := activation.Listen(context.Background(), network, addr)
		if err != nil {
			e.closeListeners()
			return nil, fmt.Errorf("listen %s=%s: %w", l.Name, l.URL, err)
		}
		e.listeners = append(e.listeners, activation.NamedListener{Name: l.Name, Listener: ln})
	}
	e.current = cfg.Release
	e.status = Status{Phase: PhaseStarting, Hotswap: cfg.HotswapVersion}
	e.initExecShim()
	return e, nil
}

// needsRuntimeDir reports whether serving itself needs socket files:
// sd_notify readiness does; the control socket alone does not.
func (e *Engine) needsRuntimeDir() bool {
	return e.cfg.Ready.Kind == ReadyNotify || e.cfg.HandoffKeepAlive
}

// Restarts is how many times --on-exit=restart restarted the serving child.
func (e *Engine) Restarts() uint64 { return e.restarts.Load() }

// RuntimeDir is where the control and notify sockets live.
func (e *Engine) RuntimeDir() string { return e.runDir }

// Listeners are the sockets hotswap holds for the pod's life.
func (e *Engine) Listeners() []activation.NamedListener { return e.listeners }

// Status is a snapshot of the engine, safe to call from any goroutine.
func (e *Engine) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.status
	s.Generations = append([]GenerationStatus(nil), s.Generations...)
	return s
}

// Swap asks for a swap and waits for its outcome. Triggers coalesce: if a
// swap is running, this request joins the next one, which starts when the
// running one ends; all its callers get the same result.
func (e *Engine) Swap(ctx context.Context, trigger string) (SwapResult, error) {
	reply := make(chan SwapResult, 1)
	select {
	case <-e.done:
		return SwapResult{}, ErrShuttingDown
	default:
	}
	select {
	case e.events <- swapReq{trigger: trigger, force: true, reply: reply}:
	case <-e.done:
		return SwapResult{}, ErrShuttingDown
	case <-ctx.Done():
		return SwapResult{}, ctx.Err()
	}
	select {
	case r := <-reply:
		return r, nil
	case <-e.done:
		// Run ended: a request still in the inbox will never be answered.
		select {
		case r := <-reply:
			return r, nil
		default:
			return SwapResult{}, ErrShuttingDown
		}
	case <-ctx.Done():
		return SwapResult{}, ctx.Err()
	}
}

// Offer hands the engine a release a source found. It swaps only if the
// release differs from the serving one and from the last one that failed;
// it does not wait for the outcome.
func (e *Engine) Offer(r Release) {
	e.post(swapReq{trigger: "source:" + r.Source, release: &r})
}

// Reject records that a source found a release it could not even offer (a
// manifest that does not parse, a file that vanished), so `hotswap status`
// and a ReleaseRejected event say why no swap happened. Serving is untouched.
func (e *Engine) Reject(source, reason string) {
	e.post(rejectEvent{source: source, reason: reason})
}

// Run starts the first generation and supervises until shutdown; it returns
// the exit code hotswap should exit with. ctx's cancellation is a shutdown,
// like SIGTERM. It is the one place hotswap subscribes to signals.
func (e *Engine) Run(ctx context.Context) int {
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, entrypoint.CatchSignals()...)
	defer signal.Stop(sigs)
	entrypoint.IgnoreTTYSignals()
	if e.resumed != nil {
		// Caught since this process's first moment (internal/upgradesig):
		// handled first, after the ones the old hotswap handed over.
		for _, s := range upgradesig.Stop() {
			if sig, ok := s.(syscall.Signal); ok && entrypoint.Forwardable(sig) {
				e.resumed.Signals = append(e.resumed.Signals, int(sig))
			}
		}
	}
	return e.run(ctx, sigs)
}

// run is Run with the signals coming from sigs.
func (e *Engine) run(ctx context.Context, sigs <-chan os.Signal) int {
	defer close(e.done)
	defer e.closeListeners()
	defer e.closeBinaries()
	defer e.closeExecShim()
	e.logExecShim()
	if e.cfg.Mode == ModeReuseport {
		e.checkSteering()
	}
	cctx, cancelControl := context.WithCancel(context.Background())
	defer cancelControl()
	if closeControl, err := e.serveControl(cctx); err != nil {
		// Serving matters more than the control socket: say so and go on.
		e.log.Warn("no control socket; `hotswap swap` will not work, the swap signal still does", "err", err)
	} else {
		defer closeControl()
	}
	if e.resumed != nil {
		e.resume()
	} else if code, ok := e.startFirst(); !ok {
		return code
	}
	ctxDone := ctx.Done()
	for {
		if code, over := e.shutdownOver(); over {
			return code
		}
		select {
		case <-ctxDone:
			ctxDone = nil
			e.beginShutdown("context canceled")
		case s := <-sigs:
			if sig, ok := s.(syscall.Signal); ok {
				e.onSignal(sig)
			}
		case ev := <-e.events:
			if p, ok := ev.(upgradePrepared); ok {
				e.onUpgradePrepared(p, sigs) // execs: needs the signals
				continue
			}
			e.handle(ev)
			e.sweepBinaries()
		}
	}
}

// post delivers an event to the Run goroutine, or drops it once Run ended.
func (e *Engine) post(ev any) {
	select {
	case e.events <- ev:
	case <-e.done:
	}
}

// after posts ev to the Run goroutine once d has passed on the engine's clock.
func (e *Engine) after(d time.Duration, ev any) Timer {
	return e.rt.AfterFunc(d, func() { e.post(ev) })
}

func (e *Engine) handle(ev any) {
	switch ev := ev.(type) {
	case swapReq:
		e.request(ev)
	case verifiedEvent:
		e.onVerified(ev)
	case readyEvent:
		e.onReady(ev.g)
	case exitEvent:
		e.onExit(ev.g)
	case startTimeoutEvent:
		e.onStartTimeout(ev.run)
	case drainDeadlineEvent:
		e.onDrainDeadline(ev.g)
	case notifyEvent:
		e.onNotify(ev.g, ev.msg)
	case restartEvent:
		e.restart()
	case rejectEvent:
		e.onReject(ev.source, ev.reason)
	case upgradeReq:
		e.onUpgradeReq(ev)
	case graceEvent:
		e.onGraceOver()
	case pollEvent:
		e.onShutdownPoll()
	case steeredEvent:
		e.onSteered(ev.g, ev.err)
	case slowStartEvent:
		e.onSlowStart(ev.g)
	case slowVerifyEvent:
		e.onSlowVerify(ev.run)
	case barrierEvent:
		ev <- len(e.events)
	default:
		e.log.Error("BUG: unknown engine event", "event", fmt.Sprintf("%T", ev))
	}
}

func (e *Engine) onReject(source, reason string) {
	r := SwapResult{Trigger: "source:" + source, Started: e.rt.Now(), Result: ResultRejected, Reason: reason}
	if e.serving != nil {
		r.FromGen, r.FromVersion = e.serving.id, e.serving.release.Version
	}
	e.mu.Lock()
	e.status.LastRejected = &r
	e.status.Counts.Rejected++
	e.mu.Unlock()
	e.publish(ReleaseRejected, fmt.Sprintf("release from %s rejected, serving generation untouched: %s", source, reason), true)
}

func (e *Engine) onNotify(g *generation, m activation.NotifyMessage) {
	if !e.notifyAllowed(g, m.PID) {
		e.log.Warn("ignoring sd_notify message from a process that is not the generation's main process", "generation", g.id, "sender_pid", m.PID, "main_pid", g.proc.PID())
		return
	}
	if st, ok := m.Fields["STATUS"]; ok {
		g.statusText = st
		e.snapshot() // visible in `hotswap status`; not an event
	}
	if m.Fields["READY"] == "1" && e.cfg.Ready.Kind == ReadyNotify {
		e.onReady(g)
	}
	if m.Fields["STOPPING"] == "1" {
		e.log.Debug("generation reports stopping", "generation", g.id)
	}
}

func (e *Engine) notifyAllowed(g *generation, pid int) bool {
	if pid == g.proc.PID() {
		return true
	}
	return e.cfg.NotifyAccessAll && e.rt.ProcessGroup(pid) == g.proc.PID()
}

func (e *Engine) drainingCount() int {
	n := 0
	for _, g := range e.gens {
		if g.state == GenDraining {
			n++
		}
	}
	return n
}

func (e *Engine) removeGen(g *generation) {
	for i, x := range e.gens {
		if x == g {
			e.gens = append(e.gens[:i], e.gens[i+1:]...)
			break
		}
	}
	g.close()
}

func (e *Engine) closeListeners() {
	for _, l := range e.listeners {
		_ = l.Listener.Close()
	}
}

// publish refreshes the status snapshot, logs msg and tells every observer.
// The log line's generation, version and pid describe the state after the
// event: the serving generation, or while none serves the newest one (the
// one starting); with no generation left, none.
func (e *Engine) publish(t EventType, msg string, warning bool) {
	st := e.snapshot()
	level := slog.LevelInfo
	if warning {
		level = slog.LevelWarn
	}
	attrs := []any{"event", string(t), "phase", string(st.Phase)}
	switch {
	case st.Generation != 0:
		attrs = append(attrs, "generation", st.Generation, "version", st.Version, "pid", st.PID)
	case len(st.Generations) > 0:
		g := st.Generations[len(st.Generations)-1]
		attrs = append(attrs, "generation", g.Generation, "version", g.Version, "pid", g.PID, "state", string(g.State))
	}
	e.log.Log(context.Background(), level, msg, attrs...)
	e.tell(t, msg, warning, st)
}

// publishLogged is publish for an event whose log line was just written
// with its own attributes (a generation started, drained): one line per
// event, and the observers still hear of it.
func (e *Engine) publishLogged(t EventType, msg string, warning bool) {
	e.tell(t, msg, warning, e.snapshot())
}

func (e *Engine) tell(t EventType, msg string, warning bool, st Status) {
	ev := Event{Type: t, Time: e.rt.Now(), Message: msg, Warning: warning, Status: st}
	for _, o := range e.cfg.Observers {
		o.Observe(ev)
	}
}

// snapshot derives the status from the engine's state; the phase is never
// stored, so it cannot disagree with the generations.
func (e *Engine) snapshot() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := &e.status
	s.Generations = s.Generations[:0]
	for _, g := range e.gens {
		gs := g.statusOf()
		if g.state == GenStarting {
			gs.WaitingFor = e.readyDesc()
		}
		s.Generations = append(s.Generations, gs)
	}
	s.Swaps = e.swapID
	switch {
	case e.stopping:
		s.Phase = PhaseStopping
	case e.serving != nil && e.serving.state == GenServing && e.swap != nil:
		s.Phase = PhaseSwapping
	case e.serving != nil && e.serving.state == GenServing:
		s.Phase = PhaseServing
	case e.serving != nil && e.serving.state == GenStarting || e.restartAt != nil:
		s.Phase = PhaseStarting
	default:
		s.Phase = PhaseFailed
	}
	if e.serving != nil && e.serving.state == GenServing {
		s.Generation, s.Version, s.PID = e.serving.id, e.serving.release.Version, e.serving.proc.PID()
	} else if !e.stopping {
		s.Generation, s.Version, s.PID = 0, "", 0
	}
	out := *s
	out.Generations = append([]GenerationStatus(nil), s.Generations...)
	return out
}

// readyDesc names the readiness check for humans: what a starting
// generation waits for.
func (e *Engine) readyDesc() string {
	if e.cfg.Ready.Kind == ReadyNotify {
		return "READY=1 on NOTIFY_SOCKET"
	}
	return e.cfg.Ready.String()
}
