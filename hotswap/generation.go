package hotswap

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hotswap-dev/hotswap/entrypoint"
	"github.com/hotswap-dev/hotswap/reuseport/activation"
	"github.com/hotswap-dev/hotswap/reuseport/steer"
)

// generation is one running instance of a release.
type generation struct {
	id         int
	release    Release
	proc       Proc
	state      GenState // moved only by Engine.setState
	readyAt    time.Time
	drainStart time.Time
	statusText string
	notify     *activation.NotifySocket
	handoff    string             // its handoff socket path (--handoff-keepalive), or ""
	cancel     context.CancelFunc // stops the readiness probe and notify reader
	slowStart  Timer              // warns while a first generation is not ready (pid1.go)
	stderr     *stderrTail        // its stderr's last lines; nil when it writes to ours directly
}

// legalMoves is the whole life of a generation. It only moves forward:
//
//	starting → serving   ready (first generation, restart, or a swap's takeover)
//	starting → failed    exited before ready, not ready within --start-timeout,
//	                     or its swap was canceled by shutdown
//	serving  → draining  replaced by a swap: it got the stop signal
//	serving  → exited    exited on its own, or at shutdown
//	draining → exited    finished draining (or was killed at the deadline)
//
// failed and exited are final: a failed generation that exits later stays
// failed, so status and events never say a never-ready generation "exited
// after serving".
var legalMoves = map[GenState][]GenState{
	GenStarting: {GenServing, GenFailed},
	GenServing:  {GenDraining, GenExited},
	GenDraining: {GenExited},
}

// illegalMove is called on a move outside legalMoves. It is a bug in the
// engine: production logs it (and does not move); the tests make it fatal.
var illegalMove = func(e *Engine, g *generation, to GenState) {
	e.log.Error("BUG: illegal generation state move; state kept", "generation", g.id, "from", g.state, "to", to)
}

// setState is the only place a generation's state changes.
func (e *Engine) setState(g *generation, to GenState) {
	for _, ok := range legalMoves[g.state] {
		if ok == to {
			e.log.Debug("generation state", "generation", g.id, "from", g.state, "to", to)
			g.state = to
			return
		}
	}
	illegalMove(e, g, to)
}

func (g *generation) statusOf() GenerationStatus {
	return GenerationStatus{
		Generation: g.id, Version: g.release.Version, Path: g.release.Path, PID: g.proc.PID(),
		State: g.state, Started: g.proc.Started(), Status: g.statusText,
	}
}

// stderrTailWait bounds how long a failure waits for the last bytes a
// generation wrote before it exited (the copy may lag the exit event).
const stderrTailWait = 100 * time.Millisecond

// lastStderr is "; last stderr: ..." for a failure message, or "".
func (g *generation) lastStderr(wait time.Duration) string {
	if s := g.stderr.last(5, wait); s != "" {
		return "; last stderr: " + s
	}
	return ""
}

// close releases what the generation held in hotswap (its notify socket).
func (g *generation) close() {
	g.cancel()
	if g.slowStart != nil {
		g.slowStart.Stop()
	}
	if g.notify != nil {
		_ = g.notify.Close()
	}
	g.removeHandoffSocket()
}

// startGeneration starts rel as the next generation and starts its
// readiness check. first marks the initial generation (and restarts), which
// may take the terminal and has no start timeout: nothing else serves
// meanwhile.
func (e *Engine) startGeneration(rel Release, first bool) (*generation, error) {
	id := e.lastGen + 1
	ctx, cancel := context.WithCancel(context.Background())
	g := &generation{id: id, release: rel, state: GenStarting, cancel: cancel}

	spec, cleanup, err := e.execSpec(g, first)
	if err != nil {
		g.close()
		return nil, err
	}
	proc, err := e.rt.Start(spec, func() { e.post(exitEvent{g: g}) })
	cleanup()
	if err != nil {
		g.close()
		if e.tinyShimRefused(spec, err) {
			return e.startWithoutTinyShim(rel, first, err)
		}
		return nil, err
	}
	g.proc = proc
	e.lastGen = id
	e.gens = append(e.gens, g)
	// The one log line of the start (its callers publish without logging);
	// e2e tests and log pipelines key on its fixed message.
	e.log.Info("started generation", "generation", id, "pid", proc.PID(), "version", rel.Version, "path", rel.Path, "waiting_for", e.readyDesc())

	if g.notify != nil {
		go e.readNotify(ctx, g)
	}
	if e.cfg.Ready.Kind != ReadyNotify {
		e.rt.Probe(ctx, e.cfg.Ready, ProbeTarget{Generation: id, PID: proc.PID(), Env: e.baseEnv},
			func() { e.post(readyEvent{g: g}) })
	}
	return g, nil
}

// execSpec is how generation g is exec'ed: its command (through the
// LISTEN_PID shim when it gets listeners), the listeners as fds 3...,
// NOTIFY_SOCKET and HOTSWAP_* in its environment. It is the one place that
// decides what a generation runs. cleanup closes our copies of the fds
// passed; call it once Start returned.
func (e *Engine) execSpec(g *generation, first bool) (spec entrypoint.Spec, cleanup func(), err error) {
	rel := g.release
	env := GenerationEnv(e.baseEnv, rel)
	env = append(env, "HOTSWAP_GENERATION="+strconv.Itoa(g.id), "HOTSWAP_VERSION="+rel.Version)
	env = append(env, e.handoffEnv(g)...)
	if e.steering {
		env = append(env, steer.SteeredEnv+"=1") // the group's program is hotswap's: the library must not touch it
	}
	if e.cfg.Ready.Kind == ReadyNotify {
		path := filepath.Join(e.runDir, fmt.Sprintf("notify-%s-%d.sock", e.token, g.id))
		ns, err := activation.NewNotifySocket(path)
		if err != nil {
			return spec, nil, fmt.Errorf("generation %d: notify socket: %w", g.id, err)
		}
		g.notify = ns
		env = append(env, "NOTIFY_SOCKET="+ns.Path())
	}

	files := []*os.File{os.Stdin, os.Stdout, os.Stderr}
	path, argv := rel.Path, append([]string{rel.Path}, rel.Args...)
	var exported []*os.File
	if w, tail := newStderrTail(os.Stderr); w != nil {
		files[2], g.stderr = w, tail
		exported = append(exported, w) // closed once the child has it
	}
	if len(e.listeners) > 0 {
		lf, lenv, err := activation.ExportFiles(e.listeners)
		if err != nil {
			for _, f := range exported {
				_ = f.Close()
			}
			return spec, nil, fmt.Errorf("generation %d: pass listeners: %w", g.id, err)
		}
		exported = append(exported, lf...)
		files = append(files, lf...)
		env = append(env, lenv...)
	}
	// LISTEN_PID must be the child's own PID, which only the child knows,
	// and the verified open binary is run by descriptor: the exec shim does
	// both (execshim.go).
	if bin := e.pinnedBinary(rel); bin != nil || len(e.listeners) > 0 {
		path, argv, files, env = e.shimCommand(rel, bin, files, env)
	}
	cleanup = func() {
		for _, f := range exported {
			_ = f.Close() // the child has its copies
		}
	}
	return entrypoint.Spec{Path: path, Argv: argv, Env: env, Files: files, Foreground: first}, cleanup, nil
}

// readNotify passes sd_notify messages for g to the Run goroutine.
func (e *Engine) readNotify(ctx context.Context, g *generation) {
	for {
		m, err := g.notify.Recv()
		if err != nil {
			return // closed when the generation ended
		}
		select {
		case e.events <- notifyEvent{g: g, msg: m}:
		case <-ctx.Done():
			return
		case <-e.done:
			return
		}
	}
}

// checkMigrateReq warns when SO_REUSEPORT handovers will reset connections.
func (e *Engine) checkMigrateReq() {
	f, err := os.Open("/proc/sys/net/ipv4/tcp_migrate_req")
	if err != nil {
		e.log.Warn("reuseport mode: cannot read net.ipv4.tcp_migrate_req (needs Linux >= 5.14); connections queued on an old generation's socket are reset when it closes", "err", err)
		return
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	if strings.TrimSpace(line) != "1" {
		e.log.Warn("reuseport mode with net.ipv4.tcp_migrate_req=0: connections still queued on the old generation's socket are reset when it closes; set the sysctl to 1 in the pod (the chart's reuseport.migrateReq does it)")
	}
}

// checkSteering decides, once at start-up, whether reuseport mode steers
// the server's SO_REUSEPORT groups (reset-free swaps whatever
// tcp_migrate_req says), and says so; where it cannot, swaps behave as
// without it and checkMigrateReq says what that costs.
func (e *Engine) checkSteering() {
	if e.cfg.ReuseportSteer == SteerOff {
		e.log.Info("reuseport steering off (--reuseport-steer=off)")
		e.checkMigrateReq()
		return
	}
	if err := e.rt.SteerCheck(); err != nil {
		e.log.Warn("reuseport steering cannot work here; swaps behave as without it", "err", err)
		e.checkMigrateReq()
		return
	}
	e.steering = true
	e.log.Info("reuseport steering on: at a swap, new connections go to the new generation once it is ready, and the old one gets its stop signal once its sockets hold nothing (servers of the same uid; see docs/perf-swap.md)")
}
