package hotswap

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/hotswap-dev/hotswap/entrypoint"
)

// The init's duties, apart from swapping: start the command, forward
// signals, shut down (stop signal to every generation and straggler, SIGKILL
// after --grace) and exit with the serving child's code. Like tini, every
// decision about a signal is written next to it; entrypoint/signals.go says
// which signals are caught at all.

// shutdownPoll is how often shutdown re-checks for stragglers: processes
// outside the generations send no event when they exit.
const shutdownPoll = 50 * time.Millisecond

// killWait bounds how long hotswap waits after SIGKILL of everything: a
// process in uninterruptible sleep must not hold the pod forever.
const killWait = 2 * time.Second

// startFirst starts the command line's release. ok is false when it could
// not even start; code is then what a shell would exit with (127, 126).
func (e *Engine) startFirst() (code int, ok bool) {
	e.pinFirst()
	g, err := e.startGeneration(e.current, true)
	if err != nil {
		e.log.Error("cannot start the command", "err", err)
		var se *entrypoint.StartError
		if errors.As(err, &se) {
			return se.ExitCode(), false
		}
		return 1, false
	}
	e.serving = g
	e.watchSlowStart(g)
	e.publishLogged(StatusChanged, fmt.Sprintf("started generation %d (pid %d, %s), waiting for %s", g.id, g.proc.PID(), g.release.String(), e.readyDesc()), false)
	return 0, true
}

// The first generation (and a restart) has no start timeout that fails it:
// nothing else serves, so stopping it would only turn a slow start into a
// crash loop, and the kubelet's startupProbe is the place for that policy.
// It is never silent either: every --start-timeout it is still not ready,
// hotswap says so with how long it has waited and what usually causes it.

// watchSlowStart arms the next "still not ready" warning for g.
func (e *Engine) watchSlowStart(g *generation) {
	g.slowStart = e.after(e.cfg.StartTimeout, slowStartEvent{g: g})
}

func (e *Engine) onSlowStart(g *generation) {
	if g.state != GenStarting || g != e.serving || e.stopping {
		return
	}
	waited := e.rt.Now().Sub(g.proc.Started()).Round(time.Second)
	e.log.Warn(fmt.Sprintf("generation %d not ready after %s: still waiting for %s; nothing serves meanwhile", g.id, waited, e.readyDesc()),
		"generation", g.id, "pid", g.proc.PID(), "version", g.release.Version, "waited", waited, "hint", e.slowStartHint(g))
	e.watchSlowStart(g)
}

// slowStartHint turns the usual causes of a first generation that never
// becomes ready into advice.
func (e *Engine) slowStartHint(g *generation) string {
	switch e.cfg.Ready.Kind {
	case ReadyNotify:
		h := "the server has not sent READY=1 to $NOTIFY_SOCKET; a server that does not speak sd_notify (only package reuseport and systemd-aware servers do) needs --ready http=URL, tcp=ADDR or exec=CMD"
		if g.statusText != "" {
			h += "; its last STATUS= was " + fmt.Sprintf("%q", g.statusText)
		}
		return h
	default:
		return fmt.Sprintf("the readiness check %s has not passed; check it by hand from inside the container", e.cfg.Ready)
	}
}

// exitBeforeReadyHint is advice ("; hint: ...") for a generation that
// exited before it was ever ready, from what it wrote and the usual causes;
// "" when there is none to give.
func (e *Engine) exitBeforeReadyHint(g *generation, first bool) string {
	tail := g.stderr.last(20, 0)
	switch {
	case strings.Contains(tail, "address already in use") && e.cfg.Mode != ModeReuseport:
		return "; hint: the server binds the port itself while hotswap holds it: serve the inherited socket (Go: package reuseport; systemd socket activation) or run with --mode reuseport"
	case strings.Contains(tail, "address already in use"):
		return "; hint: under --mode reuseport the server must set SO_REUSEPORT on its socket (nginx: listen ... reuseport)"
	case first && g.stderr == nil && len(e.listeners) > 0 && e.cfg.Mode != ModeReuseport:
		return "; hint: if its log says \"address already in use\", the server binds the port itself: use package reuseport or --mode reuseport"
	}
	return ""
}

// onSignal is what the init does with a signal it caught.
func (e *Engine) onSignal(sig syscall.Signal) {
	switch {
	case sig == syscall.SIGTERM || sig == syscall.SIGINT:
		// --rewrite applies to the shutdown signal too, as in dumb-init:
		// TERM:QUIT stops every generation with QUIT (nginx's graceful
		// stop); TERM:0 ignores TERM, leaving the kubelet's SIGKILL after
		// the grace period to end the pod.
		to, ok := e.cfg.Rewrite.Apply(sig)
		if !ok {
			e.log.Info("ignoring signal, as --rewrite asks", "signal", entrypoint.SignalName(sig))
			return
		}
		if to != sig {
			e.cfg.StopSignal = to
		}
		e.beginShutdown("received " + entrypoint.SignalName(sig))
	case sig == e.cfg.SwapSignal:
		e.request(swapReq{trigger: "signal", force: true})
	default:
		e.forward(sig)
	}
}

// forward passes a signal to the serving generation's group, rewritten.
// Only the serving (or first, still starting) generation gets it: a
// draining one is on its way out and a starting successor is not serving.
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

// beginShutdown stops every generation and every straggler with the stop
// signal and arms the grace period; Run's loop exits when all are gone, or
// after SIGKILL of what is left once --grace passed.
func (e *Engine) beginShutdown(reason string) {
	if e.stopping {
		return
	}
	e.stopping = true
	if e.restartAt != nil {
		e.restartAt.Stop()
	}
	e.cancelSwaps()
	groups := map[int]bool{}
	for _, g := range e.gens {
		groups[g.proc.PID()] = true
		if g.state == GenDraining {
			continue // has its stop signal already
		}
		if err := g.proc.Signal(e.cfg.StopSignal); err != nil && !errors.Is(err, entrypoint.ErrDone) {
			e.log.Warn("stop signal", "generation", g.id, "err", err)
		}
	}
	// Processes that left their group (setsid daemons, orphans) get the
	// stop signal too, so none is cut off by the final SIGKILL unwarned.
	if n, err := e.rt.SignalStragglers(e.cfg.StopSignal, groups); err != nil {
		e.log.Warn("signal stragglers", "err", err)
	} else if n > 0 {
		e.log.Info("sent stop signal to processes outside the generations", "count", n)
	}
	e.after(e.cfg.Grace, graceEvent{})
	e.after(shutdownPoll, pollEvent{})
	e.publish(StatusChanged, fmt.Sprintf("shutting down (grace %s): %s", e.cfg.Grace, reason), false)
}

// onShutdownPoll only keeps Run's loop checking shutdownOver.
func (e *Engine) onShutdownPoll() {
	if e.stopping {
		e.after(shutdownPoll, pollEvent{})
	}
}

// onGraceOver kills what is left once --grace passed.
func (e *Engine) onGraceOver() {
	if !e.killedAt.IsZero() {
		return
	}
	e.killedAt = e.rt.Now()
	e.log.Warn("grace period over; killing what is left", "grace", e.cfg.Grace)
	for _, g := range e.gens {
		_ = g.proc.Kill()
	}
	if _, err := e.rt.SignalStragglers(syscall.SIGKILL, nil); err != nil {
		e.log.Warn("kill stragglers", "err", err)
	}
}

// shutdownOver reports whether Run should return, and with which code: the
// serving generation's (exit status, or 128+signal).
func (e *Engine) shutdownOver() (code int, over bool) {
	if !e.stopping {
		return 0, false
	}
	if e.allGone() {
		e.publish(StatusChanged, "stopped", false)
		return e.exitCode, true
	}
	if !e.killedAt.IsZero() && e.rt.Now().Sub(e.killedAt) > killWait {
		e.log.Error("processes survived SIGKILL; exiting anyway")
		return e.exitCode, true
	}
	return 0, false
}

// allGone reports whether no generation and no straggler is left.
func (e *Engine) allGone() bool {
	if len(e.gens) > 0 {
		return false
	}
	left, err := e.rt.Stragglers(nil)
	return err != nil || len(left) == 0
}
