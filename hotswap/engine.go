package hotswap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hotswap-dev/hotswap/entrypoint"
	"github.com/hotswap-dev/hotswap/reuseport/activation"
	"github.com/hotswap-dev/hotswap/reuseport/handoff"
)

// ErrShuttingDown is the reason of swaps refused or canceled by shutdown.
var ErrShuttingDown = errors.New("hotswap is shutting down")

// Engine owns the generations and runs the swap state machine. All state
// changes happen on the goroutine of Run; other goroutines talk to it
// through channels, so there is exactly one place where a generation moves.
type Engine struct {
	cfg    Config
	reaper *entrypoint.Reaper
	log    *slog.Logger

	listeners []activation.NamedListener
	runDir    string
	baseEnv   []string

	reqs   chan swapReq
	events chan any
	done   chan struct{}

	restarts atomic.Uint64 // --on-exit=restart restarts, for metrics

	mu     sync.Mutex // guards status
	status Status

	// Owned by the Run goroutine.
	gens       []*generation
	serving    *generation
	lastGen    int
	current    Release
	previous   Release     // the release before the last successful swap
	swappedIn  *generation // the generation that last took over by a swap
	swap       *swapRun
	queued     *swapRun
	lastFailed *Release
	swapID     uint64
	stopping   bool
	exitCode   int
	backoff    time.Duration
	restartAt  *time.Timer
}

// swapReq asks for a swap. A nil release restarts the current one.
type swapReq struct {
	trigger string
	release *Release
	force   bool // a signal or `hotswap swap`: swap even if nothing changed
	reply   chan SwapResult
}

// swapRun is one swap from acceptance to outcome; queued requests fold into
// the next run, so a storm of triggers is a handful of swaps.
type swapRun struct {
	id      uint64
	trigger string
	release *Release
	force   bool
	started time.Time
	waiters []chan SwapResult
	gen     *generation // nil while verifying
	timer   *time.Timer
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
)

// New prepares an engine: it validates cfg, binds the listeners and creates
// the runtime directory. Nothing is started until Run.
func New(cfg Config, reaper *entrypoint.Reaper) (*Engine, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:    cfg,
		reaper: reaper,
		log:    cfg.Log,
		reqs:   make(chan swapReq, 64),
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
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "HOTSWAP_GENERATION", "HOTSWAP_VERSION", handoff.SocketEnv:
			continue // ours to set per generation; never leak a stale one
		}
		e.baseEnv = append(e.baseEnv, kv)
	}
	dir, err := runtimeDir(cfg.RuntimeDir)
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
	e.status = Status{Phase: PhaseStarting}
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
	case e.reqs <- swapReq{trigger: trigger, force: true, reply: reply}:
	case <-e.done:
		return SwapResult{}, ErrShuttingDown
	case <-ctx.Done():
		return SwapResult{}, ctx.Err()
	}
	select {
	case r := <-reply:
		return r, nil
	case <-ctx.Done():
		return SwapResult{}, ctx.Err()
	}
}

// Offer hands the engine a release a source found. It swaps only if the
// release differs from the serving one and from the last one that failed;
// it does not wait for the outcome.
func (e *Engine) Offer(r Release) {
	select {
	case e.reqs <- swapReq{trigger: "source:" + r.Source, release: &r}:
	case <-e.done:
	}
}

// Reject records that a source found a release it could not even offer (a
// manifest that does not parse, a file that vanished), so `hotswap status`
// and a ReleaseRejected event say why no swap happened. Serving is untouched.
func (e *Engine) Reject(source, reason string) {
	e.post(rejectEvent{source: source, reason: reason})
}

// Run starts the first generation and supervises until shutdown; it returns
// the exit code hotswap should exit with. ctx's cancellation is a shutdown,
// like SIGTERM.
func (e *Engine) Run(ctx context.Context) int {
	defer close(e.done)
	defer e.closeListeners()
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, entrypoint.CatchSignals()...)
	defer signal.Stop(sigs)
	entrypoint.IgnoreTTYSignals()

	if e.cfg.Mode == ModeReuseport {
		e.checkMigrateReq()
	}
	cctx, cancelControl := context.WithCancel(context.Background())
	defer cancelControl()
	if closeControl, err := e.serveControl(cctx); err != nil {
		// Serving matters more than the control socket: say so and go on.
		e.log.Warn("no control socket; `hotswap swap` will not work, the swap signal still does", "err", err)
	} else {
		defer closeControl()
	}
	g, err := e.startGeneration(e.current, true)
	if err != nil {
		e.log.Error("cannot start the command", "err", err)
		var se *entrypoint.StartError
		if errors.As(err, &se) {
			return se.ExitCode()
		}
		return 1
	}
	e.serving = g
	e.publish(StatusChanged, fmt.Sprintf("started generation %d", g.id), false)

	var stopTick <-chan time.Time
	var graceTimer <-chan time.Time
	var killedAt time.Time
	ctxDone := ctx.Done()
	for {
		if e.stopping && e.allGone() {
			e.publish(StatusChanged, "stopped", false)
			return e.exitCode
		}
		if e.stopping && !killedAt.IsZero() && time.Since(killedAt) > 2*time.Second {
			e.log.Error("processes survived SIGKILL; exiting anyway")
			return e.exitCode
		}
		select {
		case <-ctxDone:
			ctxDone = nil
			e.beginShutdown("context canceled")
			stopTick, graceTimer = e.shutdownTimers()
		case s := <-sigs:
			sig := s.(syscall.Signal)
			switch {
			case sig == syscall.SIGTERM || sig == syscall.SIGINT:
				// --rewrite applies to the shutdown signal too, as in
				// dumb-init: TERM:QUIT stops every generation with QUIT
				// (nginx's graceful stop); TERM:0 ignores TERM, leaving the
				// kubelet's SIGKILL after the grace period to end the pod.
				to, ok := e.cfg.Rewrite.Apply(sig)
				if !ok {
					e.log.Info("ignoring signal, as --rewrite asks", "signal", entrypoint.SignalName(sig))
					continue
				}
				if to != sig {
					e.cfg.StopSignal = to
				}
				if !e.stopping {
					e.beginShutdown("received " + entrypoint.SignalName(sig))
					stopTick, graceTimer = e.shutdownTimers()
				}
			case sig == e.cfg.SwapSignal:
				e.request(swapReq{trigger: "signal", force: true})
			default:
				e.forward(sig)
			}
		case r := <-e.reqs:
			e.request(r)
		case ev := <-e.events:
			e.handle(ev)
		case <-stopTick:
		case <-graceTimer:
			graceTimer = nil
			killedAt = time.Now()
			e.killEverything()
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

func (e *Engine) shutdownTimers() (<-chan time.Time, <-chan time.Time) {
	return time.NewTicker(50 * time.Millisecond).C, time.After(e.cfg.Grace)
}

// forward passes a signal to the serving generation's group, rewritten.
func (e *Engine) forward(sig syscall.Signal) {
	to, ok := e.cfg.Rewrite.Apply(sig)
	if !ok || e.serving == nil || e.serving.proc.Exited() && e.serving.state != GenServing {
		return
	}
	if err := e.serving.proc.Signal(to); err != nil && !errors.Is(err, entrypoint.ErrDone) {
		e.log.Warn("forward signal", "signal", entrypoint.SignalName(to), "generation", e.serving.id, "err", err)
		return
	}
	e.log.Debug("forwarded signal", "signal", entrypoint.SignalName(to), "received", entrypoint.SignalName(sig), "generation", e.serving.id)
}

// request folds a swap request into the running or queued swap, or starts one.
func (e *Engine) request(r swapReq) {
	if e.stopping {
		if r.reply != nil {
			r.reply <- SwapResult{Trigger: r.trigger, Result: ResultCanceled, Reason: ErrShuttingDown.Error()}
		}
		return
	}
	if !r.force && r.release != nil {
		if e.releaseIsKnown(*r.release) {
			return
		}
	}
	if e.queued == nil {
		e.queued = &swapRun{trigger: r.trigger}
	} else if !strings.Contains(e.queued.trigger, r.trigger) {
		e.queued.trigger += "," + r.trigger
	}
	if r.release != nil {
		e.queued.release = r.release // the latest release wins
	}
	e.queued.force = e.queued.force || r.force
	if r.reply != nil {
		e.queued.waiters = append(e.queued.waiters, r.reply)
	}
	e.maybeStartSwap()
}

// releaseIsKnown reports whether an offered release is already serving,
// being swapped in, queued, or the last one that failed.
func (e *Engine) releaseIsKnown(r Release) bool {
	if e.current.Same(r) && e.serving != nil {
		return true
	}
	if e.swap != nil && e.swap.release != nil && e.swap.release.Same(r) {
		return true
	}
	if e.queued != nil && e.queued.release != nil && e.queued.release.Same(r) {
		return true
	}
	if e.lastFailed != nil && e.lastFailed.Same(r) {
		e.log.Debug("ignoring release that failed before; waiting for a change or a forced swap", "release", r.String())
		return true
	}
	return false
}

// maybeStartSwap starts the queued swap when nothing else runs, a generation
// serves, and the bound on live generations allows another.
func (e *Engine) maybeStartSwap() {
	if e.swap != nil || e.queued == nil || e.stopping {
		return
	}
	if e.serving == nil || e.serving.state != GenServing {
		return // first generation not ready yet (or restarting): wait for it
	}
	if len(e.gens) >= e.cfg.MaxGenerations {
		e.log.Info("swap waits for a draining generation to exit", "live", len(e.gens), "max", e.cfg.MaxGenerations)
		return
	}
	run := e.queued
	e.queued = nil
	e.swapID++
	run.id = e.swapID
	run.started = time.Now()
	e.swap = run
	rel := e.current
	if run.release != nil {
		rel = *run.release
	}
	e.publish(SwapStarted, fmt.Sprintf("swap %d (%s): starting %s", run.id, run.trigger, rel.String()), false)
	verify := e.cfg.Verify
	go func() {
		resolved, err := resolveRelease(rel)
		if err == nil && verify != nil {
			err = verify(context.Background(), resolved)
		}
		e.post(verifiedEvent{run: run, rel: resolved, err: err})
	}()
}

// resolveRelease looks a relative command up in $PATH, as a shell would.
func resolveRelease(r Release) (Release, error) {
	if !strings.Contains(r.Path, "/") {
		p, err := exec.LookPath(r.Path)
		if err != nil {
			return r, fmt.Errorf("resolve %s: %w", r.Path, err)
		}
		r.Path = p
	}
	return r, nil
}

func (e *Engine) handle(ev any) {
	switch ev := ev.(type) {
	case verifiedEvent:
		e.onVerified(ev)
	case readyEvent:
		e.onReady(ev.g)
	case exitEvent:
		e.onExit(ev.g)
	case startTimeoutEvent:
		if e.swap == ev.run && ev.run.gen != nil && ev.run.gen.state == GenStarting {
			e.stopUnready(ev.run.gen)
			e.failSwap(ev.run, fmt.Sprintf("not ready within --start-timeout %s", e.cfg.StartTimeout))
		}
	case drainDeadlineEvent:
		if !ev.g.proc.Exited() || ev.g.state == GenDraining {
			e.log.Warn("drain deadline passed; killing the generation's process group", "generation", ev.g.id, "pid", ev.g.proc.PID, "drain_timeout", e.cfg.DrainTimeout)
		}
		_ = ev.g.proc.Kill() // also any grandchild left in the group
	case notifyEvent:
		e.onNotify(ev.g, ev.msg)
	case restartEvent:
		e.restart()
	case rejectEvent:
		r := SwapResult{Trigger: "source:" + ev.source, Started: time.Now(), Result: ResultRejected, Reason: ev.reason}
		if e.serving != nil {
			r.FromGen, r.FromVersion = e.serving.id, e.serving.release.Version
		}
		e.mu.Lock()
		e.status.LastRejected = &r
		e.mu.Unlock()
		e.publish(ReleaseRejected, fmt.Sprintf("release from %s rejected, serving generation untouched: %s", ev.source, ev.reason), true)
	}
}

func (e *Engine) onVerified(ev verifiedEvent) {
	run := ev.run
	if e.swap != run {
		return
	}
	if e.stopping {
		e.finishSwap(run, SwapResult{Result: ResultCanceled, Reason: ErrShuttingDown.Error()})
		return
	}
	if ev.err != nil {
		rel := ev.rel
		e.lastFailed = &rel
		e.finishSwap(run, SwapResult{Result: ResultRejected, Reason: ev.err.Error(), ToVersion: rel.Version})
		return
	}
	g, err := e.startGeneration(ev.rel, false)
	if err != nil {
		rel := ev.rel
		e.lastFailed = &rel
		e.finishSwap(run, SwapResult{Result: ResultFailed, Reason: err.Error(), ToVersion: rel.Version})
		return
	}
	run.gen = g
	run.timer = time.AfterFunc(e.cfg.StartTimeout, func() { e.post(startTimeoutEvent{run: run}) })
	e.publish(StatusChanged, fmt.Sprintf("generation %d started (pid %d), waiting for readiness (%s)", g.id, g.proc.PID, e.cfg.Ready), false)
}

func (e *Engine) onReady(g *generation) {
	if g.state != GenStarting {
		return
	}
	g.ready()
	e.handoffTo(g) // before any stop signal: older generations learn where to send
	if e.swap == nil || e.swap.gen != g {
		// The first generation, or a restart: nothing to drain.
		e.setServing(g)
		e.backoff = 0
		e.publish(StatusChanged, fmt.Sprintf("generation %d ready and serving", g.id), false)
		e.maybeStartSwap()
		return
	}
	old := e.serving
	e.setServing(g)
	e.swappedIn = g
	e.previous = e.current
	e.current = g.release
	e.lastFailed = nil
	if old != nil && old.state == GenServing {
		e.drain(old)
	}
	res := SwapResult{Result: ResultSucceeded, ToVersion: g.release.Version, ToGen: g.id}
	if old != nil {
		res.FromGen, res.FromVersion = old.id, old.release.Version
	}
	e.finishSwap(e.swap, res)
}

func (e *Engine) setServing(g *generation) {
	g.state = GenServing
	e.serving = g
	if err := entrypoint.SetForeground(g.proc.PID); err != nil {
		e.log.Debug("terminal", "err", err)
	}
}

// drain sends the stop signal and arms the SIGKILL deadline.
func (e *Engine) drain(g *generation) {
	g.state = GenDraining
	e.stop(g, "draining")
}

// stop sends g the stop signal and arms the SIGKILL of its group after
// --drain-timeout.
func (e *Engine) stop(g *generation, msg string) {
	g.drainStart = time.Now()
	if err := g.proc.Signal(e.cfg.StopSignal); err != nil && !errors.Is(err, entrypoint.ErrDone) {
		e.log.Warn("stop signal", "generation", g.id, "err", err)
	}
	time.AfterFunc(e.cfg.DrainTimeout, func() { e.post(drainDeadlineEvent{g: g}) })
	e.log.Info(msg, "generation", g.id, "pid", g.proc.PID, "version", g.release.Version, "signal", entrypoint.SignalName(e.cfg.StopSignal), "kill_after", e.cfg.DrainTimeout)
}

// stopUnready stops a generation that did not become ready in time the way
// a draining one is stopped: the stop signal, then SIGKILL of its group
// after --drain-timeout. It is not ready, but it may already accept on the
// shared socket (servers accept before they report READY=1): a SIGKILL
// would reset every connection it took meanwhile.
func (e *Engine) stopUnready(g *generation) {
	e.stop(g, "stopping a generation that was not ready in time")
}

// failSwap ends a swap whose new generation failed; a generation still
// alive must have been given its stop signal (stopUnready) first.
func (e *Engine) failSwap(run *swapRun, reason string) {
	g := run.gen
	g.state = GenFailed
	rel := g.release
	e.lastFailed = &rel
	e.finishSwap(run, SwapResult{Result: ResultFailed, Reason: reason, ToVersion: rel.Version, ToGen: g.id})
}

// finishSwap records the outcome, answers every caller and starts the queued
// swap, if any.
func (e *Engine) finishSwap(run *swapRun, res SwapResult) {
	if run.timer != nil {
		run.timer.Stop()
	}
	res.ID = run.id
	res.Trigger = run.trigger
	res.Started = run.started
	res.Duration = time.Since(run.started)
	if res.FromGen == 0 && e.serving != nil && res.Result != ResultSucceeded {
		res.FromGen, res.FromVersion = e.serving.id, e.serving.release.Version
	}
	e.swap = nil
	typ, warn := SwapSucceeded, false
	var msg string
	switch res.Result {
	case ResultSucceeded:
		msg = fmt.Sprintf("swap %d: generation %d (%s) serving after %s", run.id, res.ToGen, res.ToVersion, res.Duration.Round(time.Millisecond))
	case ResultRejected:
		typ, warn = ReleaseRejected, true
		msg = fmt.Sprintf("swap %d: release rejected, generation %d keeps serving: %s", run.id, res.FromGen, res.Reason)
	case ResultCanceled:
		typ = StatusChanged
		msg = fmt.Sprintf("swap %d canceled: %s", run.id, res.Reason)
	default:
		typ, warn = SwapFailed, true
		msg = fmt.Sprintf("swap %d failed, rolled back: generation %d keeps serving: %s", run.id, res.FromGen, res.Reason)
	}
	e.mu.Lock()
	r := res
	if res.Result == ResultRejected && strings.HasPrefix(run.trigger, "source:") {
		e.status.LastRejected = &r
	} else {
		e.status.LastSwap = &r
	}
	e.mu.Unlock()
	e.publish(typ, msg, warn)
	for _, w := range run.waiters {
		w <- res
	}
	e.maybeStartSwap()
}

func (e *Engine) onExit(g *generation) {
	st := g.proc.Status()
	prev := g.state
	if g.state == GenStarting {
		g.state = GenFailed
	} else {
		g.state = GenExited
	}
	e.removeGen(g)
	attrs := []any{"generation", g.id, "pid", g.proc.PID, "version", g.release.Version, "status", st.String()}
	switch {
	case e.swap != nil && e.swap.gen == g:
		e.failSwap(e.swap, "new generation exited before it was ready: "+st.String())
		return
	case prev == GenDraining:
		e.log.Info("drained", append(attrs, "drain", time.Since(g.drainStart).Round(time.Millisecond))...)
		e.publish(StatusChanged, fmt.Sprintf("generation %d exited after drain (%s)", g.id, st), false)
		e.maybeStartSwap()
		return
	case g != e.serving:
		e.publish(StatusChanged, fmt.Sprintf("generation %d exited (%s)", g.id, st), false)
		return
	}
	// The serving (or first, still starting) generation exited on its own.
	e.exitCode = st.Code()
	if e.stopping {
		e.publish(StatusChanged, fmt.Sprintf("serving generation %d exited during shutdown (%s)", g.id, st), false)
		return
	}
	e.publish(ChildExited, fmt.Sprintf("serving generation %d exited on its own: %s", g.id, st), st.Code() != 0)
	justSwapped := g == e.swappedIn && time.Since(g.readyAt) < e.cfg.RollbackWindow
	if e.previous.Path != "" && (e.drainingCount() > 0 || justSwapped) {
		// It died while its predecessor still drains, or within
		// --rollback-window of taking over (with --handoff-keepalive the
		// old one is gone within milliseconds): the swap did not hold. Roll back to the previous release at once — even when it is
		// the same release (a swap that restarts the command): what the old
		// generation ran was serving a moment ago, while exiting would take
		// the pod down. In handoff mode the shared accept queue keeps new
		// connections waiting meanwhile. previous is cleared, so a second
		// death follows --on-exit.
		if rel := g.release; !e.previous.Same(rel) {
			e.lastFailed = &rel
		}
		e.log.Warn("new generation died right after the swap; rolling back", append(attrs, "to", e.previous.String())...)
		e.current, e.previous = e.previous, Release{}
		e.restartNow()
		return
	}
	if e.cfg.OnExit == OnExitRestart {
		e.scheduleRestart(g)
		return
	}
	e.beginShutdown("serving generation exited: " + st.String())
}

func (e *Engine) scheduleRestart(g *generation) {
	e.restarts.Add(1)
	if time.Since(g.proc.Started) > e.cfg.RestartReset {
		e.backoff = 0
	}
	if e.backoff == 0 {
		e.backoff = e.cfg.RestartBackoff
	} else {
		e.backoff = min(2*e.backoff, e.cfg.RestartBackoffMax)
	}
	e.log.Info("restarting in place", "after", e.backoff, "release", e.current.String())
	e.serving = nil
	e.restartAt = time.AfterFunc(e.backoff, func() { e.post(restartEvent{}) })
	e.snapshot() // status shows Starting (derived from restartAt) during the backoff
}

func (e *Engine) restartNow() {
	e.serving = nil
	e.restart()
}

func (e *Engine) restart() {
	if e.stopping || e.serving != nil {
		return
	}
	g, err := e.startGeneration(e.current, true)
	if err != nil {
		e.log.Error("restart failed", "err", err)
		e.exitCode = 1
		e.beginShutdown("cannot restart: " + err.Error())
		return
	}
	e.serving = g
	e.publish(StatusChanged, fmt.Sprintf("restarted as generation %d", g.id), false)
}

func (e *Engine) onNotify(g *generation, m activation.NotifyMessage) {
	if !e.notifyAllowed(g, m.PID) {
		e.log.Warn("ignoring sd_notify message from a process that is not the generation's main process", "generation", g.id, "sender_pid", m.PID, "main_pid", g.proc.PID)
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
	if pid == g.proc.PID {
		return true
	}
	return e.cfg.NotifyAccessAll && entrypoint.ProcessGroup(pid) == g.proc.PID
}

// beginShutdown stops every generation and every straggler with the stop
// signal; Run's loop exits when all are gone or kills them after --grace.
func (e *Engine) beginShutdown(reason string) {
	if e.stopping {
		return
	}
	e.stopping = true
	e.log.Info("shutting down", "reason", reason, "grace", e.cfg.Grace)
	if e.restartAt != nil {
		e.restartAt.Stop()
	}
	if e.swap != nil {
		run := e.swap
		if run.gen != nil {
			run.gen.state = GenFailed
		}
		e.finishSwap(run, SwapResult{Result: ResultCanceled, Reason: ErrShuttingDown.Error()})
	}
	if e.queued != nil {
		run := e.queued
		e.queued = nil
		for _, w := range run.waiters {
			w <- SwapResult{Trigger: run.trigger, Result: ResultCanceled, Reason: ErrShuttingDown.Error()}
		}
	}
	groups := map[int]bool{}
	for _, g := range e.gens {
		groups[g.proc.PID] = true
		if g.state == GenDraining {
			continue // has its stop signal already
		}
		if err := g.proc.Signal(e.cfg.StopSignal); err != nil && !errors.Is(err, entrypoint.ErrDone) {
			e.log.Warn("stop signal", "generation", g.id, "err", err)
		}
	}
	// Processes that left their group (setsid daemons, orphans) get the
	// stop signal too, so none is cut off by the final SIGKILL unwarned.
	if n, err := entrypoint.SignalStragglers(e.cfg.StopSignal, groups); err != nil {
		e.log.Warn("signal stragglers", "err", err)
	} else if n > 0 {
		e.log.Info("sent stop signal to processes outside the generations", "count", n)
	}
	e.publish(StatusChanged, "shutting down: "+reason, false)
}

func (e *Engine) killEverything() {
	e.log.Warn("grace period over; killing what is left", "grace", e.cfg.Grace)
	for _, g := range e.gens {
		_ = g.proc.Kill()
	}
	if _, err := entrypoint.SignalStragglers(syscall.SIGKILL, nil); err != nil {
		e.log.Warn("kill stragglers", "err", err)
	}
}

// allGone reports whether no generation and no straggler is left.
func (e *Engine) allGone() bool {
	if len(e.gens) > 0 {
		return false
	}
	left, err := entrypoint.Stragglers(nil)
	return err != nil || len(left) == 0
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
func (e *Engine) publish(t EventType, msg string, warning bool) {
	st := e.snapshot()
	level := slog.LevelInfo
	if warning {
		level = slog.LevelWarn
	}
	e.log.Log(context.Background(), level, msg, "event", string(t), "phase", string(st.Phase), "generation", st.Generation, "version", st.Version, "pid", st.PID)
	ev := Event{Type: t, Time: time.Now(), Message: msg, Warning: warning, Status: st}
	for _, o := range e.cfg.Observers {
		o.Observe(ev)
	}
}

func (e *Engine) snapshot() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := &e.status
	s.Generations = s.Generations[:0]
	for _, g := range e.gens {
		s.Generations = append(s.Generations, g.statusOf())
	}
	s.Swaps = e.swapID
	switch {
	case e.stopping:
		s.Phase = PhaseStopping
	case e.serving != nil && e.serving.state == GenServing && e.swap != nil:
		s.Phase = PhaseSwapping
	case e.serving != nil && e.serving.state == GenServing:
		s.Phase = PhaseServing
	case e.serving != nil || e.restartAt != nil:
		s.Phase = PhaseStarting
	default:
		s.Phase = PhaseFailed
	}
	if e.serving != nil && e.serving.state == GenServing {
		s.Generation, s.Version, s.PID = e.serving.id, e.serving.release.Version, e.serving.proc.PID
	} else if !e.stopping {
		s.Generation, s.Version, s.PID = 0, "", 0
	}
	out := *s
	out.Generations = append([]GenerationStatus(nil), s.Generations...)
	return out
}

// runtimeDir picks the directory for sockets: the configured one, else
// /run/hotswap, else a per-user directory under $TMPDIR, so hotswap works as
// non-root and on a read-only root filesystem with any writable mount.
func runtimeDir(want string) (string, error) {
	cands := []string{want}
	if want == "" {
		cands = []string{"/run/hotswap", filepath.Join(os.TempDir(), fmt.Sprintf("hotswap-%d", os.Getuid()))}
	}
	var errs []error
	for _, d := range cands {
		if err := os.MkdirAll(d, 0o700); err != nil {
			errs = append(errs, err)
			continue
		}
		probe := filepath.Join(d, fmt.Sprintf(".probe-%d", os.Getpid()))
		l, err := net.Listen("unix", probe)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s not writable: %w", d, err))
			continue
		}
		l.Close()
		return d, nil
	}
	return "", fmt.Errorf("no writable runtime directory for the control socket (tried %s): %w; mount an emptyDir at /run/hotswap or set --runtime-dir", strings.Join(cands, ", "), errors.Join(errs...))
}
