package hotswap

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/hotswap-dev/hotswap/entrypoint"
	"github.com/hotswap-dev/hotswap/internal/upgradesig"
	"github.com/hotswap-dev/hotswap/reuseport/activation"
)

// The new hotswap's side of an in-place upgrade (upgrade.go is the old
// one's): read the state, adopt the children, take the descriptors, and
// go on where the old one stopped. Nothing is started and nothing is bound.

// Handover is the state an in-place upgrade handed to this process.
type Handover struct{ h *handover }

// LoadHandover reads the state an upgrade handed over, and closes its
// descriptor; it returns nil, nil when this process was not exec'ed by an
// upgrade. Call it before anything binds a socket or starts a child.
func LoadHandover() (*Handover, error) {
	v := os.Getenv(upgradesig.Env)
	if v == "" {
		return nil, nil
	}
	os.Unsetenv(upgradesig.Env) // never for the children
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("%s=%q is not a descriptor", upgradesig.Env, v)
	}
	f := os.NewFile(uintptr(fd), "upgrade-state")
	defer f.Close()
	h, err := decodeHandover(f)
	if err != nil {
		return nil, err
	}
	return &Handover{h: h}, nil
}

// From is the version of the hotswap that handed over.
func (h *Handover) From() string { return h.h.From }

// Adopt lists the children the old hotswap started that were not reaped
// yet, for entrypoint.NewReaperAdopting.
func (h *Handover) Adopt() []entrypoint.Adopted {
	var out []entrypoint.Adopted
	for _, g := range h.h.Gens {
		if !g.Exited {
			out = append(out, entrypoint.Adopted{PID: g.PID, Started: g.Started})
		}
	}
	return out
}

// resumedGen is a generation restored, before Run owns it.
type resumedGen struct {
	g     *generation
	ctx   context.Context
	owned *entrypoint.Process // nil: reaped before the exec
}

// NewResumed is New for a hotswap an upgrade exec'ed: the listeners are
// the handed-over descriptors, the generations are the adopted children
// (procs, from entrypoint.NewReaperAdopting). Run goes on from there.
func NewResumed(cfg Config, reaper *entrypoint.Reaper, h *Handover, procs map[int]*entrypoint.Process) (*Engine, error) {
	// Defaults first: they depend on the listeners (readiness is READY=1
	// on the notify socket when there are any), which New must not see.
	cfg.setDefaults()
	bind := cfg.Listeners
	cfg.Listeners = nil // inherited, never bound again
	e, err := New(cfg, reaper)
	if err != nil {
		return nil, err
	}
	e.cfg.Listeners = bind
	for _, l := range h.h.Listeners {
		f := os.NewFile(uintptr(l.FD), l.Name)
		// os.NewFile + net.FileListener keep the shared description
		// non-blocking (see activation.Inherit).
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			e.closeListeners()
			return nil, fmt.Errorf("upgrade: listener %s from fd %d: %w", l.Name, l.FD, err)
		}
		e.listeners = append(e.listeners, activation.NamedListener{Name: l.Name, Listener: ln})
	}
	if len(bind) != len(h.h.Listeners) {
		e.log.Warn("upgrade: the configuration names other listeners than the handed-over ones; keeping the handed-over ones (a restart of the pod applies the new ones)", "configured", len(bind), "inherited", len(h.h.Listeners))
	}
	e.resumed = h.h
	e.selfSum = h.h.SHA256
	e.resumedGens = nil
	for _, hg := range h.h.Gens {
		ctx, cancel := context.WithCancel(context.Background())
		g := &generation{
			id: hg.ID, release: hg.Release, state: hg.State, readyAt: hg.ReadyAt,
			drainStart: hg.DrainStart, statusText: hg.StatusText, handoff: hg.Handoff, cancel: cancel,
		}
		rg := resumedGen{g: g, ctx: ctx}
		if p := procs[hg.PID]; p != nil && !hg.Exited {
			g.proc, rg.owned = osProc{p}, p
		} else {
			g.proc = &endedProc{pid: hg.PID, started: hg.Started, status: hg.Status}
		}
		if hg.NotifyFD > 0 {
			ns, err := activation.NotifySocketFromFile(os.NewFile(uintptr(hg.NotifyFD), hg.NotifyPath), hg.NotifyPath)
			if err != nil {
				e.log.Warn("upgrade: generation's notify socket lost; its sd_notify messages are not heard", "generation", g.id, "err", err)
			} else {
				g.notify = ns
			}
		}
		e.resumedGens = append(e.resumedGens, rg)
	}
	return e, nil
}

// resume takes over the handed-over generations on Run's goroutine.
func (e *Engine) resume() {
	h := e.resumed
	e.lastGen, e.current, e.previous, e.lastFailed = h.LastGen, h.Current, h.Previous, h.LastFailed
	e.swapID, e.exitCode = h.SwapID, h.ExitCode
	e.offered = h.Offered
	e.unchangedOffers = maps.Clone(h.Offered)
	e.restarts.Store(h.Restarts)
	e.mu.Lock()
	e.status.Upgrades, e.status.LastSwap, e.status.LastRejected = h.Upgrades+1, h.LastSwap, h.LastRejectd
	e.status.Counts = h.Counts
	e.mu.Unlock()
	if r := e.realReaper(); r != nil {
		r.CarryOrphans(h.Orphans)
	}
	for _, rg := range e.resumedGens {
		g := rg.g
		e.gens = append(e.gens, g)
		if g.id == h.Serving {
			e.serving = g
		}
		if g.id == h.SwappedIn {
			e.swappedIn = g
		}
		if rg.owned == nil {
			e.post(exitEvent{g: g}) // reaped before the exec
		} else {
			go func(p *entrypoint.Process) {
				<-p.Done()
				e.post(exitEvent{g: g})
			}(rg.owned)
		}
		if g.notify != nil {
			go e.readNotify(rg.ctx, g)
		}
		if g.state == GenDraining {
			left := max(e.cfg.DrainTimeout-e.rt.Now().Sub(g.drainStart), 0)
			e.after(left, drainDeadlineEvent{g: g})
		}
	}
	e.resumedGens = nil
	e.publish(StatusChanged, fmt.Sprintf("hotswap upgraded in place from %s to %s; generation %d serves on", h.From, e.cfg.HotswapVersion, h.Serving), false)
	e.log.Debug("upgrade: signals handed over or caught early", "signals", h.Signals)
	for _, s := range h.Signals {
		e.onSignal(syscall.Signal(s))
	}
	h.Signals = nil
}

// endedProc is a generation whose process was reaped before the exec: its
// status crossed in the state.
type endedProc struct {
	pid     int
	started time.Time
	status  entrypoint.ExitStatus
}

func (p *endedProc) PID() int                      { return p.pid }
func (p *endedProc) Started() time.Time            { return p.started }
func (p *endedProc) Signal(syscall.Signal) error   { return entrypoint.ErrDone }
func (p *endedProc) Kill() error                   { return entrypoint.ErrDone }
func (p *endedProc) Exited() bool                  { return true }
func (p *endedProc) Status() entrypoint.ExitStatus { return p.status }
