package hotswap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/hotswap-dev/hotswap/entrypoint"
	"github.com/hotswap-dev/hotswap/reuseport/groupsteer"
)

// The swap state machine. A swap flows one way:
//
//	request → (queued) → verify → start generation N+1 → ready → takeover
//	(N drains) → finishSwap
//
// and ends in failSwap (N+1 exited or was not ready in time; N keeps
// serving) or is canceled by shutdown. At most one swap runs; requests that
// arrive meanwhile fold into one queued swap.

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
	timer   Timer
	mark    groupsteer.Mark // the listening sockets before gen started (reuseport steering)
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
		why := e.ignoreOffer(*r.release)
		if src := r.release.Source; src != "" {
			if e.offered == nil {
				e.offered = map[string]Release{}
			}
			e.offered[src] = *r.release
		}
		if why != "" {
			e.log.Info("ignoring offered release: "+why, "release", r.release.String(), "source", r.release.Source)
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

// ignoreOffer says why an offered release starts no swap ("" when it
// should): it is already serving, being swapped in or queued, or it is the
// one that last failed and nothing changed since. A source that offers
// another release and then this one again has changed its mind twice: the
// release is tried again. So is the same file fixed in place (chmod,
// rewritten): its mode or ctime differs from when it failed. After an
// in-place upgrade, a source's first offer is ignored if it is the one it
// made before (unchangedOffers).
func (e *Engine) ignoreOffer(r Release) string {
	if before, ok := e.unchangedOffers[r.Source]; ok && r.Source != "" {
		// The source's first offer since an in-place upgrade: the new
		// hotswap's sources read again what the old one's had offered. A
		// release it offered before and that was since replaced (by
		// another source's newer release, or a rollback) must not come
		// back by that re-read.
		delete(e.unchangedOffers, r.Source)
		if before.Same(r) {
			return "the source offered it before the upgrade of hotswap, and it has not changed since"
		}
	}
	if e.lastFailed != nil && !e.lastFailed.Same(r) {
		e.lastFailed, e.lastFailedFile = nil, fileStamp{} // the source moved on
	}
	if e.current.Same(r) && e.serving != nil {
		return "same as the serving release"
	}
	if e.swap != nil && e.swap.release != nil && e.swap.release.Same(r) {
		return "a swap to it is running"
	}
	if e.queued != nil && e.queued.release != nil && e.queued.release.Same(r) {
		return "a swap to it is queued"
	}
	if e.lastFailed == nil {
		return ""
	}
	if now := stampOf(r.Path); now != e.lastFailedFile {
		e.log.Info("release that failed before changed on disk since; trying it again", "release", r.String())
		return ""
	}
	return "it failed before and its file has not changed since (fix it in place, publish another release, or force a swap with `hotswap swap`)"
}

// fileStamp is what a fix in place changes about a release's file: its
// mode and its ctime (chmod, chown, a rewrite). The zero value: no file.
type fileStamp struct {
	mode  os.FileMode
	ctime int64
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	st := fileStamp{mode: fi.Mode()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ctime = sys.Ctim.Sec*1e9 + sys.Ctim.Nsec
	}
	return st
}

// setLastFailed remembers rel as the release that last failed, and how its
// file looked then.
func (e *Engine) setLastFailed(rel Release) {
	e.lastFailed = &rel
	e.lastFailedFile = stampOf(rel.Path)
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
	run.started = e.rt.Now()
	e.swap = run
	rel := e.current
	if run.release != nil {
		rel = *run.release
	}
	// Open the path afresh, even for the serving release: a forced swap is
	// how an operator picks up a file changed in place.
	rel.bin = nil
	e.publish(SwapStarted, fmt.Sprintf("swap %d (%s): starting %s", run.id, run.trigger, rel.String()), false)
	verify := e.cfg.Verify
	e.after(verifyProgress, slowVerifyEvent{run: run})
	e.rt.Background(func() {
		resolved, err := resolveRelease(rel)
		if err == nil {
			resolved.bin, err = e.rt.OpenBinary(resolved.Path)
		}
		if err == nil && verify != nil {
			err = verify(context.Background(), resolved)
		}
		e.post(verifiedEvent{run: run, rel: resolved, err: err})
	})
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

// verifyProgress is how often a swap whose verification (a preflight, the
// hash of a large binary) still runs says so.
const verifyProgress = 5 * time.Second

func (e *Engine) onSlowVerify(run *swapRun) {
	if e.swap != run || run.gen != nil || e.stopping {
		return // verified meanwhile
	}
	since := e.rt.Now().Sub(run.started).Round(time.Second)
	e.log.Info(fmt.Sprintf("swap %d: still verifying the release after %s (preflight, checks)", run.id, since), "swap", run.id, "waited", since)
	e.after(verifyProgress, slowVerifyEvent{run: run})
}

func (e *Engine) onVerified(ev verifiedEvent) {
	e.keepBinary(ev.rel.bin) // closed by sweepBinaries unless it starts
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
		e.setLastFailed(rel)
		e.finishSwap(run, SwapResult{Result: ResultRejected, Reason: ev.err.Error(), ToVersion: rel.Version})
		return
	}
	if e.steering {
		run.mark = e.rt.SteerMark(len(e.gens) == 1)
	}
	g, err := e.startGeneration(ev.rel, false)
	if err != nil {
		rel := ev.rel
		e.setLastFailed(rel)
		e.finishSwap(run, SwapResult{Result: ResultFailed, Reason: err.Error(), ToVersion: rel.Version})
		return
	}
	run.gen = g
	run.timer = e.after(e.cfg.StartTimeout, startTimeoutEvent{run: run})
	e.publishLogged(StatusChanged, fmt.Sprintf("generation %d started (pid %d), waiting for %s", g.id, g.proc.PID(), e.readyDesc()), false)
}

func (e *Engine) onStartTimeout(run *swapRun) {
	if e.swap != run || run.gen == nil || run.gen.state != GenStarting {
		return // the swap ended meanwhile
	}
	e.stopUnready(run.gen)
	e.setState(run.gen, GenFailed)
	e.failSwap(run, fmt.Sprintf("not ready within --start-timeout %s (waiting for %s)%s", e.cfg.StartTimeout, e.readyDesc(), run.gen.lastStderr(0)))
}

func (e *Engine) onReady(g *generation) {
	if g.state != GenStarting {
		return // late: it failed or was canceled meanwhile
	}
	g.readyAt = e.rt.Now()
	e.handoffTo(g) // before any stop signal: older generations learn where to send
	if e.swap == nil || e.swap.gen != g {
		// The first generation, or a restart: nothing to drain.
		e.setServing(g)
		e.backoff = 0
		if e.steering {
			e.rt.SteerMark(len(e.gens) == 1) // take the groups over now: said at start-up, not at the first swap
		}
		e.publish(StatusChanged, fmt.Sprintf("generation %d ready and serving", g.id), false)
		e.maybeStartSwap()
		return
	}
	if e.steering {
		// Ready: the start timeout no longer applies; the cutover's own
		// wait is bounded.
		if e.swap.timer != nil {
			e.swap.timer.Stop()
		}
		e.rt.SteerCutover(e.swap.mark, func(err error) { e.post(steeredEvent{g: g, err: err}) })
		return
	}
	e.takeover(g)
}

// onSteered completes a swap in reuseport mode once the new generation
// takes every new connection and the old one's sockets hold nothing: only
// now may the old one close them (its stop signal), since the kernel
// resets what a closing listener holds unless tcp_migrate_req=1.
func (e *Engine) onSteered(g *generation, err error) {
	if e.swap == nil || e.swap.gen != g || g.state != GenStarting {
		return // it exited, or shutdown canceled the swap, meanwhile
	}
	if err != nil {
		e.log.Warn("reuseport steering: stopping the old generation anyway", "generation", g.id, "err", err)
	}
	e.takeover(g)
}

// takeover completes a swap: g, ready, becomes the serving generation and
// the one it replaces drains. A check of g after it took over (with the
// rollback decision in onExit) belongs right here.
func (e *Engine) takeover(g *generation) {
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
	e.setState(g, GenServing)
	e.serving = g
	if err := e.rt.SetForeground(g.proc.PID()); err != nil {
		e.log.Debug("terminal", "err", err)
	}
}

// drain sends the stop signal and arms the SIGKILL deadline.
func (e *Engine) drain(g *generation) {
	e.setState(g, GenDraining)
	e.stop(g, "draining")
}

// stop sends g the stop signal and arms the SIGKILL of its group after
// --drain-timeout.
func (e *Engine) stop(g *generation, msg string) {
	g.drainStart = e.rt.Now()
	if err := g.proc.Signal(e.cfg.StopSignal); err != nil && !errors.Is(err, entrypoint.ErrDone) {
		e.log.Warn("stop signal", "generation", g.id, "err", err)
	}
	e.after(e.cfg.DrainTimeout, drainDeadlineEvent{g: g})
	e.log.Info(msg, "generation", g.id, "pid", g.proc.PID(), "version", g.release.Version, "signal", entrypoint.SignalName(e.cfg.StopSignal), "kill_after", e.cfg.DrainTimeout)
}

// stopUnready stops a generation that did not become ready in time the way
// a draining one is stopped: the stop signal, then SIGKILL of its group
// after --drain-timeout. It is not ready, but it may already accept on the
// shared socket (servers accept before they report READY=1): a SIGKILL
// would reset every connection it took meanwhile.
func (e *Engine) stopUnready(g *generation) {
	e.stop(g, "stopping a generation that was not ready in time")
}

func (e *Engine) onDrainDeadline(g *generation) {
	if !g.proc.Exited() || g.state == GenDraining {
		e.log.Warn("drain deadline passed; killing the generation's process group", "generation", g.id, "pid", g.proc.PID(), "drain_timeout", e.cfg.DrainTimeout)
	}
	if t, ok := g.proc.(interface{ KillTree(string) (int, error) }); ok { // its group, and daemons it left outside (setsid)
		_, _ = t.KillTree(fmt.Sprintf("HOTSWAP_GENERATION=%d", g.id))
	} else {
		_ = g.proc.Kill() // also any grandchild left in the group
	}
}

// failSwap ends a swap whose new generation failed (its state already
// moved to failed); a generation still alive must have been given its stop
// signal (stopUnready) first.
func (e *Engine) failSwap(run *swapRun, reason string) {
	rel := run.gen.release
	e.setLastFailed(rel)
	e.finishSwap(run, SwapResult{Result: ResultFailed, Reason: reason, ToVersion: rel.Version, ToGen: run.gen.id})
}

// cancelSwaps answers the running and the queued swap with "canceled" at
// shutdown. A generation the running swap started is failed: it never
// served; beginShutdown stops it with the rest.
func (e *Engine) cancelSwaps() {
	if e.swap != nil {
		run := e.swap
		if run.gen != nil {
			e.setState(run.gen, GenFailed)
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
	res.Duration = e.rt.Now().Sub(run.started)
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
	switch res.Result {
	case ResultSucceeded:
		e.status.Counts.Succeeded++
		e.status.LastRejected = nil // a later success: it explains nothing now
	case ResultRejected:
		e.status.Counts.Rejected++
	case ResultCanceled:
		e.status.Counts.Canceled++
	default:
		e.status.Counts.Failed++
	}
	e.mu.Unlock()
	e.publish(typ, msg, warn)
	for _, w := range run.waiters {
		w <- res
	}
	e.maybeStartSwap()
}

// onExit handles the exit of any generation: a swap's new one (the swap
// fails), a drained one (a slot frees up), or the serving one (roll back,
// restart, or shut down with its code).
func (e *Engine) onExit(g *generation) {
	st := g.proc.Status()
	prev := g.state
	switch g.state {
	case GenStarting:
		e.setState(g, GenFailed)
	case GenServing, GenDraining:
		e.setState(g, GenExited)
	} // failed (stopped unready, or canceled) is final: it stays failed
	e.removeGen(g)
	attrs := []any{"generation", g.id, "pid", g.proc.PID(), "version", g.release.Version, "status", st.String()}
	switch {
	case e.swap != nil && e.swap.gen == g:
		e.failSwap(e.swap, "new generation exited before it was ready: "+st.String()+g.lastStderr(stderrTailWait)+e.exitBeforeReadyHint(g, false))
		return
	case prev == GenDraining:
		drain := e.rt.Now().Sub(g.drainStart).Round(time.Millisecond)
		e.log.Info("drained", append(attrs, "drain", drain)...)
		e.publishLogged(StatusChanged, fmt.Sprintf("generation %d exited after drain of %s (%s)", g.id, drain, st), false)
		e.maybeStartSwap()
		return
	case g != e.serving:
		e.publish(StatusChanged, fmt.Sprintf("generation %d exited (%s)", g.id, st), false)
		e.maybeStartSwap()
		return
	}
	// The serving (or first, still starting) generation exited on its own.
	e.exitCode = st.Code()
	if e.stopping {
		e.publish(StatusChanged, fmt.Sprintf("serving generation %d exited during shutdown (%s)", g.id, st), false)
		return
	}
	if prev == GenStarting {
		e.publish(ChildExited, fmt.Sprintf("generation %d exited before it was ever ready: %s%s%s", g.id, st, g.lastStderr(stderrTailWait), e.exitBeforeReadyHint(g, true)), true)
	} else {
		e.publish(ChildExited, fmt.Sprintf("serving generation %d exited on its own: %s", g.id, st), st.Code() != 0)
	}
	justSwapped := g == e.swappedIn && e.rt.Now().Sub(g.readyAt) < e.cfg.RollbackWindow
	if e.previous.Path != "" && (e.drainingCount() > 0 || justSwapped) {
		e.log.Warn("new generation died right after the swap; rolling back", append(attrs, "to", e.previous.String())...)
		e.rollback(g)
		return
	}
	if e.cfg.OnExit == OnExitRestart {
		e.scheduleRestart(g)
		return
	}
	e.beginShutdown("serving generation exited: " + st.String())
}

// rollback restarts the previous release at once after g, swapped in, died
// while its predecessor still drained or within --rollback-window of taking
// over (with --handoff-keepalive the old one is gone within milliseconds):
// the swap did not hold. It does so even when the previous release is the
// same (a swap that restarts the command): what the old generation ran was
// serving a moment ago, while exiting would take the pod down. In handoff
// mode the shared accept queue keeps new connections waiting meanwhile.
// previous is cleared, so a second death follows --on-exit.
func (e *Engine) rollback(g *generation) {
	if rel := g.release; !e.previous.Same(rel) {
		e.setLastFailed(rel)
	}
	e.current, e.previous = e.previous, Release{}
	e.serving = nil
	e.restart()
}

// scheduleRestart restarts the current release after a backoff that
// doubles up to --restart-backoff-max, and starts over once a generation
// ran longer than --restart-reset.
func (e *Engine) scheduleRestart(g *generation) {
	e.restarts.Add(1)
	if e.rt.Now().Sub(g.proc.Started()) > e.cfg.RestartReset {
		e.backoff = 0
	}
	if e.backoff == 0 {
		e.backoff = e.cfg.RestartBackoff
	} else {
		e.backoff = min(2*e.backoff, e.cfg.RestartBackoffMax)
	}
	e.log.Info("restarting in place", "after", e.backoff, "release", e.current.String())
	e.serving = nil
	e.restartAt = e.after(e.backoff, restartEvent{})
	e.snapshot() // status shows Starting (derived from restartAt) during the backoff
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
	e.watchSlowStart(g)
	e.publishLogged(StatusChanged, fmt.Sprintf("restarted as generation %d (pid %d), waiting for %s", g.id, g.proc.PID(), e.readyDesc()), false)
}
