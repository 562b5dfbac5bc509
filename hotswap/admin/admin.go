package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

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
	reg  *prometheus.Registry

	ready      atomic.Bool
	generation prometheus.Gauge
	swaps      *prometheus.CounterVec
	swapDur    *prometheus.HistogramVec
	drainDur   prometheus.Histogram

	mu          sync.Mutex
	lastCounted uint64            // highest swap ID counted
	draining    map[int]time.Time // generation → when its drain was first seen
}

var _ hotswap.Observer = (*Server)(nil)

// New builds the metrics and the handler; Run serves them.
func New(opts Options, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{opts: opts, log: log.With("component", "admin"), reg: prometheus.NewRegistry(), draining: map[int]time.Time{}}
	s.generation = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hotswap_generation", Help: "Serving generation number (0 when none serves).",
	})
	s.swaps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hotswap_swaps_total", Help: "Finished swap attempts by result (succeeded, failed, rejected, canceled).",
	}, []string{"result"})
	s.swapDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "hotswap_swap_duration_seconds", Help: "Time from an accepted trigger to the new generation ready (or the failure), by result.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
	}, []string{"result"})
	s.drainDur = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "hotswap_drain_duration_seconds", Help: "Time from the stop signal to an old generation's exit.",
		Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
	})
	for _, r := range []hotswap.Result{hotswap.ResultSucceeded, hotswap.ResultFailed, hotswap.ResultRejected, hotswap.ResultCanceled} {
		s.swaps.WithLabelValues(string(r)) // export zeros, so rate() works from the first swap
	}
	readyGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "hotswap_ready", Help: "1 when a generation serves (what /readyz answers), else 0.",
	}, func() float64 {
		if s.ready.Load() {
			return 1
		}
		return 0
	})
	s.reg.MustRegister(s.generation, s.swaps, s.swapDur, s.drainDur, readyGauge,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if f := opts.LiveChildren; f != nil {
		s.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hotswap_children", Help: "Live child processes (all generations).",
		}, func() float64 { return float64(f()) }))
	}
	for _, c := range []struct {
		name, help string
		f          func() uint64
	}{
		{"hotswap_orphans_reaped_total", "Orphaned processes reparented to hotswap and reaped.", opts.OrphansReaped},
		{"hotswap_child_restarts_total", "Restarts of the serving child after it exited (--on-exit=restart).", opts.ChildRestarts},
		{"hotswap_report_errors_total", "Failed Kubernetes reports (patches, events); serving is unaffected.", opts.ReportErrors},
	} {
		if c.f != nil {
			f := c.f
			s.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help},
				func() float64 { return float64(f()) }))
		}
	}
	return s
}

// Registry returns the Server's registry, for registering more collectors.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Ready reports what /readyz answers: whether a generation serves.
func (s *Server) Ready() bool { return s.ready.Load() }

// Observe updates the metrics from e. It takes one short lock.
func (s *Server) Observe(e hotswap.Event) {
	st := e.Status
	s.generation.Set(float64(st.Generation))
	s.ready.Store(st.Generation > 0 && (st.Phase == hotswap.PhaseServing || st.Phase == hotswap.PhaseSwapping))

	s.mu.Lock()
	defer s.mu.Unlock()
	// Swap IDs come from one counter and swaps finish in order, so a result
	// with an ID above the last counted one is new, whichever event carries it.
	for _, r := range []*hotswap.SwapResult{st.LastSwap, st.LastRejected} {
		if r != nil && r.ID > s.lastCounted {
			s.swaps.WithLabelValues(string(r.Result)).Inc()
			s.swapDur.WithLabelValues(string(r.Result)).Observe(r.Duration.Seconds())
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
		s.drainDur.Observe(now.Sub(start).Seconds())
		delete(s.draining, gen)
	}
}

// Handler returns the endpoint's routes: /metrics, /healthz, /readyz.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
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
