package bake

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/hotswap/source"
)

// The results a Reporter hears.
const (
	Baking     = "baking"      // the bake runs
	Baked      = "baked"       // healthy for the whole bake
	RolledBack = "rolled-back" // failed; the previous release was offered again
)

// Result is how one generation's bake went.
type Result struct {
	Version    string
	Generation int
	Result     string // Baking, Baked or RolledBack
	Reason     string
	Since      time.Time // the bake's start
}

// Reporter hears every bake result (kube.Reporter is one). ReportBake must
// not block.
type Reporter interface {
	ReportBake(Result)
}

// Options configure a Baker.
type Options struct {
	// Duration is how long a new generation is checked (--bake-time); 0: no bake.
	Duration time.Duration
	// URL, when set, is fetched every Interval; it must answer 2xx
	// (--bake-url). Without it, only the generation's survival is checked.
	URL string
	// Interval between checks; default 1s. Failures in a row fail the bake;
	// default 3 (one slow answer is not a reason to roll back).
	Interval time.Duration
	Failures int
	// Initial is the command line's release, the one to go back to when the
	// first swap fails its bake.
	Initial hotswap.Release
	Log     *slog.Logger
}

// Baker bakes every generation a swap brings in. Give it to the engine as
// an observer, call Remember from the engine's Verify hook, and SetTarget
// the engine once it exists.
type Baker struct {
	opts   Options
	client *http.Client
	report []Reporter

	mu       sync.Mutex
	target   source.Offerer
	releases map[string]hotswap.Release // by version: what to go back to
	cancel   context.CancelFunc         // the bake running, if any
	baking   int                        // its generation
	failed   chan string                // tells the running bake its generation died
	rollback string                     // version offered as a rollback: never baked
}

// New returns a Baker; reporters hear every result.
func New(opts Options, reporters ...Reporter) *Baker {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Failures <= 0 {
		opts.Failures = 3
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	b := &Baker{opts: opts, report: reporters, releases: map[string]hotswap.Release{},
		client: &http.Client{Timeout: max(opts.Interval, time.Second)}}
	if opts.Initial.Path != "" {
		b.releases[opts.Initial.Version] = opts.Initial
	}
	return b
}

// SetTarget sets where offers go (the engine).
func (b *Baker) SetTarget(o source.Offerer) {
	b.mu.Lock()
	b.target = o
	b.mu.Unlock()
}

// Remember records r as the release of its version, so the bake of a
// later version can go back to it. Call it for every release the engine is
// about to start (hotswap.Config.Verify sees them all).
func (b *Baker) Remember(r hotswap.Release) {
	b.mu.Lock()
	b.releases[r.Version] = r
	b.mu.Unlock()
}

// Observe starts a bake when a swap succeeds, and fails the running one
// when its generation exits.
func (b *Baker) Observe(e hotswap.Event) {
	if b.opts.Duration <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch e.Type {
	case hotswap.SwapSucceeded:
		s := e.Status.LastSwap
		if s == nil {
			return
		}
		if b.cancel != nil {
			b.cancel() // a newer generation took over: its bake replaces this one
			b.cancel = nil
		}
		if s.ToVersion == b.rollback {
			b.rollback = ""
			return // a rollback is not baked: there is nothing older to go back to
		}
		prev, ok := b.releases[s.FromVersion]
		if !ok || s.FromVersion == "" {
			b.opts.Log.Warn("bake: the previous release is unknown; this generation is checked but cannot be rolled back", "version", s.ToVersion, "from", s.FromVersion)
		}
		ctx, cancel := context.WithCancel(context.Background())
		b.cancel, b.baking, b.failed = cancel, s.ToGen, make(chan string, 1)
		go b.bake(ctx, s.ToVersion, s.ToGen, prev, ok, b.failed)
	case hotswap.ChildExited:
		if b.cancel != nil && e.Status.Generation != b.baking {
			select {
			case b.failed <- e.Message:
			default:
			}
		}
	}
}

// bake checks generation gen for the bake's duration.
func (b *Baker) bake(ctx context.Context, version string, gen int, prev hotswap.Release, canRollBack bool, died <-chan string) {
	since := time.Now()
	log := b.opts.Log.With("generation", gen, "version", version)
	b.tell(Result{Version: version, Generation: gen, Result: Baking, Since: since})
	log.Info("bake started", "for", b.opts.Duration, "url", b.opts.URL)
	end := time.NewTimer(b.opts.Duration)
	defer end.Stop()
	tick := time.NewTicker(b.opts.Interval)
	defer tick.Stop()
	fails := 0
	var why string
	for why == "" {
		select {
		case <-ctx.Done():
			return
		case <-end.C:
			b.tell(Result{Version: version, Generation: gen, Result: Baked, Since: since})
			log.Info("baked: healthy for the whole bake", "for", b.opts.Duration)
			return
		case msg := <-died:
			why = "the generation exited during the bake: " + msg
		case <-tick.C:
			if b.opts.URL == "" {
				continue
			}
			if err := b.check(ctx); err != nil {
				fails++
				log.Warn("bake: health check failed", "err", err, "in_a_row", fails)
				if fails >= b.opts.Failures {
					why = fmt.Sprintf("health check failed %d times in a row: %v", fails, err)
				}
			} else {
				fails = 0
			}
		}
	}
	b.mu.Lock()
	if ctx.Err() != nil { // a newer swap came first
		b.mu.Unlock()
		return
	}
	b.cancel = nil
	t := b.target
	if canRollBack {
		b.rollback = prev.Version
	}
	b.mu.Unlock()
	if !canRollBack {
		why += "; no previous release to go back to"
	}
	log.Warn("bake failed; rolling back", "reason", why, "to", prev.Version)
	b.tell(Result{Version: version, Generation: gen, Result: RolledBack, Reason: why, Since: since})
	if canRollBack && t != nil {
		t.Offer(prev)
	}
}

func (b *Baker) check(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.opts.URL, nil)
	if err != nil {
		return err
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: %s", b.opts.URL, resp.Status)
	}
	return nil
}

func (b *Baker) tell(r Result) {
	for _, rep := range b.report {
		rep.ReportBake(r)
	}
}
