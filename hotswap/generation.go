package hotswap

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hotswap-dev/hotswap/entrypoint"
	"github.com/hotswap-dev/hotswap/reuseport/activation"
)

// generation is one running instance of a release.
type generation struct {
	id         int
	release    Release
	proc       *entrypoint.Process
	state      GenState
	readyAt    time.Time
	drainStart time.Time
	statusText string
	notify     *activation.NotifySocket
	handoff    string             // its handoff socket path (--handoff-keepalive), or ""
	cancel     context.CancelFunc // stops the readiness probe and notify reader
}

func (g *generation) statusOf() GenerationStatus {
	return GenerationStatus{
		Generation: g.id, Version: g.release.Version, PID: g.proc.PID,
		State: g.state, Started: g.proc.Started, Status: g.statusText,
	}
}

func (g *generation) ready() { g.readyAt = time.Now() }

// close releases what the generation held in hotswap (its notify socket).
func (g *generation) close() {
	g.cancel()
	if g.notify != nil {
		_ = g.notify.Close()
	}
	g.removeHandoffSocket()
}

// startGeneration starts rel as the next generation with the listeners,
// NOTIFY_SOCKET and HOTSWAP_* in its environment, and starts its readiness
// check. first marks the initial generation (and restarts), which may take
// the terminal and has no start timeout: nothing else serves meanwhile.
func (e *Engine) startGeneration(rel Release, first bool) (*generation, error) {
	id := e.lastGen + 1
	ctx, cancel := context.WithCancel(context.Background())
	g := &generation{id: id, release: rel, state: GenStarting, cancel: cancel}

	env := append([]string(nil), e.baseEnv...)
	env = append(env, rel.Env...)
	env = append(env, "HOTSWAP_GENERATION="+strconv.Itoa(id), "HOTSWAP_VERSION="+rel.Version)
	env = append(env, e.handoffEnv(g)...)
	if e.cfg.Ready.Kind == ReadyNotify {
		path := filepath.Join(e.runDir, fmt.Sprintf("notify-%d-%d.sock", os.Getpid(), id))
		ns, err := activation.NewNotifySocket(path)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("generation %d: notify socket: %w", id, err)
		}
		g.notify = ns
		env = append(env, "NOTIFY_SOCKET="+ns.Path())
	}

	files := []*os.File{os.Stdin, os.Stdout, os.Stderr}
	path, argv := rel.Path, append([]string{rel.Path}, rel.Args...)
	var exported []*os.File
	if len(e.listeners) > 0 {
		lf, lenv, err := activation.ExportFiles(e.listeners)
		if err != nil {
			g.close()
			return nil, fmt.Errorf("generation %d: pass listeners: %w", id, err)
		}
		exported = lf
		files = append(files, lf...)
		env = append(env, lenv...)
		// LISTEN_PID must be the child's own PID, which only the child knows:
		// a re-exec of hotswap sets it and execs the target in place.
		path, argv = activation.ShimCommand(e.cfg.Self, rel.Path, rel.Args)
	}
	proc, err := e.reaper.Start(entrypoint.Spec{Path: path, Argv: argv, Env: env, Files: files, Foreground: first})
	for _, f := range exported {
		_ = f.Close() // the child has its copies
	}
	if err != nil {
		g.close()
		return nil, err
	}
	g.proc = proc
	e.lastGen = id
	e.gens = append(e.gens, g)
	e.log.Info("started generation", "generation", id, "pid", proc.PID, "version", rel.Version, "path", rel.Path)

	go func() {
		<-proc.Done()
		e.post(exitEvent{g: g})
	}()
	if g.notify != nil {
		go e.readNotify(ctx, g)
	}
	if e.cfg.Ready.Kind != ReadyNotify {
		go e.probe(ctx, g)
	}
	return g, nil
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

// probe runs the configured readiness check until it passes or ctx ends.
// Probing the shared port would prove nothing (any generation may answer),
// so http= and tcp= should name an address private to the new generation.
func (e *Engine) probe(ctx context.Context, g *generation) {
	check := e.cfg.Ready
	if check.Kind == ReadyDelay {
		select {
		case <-time.After(check.Delay):
			e.post(readyEvent{g: g})
		case <-ctx.Done():
		}
		return
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	client := &http.Client{Timeout: time.Second}
	var execPath string
	var execArgv []string
	if check.Kind == ReadyExec {
		// Resolve the command once, not at every 100 ms attempt.
		execArgv = strings.Fields(check.Target)
		rel, err := resolveRelease(Release{Path: execArgv[0]})
		if err != nil {
			e.log.Warn("ready exec: the check can never pass", "err", err)
			<-ctx.Done()
			return
		}
		execPath = rel.Path
	}
	for {
		var ok bool
		switch check.Kind {
		case ReadyHTTP:
			ok = probeHTTP(ctx, client, check.Target)
		case ReadyTCP:
			ok = probeTCP(ctx, check.Target)
		case ReadyExec:
			ok = e.probeExec(ctx, g, execPath, execArgv)
		}
		if ok {
			e.post(readyEvent{g: g})
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

func probeHTTP(ctx context.Context, c *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}

func probeTCP(ctx context.Context, addr string) bool {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// probeExec runs the check command through the reaper (never os/exec: it
// would race the reaper for the exit status).
func (e *Engine) probeExec(ctx context.Context, g *generation, path string, argv []string) bool {
	env := append(append([]string(nil), e.baseEnv...), "HOTSWAP_GENERATION="+strconv.Itoa(g.id), "HOTSWAP_PID="+strconv.Itoa(g.proc.PID))
	p, err := e.reaper.Start(entrypoint.Spec{Path: path, Argv: argv, Env: env})
	if err != nil {
		e.log.Warn("ready exec", "err", err)
		return false
	}
	select {
	case <-p.Done():
		return p.Status().Code() == 0
	case <-ctx.Done():
		_ = p.Kill()
		return false
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
