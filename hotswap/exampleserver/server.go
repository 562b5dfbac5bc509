package exampleserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hotswap-dev/hotswap/reuseport"
)

// Options configure the example server.
type Options struct {
	// Addr is bound with SO_REUSEPORT when no listener named "http" is
	// inherited (":8080").
	Addr string
	// Version is reported in X-Hotswap-Version; default $HOTSWAP_VERSION.
	Version string
	// Grace is how long draining answers with "Connection: close".
	Grace time.Duration
	// StartDelay sleeps before reporting ready (a slow start).
	StartDelay time.Duration

	// Faults, for tests of broken releases.
	ExitAtStart    int           // exit with this code before listening (0: off)
	NeverReady     bool          // serve but never send READY=1
	ExitAfterReady time.Duration // exit 1 this long after ready (0: off)
	IgnoreTerm     bool          // ignore SIGTERM (the drain deadline must kill it)
	// UnhealthyAfter makes every request (and /healthz) answer 503 this
	// long after ready: a release that is ready but goes bad, for the
	// post-swap bake and the fleet rollout (0: off).
	UnhealthyAfter time.Duration
	// ExitDrain makes ExitAfterReady a clean failure: drain (stop
	// accepting, finish in-flight requests) and then exit 1, like a server
	// that gives up after a failed self-check, instead of crashing.
	ExitDrain bool

	// PlainShutdown stops with plain http.Server.Shutdown instead of
	// reuseport's Drain, to measure what Drain saves (docs/perf-swap.md).
	PlainShutdown bool
}

// Run serves until SIGTERM/SIGINT and a clean drain. It returns the
// process's exit code.
func Run(o Options, log *slog.Logger) int {
	if o.ExitAtStart != 0 {
		log.Error("exiting at start, as asked (--exit-at-start)", "code", o.ExitAtStart)
		return o.ExitAtStart
	}
	if o.Version == "" {
		o.Version = os.Getenv("HOTSWAP_VERSION")
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	gen := os.Getenv("HOTSWAP_GENERATION")
	pid := strconv.Itoa(os.Getpid())

	var sickAt atomic.Pointer[time.Time] // set at ready with UnhealthyAfter
	sick := func(w http.ResponseWriter) bool {
		if t := sickAt.Load(); t != nil && time.Now().After(*t) {
			w.Header().Set("X-Hotswap-Version", o.Version)
			http.Error(w, "unhealthy, as asked (--unhealthy-after)", http.StatusServiceUnavailable)
			return true
		}
		return false
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !sick(w) {
			fmt.Fprintln(w, "ok")
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if sick(w) {
			return
		}
		if s := r.URL.Query().Get("sleep"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d < 0 || d > time.Minute {
				http.Error(w, "sleep: want a duration up to 1m, e.g. 50ms", http.StatusBadRequest)
				return
			}
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		h := w.Header()
		h.Set("X-Hotswap-Version", o.Version)
		h.Set("X-Hotswap-Generation", gen)
		h.Set("X-Hotswap-Pid", pid)
		h.Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "hello from hotswap example server: version=%s generation=%s pid=%s\n", o.Version, gen, pid)
	})

	ln, err := reuseport.Listener("http", o.Addr)
	if err != nil {
		log.Error("listen", "err", err)
		return 1
	}
	stop := make(chan os.Signal, 1)
	if o.IgnoreTerm {
		signal.Ignore(syscall.SIGTERM)
		signal.Notify(stop, syscall.SIGINT)
	} else {
		signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 90 * time.Second}
	srv := reuseport.Serve(hs, ln)
	time.Sleep(o.StartDelay)
	if !o.NeverReady {
		reuseport.Steer() // under --mode reuseport: take the group's new connections
		if err := reuseport.Ready(); err != nil {
			log.Warn("sd_notify", "err", err)
		}
	}
	if o.UnhealthyAfter > 0 {
		t := time.Now().Add(o.UnhealthyAfter)
		sickAt.Store(&t)
	}
	log.Debug("serving", "addr", ln.Addr().String(), "version", o.Version, "generation", gen, "pid", pid)
	var crash <-chan time.Time
	if o.ExitAfterReady > 0 {
		crash = time.After(o.ExitAfterReady)
	}
	select {
	case <-crash:
		log.Error("exiting after ready, as asked (--exit-after-ready)", "drain", o.ExitDrain)
		if o.ExitDrain {
			ctx, cancel := context.WithTimeout(context.Background(), o.Grace+30*time.Second)
			defer cancel()
			_ = srv.Drain(ctx, o.Grace)
		}
		return 1
	case <-srv.Done():
		if err := srv.Err(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("serve", "err", err)
			return 1
		}
		return 0
	case <-stop:
	}
	_ = reuseport.Stopping()
	ctx, cancel := context.WithTimeout(context.Background(), o.Grace+30*time.Second)
	defer cancel()
	if o.PlainShutdown {
		if err := hs.Shutdown(ctx); err != nil {
			log.Error("shutdown", "err", err)
			return 1
		}
		return 0
	}
	if err := srv.Drain(ctx, o.Grace); err != nil {
		log.Error("drain", "err", err)
		return 1
	}
	return 0
}
