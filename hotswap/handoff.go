package hotswap

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hotswap-dev/hotswap/reuseport/handoff"
)

// Keep-alive handoff (--handoff-keepalive): hotswap only names the sockets
// and tells old generations where to send. It never holds a client
// connection itself: the sockets go from generation to generation
// (reuseport's handoff, docs/handoff.md).
//
//  1. Each generation gets HOTSWAP_HANDOFF_SOCKET=RUNTIME_DIR/handoff-TOKEN-N.sock
//     (TOKEN: random, per hotswap, so two sharing a directory never collide);
//     a server using reuseport.Serve listens there before it reports ready.
//  2. When generation N+1 is ready, and before any stop signal, every other
//     live generation (the one about to drain, and any still draining from
//     earlier swaps) is told "send to N+1". A generation that drains with
//     a target hands its connections over at request boundaries.
//  3. On final stop (SIGTERM to hotswap) nobody is told anything: every
//     generation drains normally.

// handoffTellTimeout bounds telling one generation its target; the Run
// goroutine waits for it (a local round trip, well under a millisecond).
const handoffTellTimeout = 250 * time.Millisecond

// handoffEnv names g's handoff socket, when handoff is on.
func (e *Engine) handoffEnv(g *generation) []string {
	if !e.cfg.HandoffKeepAlive {
		return nil
	}
	g.handoff = filepath.Join(e.runDir, fmt.Sprintf("handoff-%s-%d.sock", e.token, g.id))
	return []string{handoff.SocketEnv + "=" + g.handoff}
}

// handoffTo tells every other live generation to hand its keep-alive
// connections to g, which just became ready.
func (e *Engine) handoffTo(g *generation) {
	if g.handoff == "" {
		return
	}
	if _, err := os.Stat(g.handoff); err != nil {
		e.log.Info("handoff: the new generation opened no handoff socket (does it use reuseport.Serve?); keep-alive clients of older generations will reconnect",
			"generation", g.id, "pid", g.proc.PID())
		return
	}
	for _, old := range e.gens {
		if old == g || old.handoff == "" || (old.state != GenServing && old.state != GenDraining) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), handoffTellTimeout)
		err := handoff.SetTarget(ctx, old.handoff, g.handoff)
		cancel()
		if err != nil {
			e.log.Info("handoff: cannot tell the old generation its target; it drains normally", "generation", old.id, "to", g.id, "err", err)
			continue
		}
		e.log.Debug("handoff: old generation will hand its keep-alive connections over", "generation", old.id, "to", g.id)
	}
}

// removeHandoffSocket removes the socket file of a generation that ended.
func (g *generation) removeHandoffSocket() {
	if g.handoff != "" {
		_ = os.Remove(g.handoff)
	}
}
