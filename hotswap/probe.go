package hotswap

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hotswap-dev/hotswap/entrypoint"
)

// The real readiness probes. Probing the shared port would prove nothing
// (any generation may answer), so http= and tcp= should name an address
// private to the new generation. notify readiness is not here: READY=1
// arrives on the generation's notify socket (generation.go).

// probeInterval is the pause between two failed attempts.
const probeInterval = 100 * time.Millisecond

// Probe runs the check until it passes (then calls ready) or ctx ends.
func (r *osRuntime) Probe(ctx context.Context, check ReadyCheck, t ProbeTarget, ready func()) {
	go r.probe(ctx, check, t, ready)
}

func (r *osRuntime) probe(ctx context.Context, check ReadyCheck, t ProbeTarget, ready func()) {
	if check.Kind == ReadyDelay {
		timer := time.NewTimer(check.Delay)
		defer timer.Stop()
		select {
		case <-timer.C:
			ready()
		case <-ctx.Done():
		}
		return
	}
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	client := &http.Client{Timeout: time.Second}
	var execPath string
	var execArgv []string
	if check.Kind == ReadyExec {
		// Resolve the command once, not at every attempt.
		execArgv = strings.Fields(check.Target)
		rel, err := resolveRelease(Release{Path: execArgv[0]})
		if err != nil {
			r.log.Warn("ready exec: the check can never pass", "err", err)
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
			ok = r.probeExec(ctx, t, execPath, execArgv)
		}
		if ok {
			ready()
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
func (r *osRuntime) probeExec(ctx context.Context, t ProbeTarget, path string, argv []string) bool {
	env := append(append([]string(nil), t.Env...), "HOTSWAP_GENERATION="+strconv.Itoa(t.Generation), "HOTSWAP_PID="+strconv.Itoa(t.PID))
	p, err := r.reaper.Start(entrypoint.Spec{Path: path, Argv: argv, Env: env})
	if err != nil {
		r.log.Warn("ready exec", "err", err)
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
