package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/hotswap-dev/hotswap/hotswap"
)

// Options configures a Server. Every getter may be nil (its metric is then
// not exported); getters are called at scrape time, from the HTTP handler's
// goroutine, and must be safe for concurrent use.
type Options struct {
	// Addr is --admin-addr, e.g. "127.0.0.1:9090" or ":9090".
	Addr string
	// OrphansReaped returns how many orphans the reaper has collected.
	OrphansReaped func() uint64
	// LiveChildren returns how many child processes are alive now.
	LiveChildren func() int
	// ChildRestarts returns how many times --on-exit=restart restarted the
	// serving child.
	ChildRestarts func() uint64
	// ReportErrors returns failed Kubernetes reports (kube.Reporter.Errors).
	ReportErrors func() uint64

	// MaxConns bounds the connections served at once (default
	// DefaultMaxConns); further clients wait in the kernel's accept queue.
	MaxConns int
	// IdleTimeout closes a keep-alive connection with no request for this
	// long (default DefaultIdleTimeout).
	IdleTimeout time.Duration
}

// Bounds on what the endpoint's clients can hold in PID 1. The port is on
// the pod's network (and, by default, on the chart's Service): without them
// every idle keep-alive connection kept a descriptor and a goroutine for
// good (300 idle connections held 311 fds).
const (
	// DefaultMaxConns is Options.MaxConns' default: a scraper, two probes
	// and a person with curl need a handful.
	DefaultMaxConns = 64
	// DefaultIdleTimeout is Options.IdleTimeout's default, above the usual
	// scrape and probe intervals so their connections are reused.
	DefaultIdleTimeout = 30 * time.Second
	// readHeaderTimeout bounds a request's headers, readTimeout the whole
	// request and writeTimeout the answer (a /metrics page is written in
	// milliseconds).
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
)

// Server is the admin endpoint. It implements hotswap.Observer.
type Server struct {
	opts Options
	log  *slog.Logger
	set  *metrics.Set

	ready      atomic.Bool
	generation atomic.Int64
	swaps      map[hotswap.Result]swapMetrics
	drainDur   *metrics.PrometheusHistogram

	mu          sync.Mutex
	lastCounted uint64            // highest swap ID counted
	draining    map[int]time.Time // generation → when its drain was first seen
}

// swapMetrics are the series of one swap result.
type swapMetrics struct {
	count    *metrics.Counter
	duration *metrics.PrometheusHistogram
}

var _ hotswap.Observer = (*Server)(nil)

// Bucket bounds, in seconds: a swap takes tens of milliseconds to a few
// seconds (a slow readiness check up to minutes); a drain up to the grace.
var (
	swapBuckets  = []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}
	drainBuckets = []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
)

// New builds the metrics and the handler; Run serves them.
//
// The metrics are VictoriaMetrics/metrics, not prometheus/client_golang:
// the same text format for a fraction of the cost in PID 1 (client_golang
// links protobuf and procfs, whose package initializers ran on every start:
// about 4 ms of the start and 2.3 MB of the binary, docs/perf-pid1.md).
func New(opts Options, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	// # TYPE lines, so counters and histograms are typed for the scraper.
	metrics.ExposeMetadata(true)
	s := &Server{opts: opts, log: log.With("component", "admin"), set: metrics.NewSet(), draining: map[int]time.Time{},
		swaps: map[hotswap.Result]swapMetrics{}}
	// Serving generation number (0 when none serves).
	s.set.NewGauge("hotswap_generation", func() float64 { return float64(s.generation.Load()) })
	// 1 when a generation serves (what /readyz answers), else 0.
	s.set.NewGauge("hotswap_ready", func() float64 {
		if s.ready.Load() {
			return 1
		}
		return 0
	})
	for _, r := range []hotswap.Result{hotswap.ResultSucceeded, hotswap.ResultFailed, hotswap.ResultRejected, hotswap.ResultCanceled} {
		// Finished swap attempts by result, zeros exported so rate() works
		// from the first swap; and the time from an accepted trigger to the
		// new generation ready (or the failure).
		s.swaps[r] = swapMetrics{
			count:    s.set.NewCounter(fmt.Sprintf("hotswap_swaps_total{result=%q}", r)),
			duration: s.set.NewPrometheusHistogramExt(fmt.Sprintf("hotswap_swap_duration_seconds{result=%q}", r), swapBuckets),
		}
	}
	// Time from the stop signal to an old generation's exit.
	s.drainDur = s.set.NewPrometheusHistogramExt("hotswap_drain_duration_seconds", drainBuckets)
	if f := opts.LiveChildren; f != nil {
		// Live child processes (all generations).
		s.set.NewGauge("hotswap_children", func() float64 { return float64(f()) })
	}
	for _, c := range []struct {
		name string
		f    func() uint64
	}{
		// Orphaned processes reparented to hotswap and reaped.
		{"hotswap_orphans_reaped_total", opts.OrphansReaped},
		// Restarts of the serving child after it exited (--on-exit=restart).
		{"hotswap_child_restarts_total", opts.ChildRestarts},
		// Failed Kubernetes reports (patches, events); serving is unaffected.
		{"hotswap_report_errors_total", opts.ReportErrors},
	} {
		if c.f != nil {
			name, f := c.name, c.f // owned elsewhere, read at scrape time
			s.set.RegisterMetricsWriter(func(w io.Writer) { metrics.WriteCounterUint64(w, name, f()) })
		}
	}
	return s
}

// Ready reports what /readyz answers: whether a generation serves.
func (s *Server) Ready() bool { return s.ready.Load() }

// Observe updates the metrics from e. It takes one short lock.
func (s *Server) Observe(e hotswap.Event) {
	st := e.Status
	s.generation.Store(int64(st.Generation))
	s.ready.Store(st.Generation > 0 && (st.Phase == hotswap.PhaseServing || st.Phase == hotswap.PhaseSwapping))

	s.mu.Lock()
	defer s.mu.Unlock()
	// Swap IDs come from one counter and swaps finish in order, so a result
	// with an ID above the last counted one is new, whichever event carries it.
	for _, r := range []*hotswap.SwapResult{st.LastSwap, st.LastRejected} {
		if r != nil && r.ID > s.lastCounted {
			if m, ok := s.swaps[r.Result]; ok {
				m.count.Inc()
				m.duration.Update(r.Duration.Seconds())
			}
		}
	}
	for _, r := range []*hotswap.SwapResult{st.LastSwap, st.LastRejected} {
		if r != nil && r.ID > s.lastCounted {
			s.lastCounted = r.ID
		}
	}
	// Drain time: from the first event showing a generation draining to the
	// first event where it is gone or exited.
	now := e.Time
	if now.IsZero() {
		now = time.Now()
	}
	seen := map[int]bool{}
	for _, g := range st.Generations {
		seen[g.Generation] = true
		switch g.State {
		case hotswap.GenDraining:
			if _, ok := s.draining[g.Generation]; !ok {
				s.draining[g.Generation] = now
			}
		case hotswap.GenExited, hotswap.GenFailed:
			s.finishDrain(g.Generation, now)
		}
	}
	for gen := range s.draining {
		if !seen[gen] {
			s.finishDrain(gen, now)
		}
	}
}

func (s *Server) finishDrain(gen int, now time.Time) {
	if start, ok := s.draining[gen]; ok {
		s.drainDur.Update(now.Sub(start).Seconds())
		delete(s.draining, gen)
	}
}

// Handler returns the endpoint's routes: /metrics, /healthz, /readyz.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		s.set.WritePrometheus(w)
		metrics.WriteProcessMetrics(w) // go_* and process_*: memory, CPU, fds
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready.Load() {
			http.Error(w, "no generation serves", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// Listen binds Options.Addr. Separate from Serve so a bad address fails at
// start-up, before anything else starts.
func (s *Server) Listen() (net.Listener, error) {
	l, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("admin: listen on --admin-addr %q: %w", s.opts.Addr, err)
	}
	return l, nil
}

// Serve serves the Handler on l until ctx ends, then shuts down (in-flight
// scrapes get 2 s). At most Options.MaxConns connections are served at once
// and each is closed after Options.IdleTimeout without a request.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	maxConns, idle := s.opts.MaxConns, s.opts.IdleTimeout
	if maxConns <= 0 {
		maxConns = DefaultMaxConns
	}
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: min(readHeaderTimeout, idle),
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idle,
		MaxHeaderBytes:    16 << 10,
	}
	l = limitListener(l, maxConns)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	s.log.Info("admin endpoint listening", "addr", l.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("admin: serve %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("admin: shutdown: %w", err)
	}
	return nil
}

// limitListener returns a Listener that holds at most n accepted
// connections open: Accept waits for one to close first (what
// golang.org/x/net/netutil.LimitListener does, which go.mod does not have).
func limitListener(l net.Listener, n int) net.Listener {
	return &limitedListener{Listener: l, sem: make(chan struct{}, n), done: make(chan struct{})}
}

type limitedListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func (l *limitedListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitedListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// Run is Listen then Serve.
func (s *Server) Run(ctx context.Context) error {
	l, err := s.Listen()
	if err != nil {
		return err
	}
	return s.Serve(ctx, l)
}
