package load

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Runner is one load run in progress. Its methods are safe for concurrent use.
type Runner struct {
	cfg   Config
	addr  string // resolved Addr
	start time.Time

	reqKeep  [2][]byte // [slow] requests for keep-alive clients
	reqClose [2][]byte // [slow] requests with Connection: close

	stopped  atomic.Bool
	stopCh   chan struct{}
	stopOnce sync.Once
	aborted  atomic.Bool
	issued   atomic.Int64
	dialCtx  context.Context
	cancel   context.CancelFunc
	timer    *time.Timer

	marksMu sync.Mutex
	marks   atomic.Pointer[[]int64] // sorted, ns since start; copy on write

	versions *tracker
	workers  []*worker
	wg       sync.WaitGroup
	done     chan struct{}
	report   *Report
	ctxErr   error
}

// Progress is a live count of a run's attempts so far.
type Progress struct {
	// Attempts is the number of attempts finished.
	Attempts int64
	// Failed is the number of those that failed.
	Failed int64
}

// Run runs a load described by cfg until its Duration or Requests bound and
// returns the report. If ctx is cancelled first, in-flight attempts are cut
// short (counted as Aborted, not failed) and Run returns the report with
// ctx's error. Use Start instead to mark swaps during the run.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	r, err := Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	rep := r.Wait()
	return rep, r.ctxErr
}

// Start validates cfg, starts the run in the background and returns its
// Runner. The run ends by itself (Duration, Requests), by Stop, or when ctx
// is cancelled; Wait returns its report.
func Start(ctx context.Context, cfg Config) (*Runner, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ta, err := net.ResolveTCPAddr("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("load: resolve %s: %w", cfg.Addr, err)
	}
	r := &Runner{
		cfg:      cfg,
		addr:     ta.String(),
		stopCh:   make(chan struct{}),
		versions: newTracker(),
		done:     make(chan struct{}),
	}
	for i, p := range []string{cfg.Path, cfg.SlowPath} {
		r.reqKeep[i] = buildRequest(cfg.Host, p, false)
		r.reqClose[i] = buildRequest(cfg.Host, p, true)
	}
	r.marks.Store(new([]int64))
	r.dialCtx, r.cancel = context.WithCancel(context.Background())

	id := 0
	for _, g := range []struct {
		class Class
		n     int
	}{{KeepAlive, cfg.KeepAlive}, {NewConn, cfg.NewConn}, {IdlePool, cfg.IdlePool}} {
		for range g.n {
			r.workers = append(r.workers, newWorker(r, g.class, id))
			id++
		}
	}

	r.start = time.Now()
	r.timer = time.AfterFunc(cfg.Duration, r.Stop)
	stopWatch := context.AfterFunc(ctx, r.abort)
	r.wg.Add(len(r.workers))
	for _, w := range r.workers {
		go w.run()
	}
	go func() {
		r.wg.Wait()
		end := time.Now()
		stopWatch()
		if r.aborted.Load() {
			r.ctxErr = fmt.Errorf("load: run aborted: %w", ctx.Err())
		}
		r.timer.Stop()
		r.cancel()
		r.report = r.buildReport(end)
		close(r.done)
	}()
	return r, nil
}

// Config returns the run's configuration with defaults applied.
func (r *Runner) Config() Config { return r.cfg }

// StartTime returns when the run started.
func (r *Runner) StartTime() time.Time { return r.start }

// MarkSwap records a swap at time t (normally the moment the swap was
// triggered). Attempts within Config.SwapWindow of t are reported in the swap
// window. Call it within Config.MarkLag after t and before the run ends;
// later marks are listed but may miss attempts already classified.
func (r *Runner) MarkSwap(t time.Time) {
	off := t.Sub(r.start).Nanoseconds()
	r.marksMu.Lock()
	defer r.marksMu.Unlock()
	old := *r.marks.Load()
	m := make([]int64, len(old), len(old)+1)
	copy(m, old)
	i, _ := slices.BinarySearch(m, off)
	m = slices.Insert(m, i, off)
	r.marks.Store(&m)
}

// Stop ends the run early: no new attempt starts; attempts in flight finish
// (each within Config.Timeout). It does not wait: use Wait.
func (r *Runner) Stop() {
	r.stopOnce.Do(func() {
		r.stopped.Store(true)
		close(r.stopCh)
	})
}

// abort stops the run and cuts attempts in flight short.
func (r *Runner) abort() {
	r.aborted.Store(true)
	r.Stop()
	r.cancel()
	past := time.Unix(1, 0)
	for _, w := range r.workers {
		w.mu.Lock()
		if w.conn != nil {
			_ = w.conn.SetDeadline(past)
		}
		w.mu.Unlock()
	}
}

// Done returns a channel closed when the run has ended and its report is ready.
func (r *Runner) Done() <-chan struct{} { return r.done }

// Wait waits for the run to end and returns its report.
func (r *Runner) Wait() *Report {
	<-r.done
	return r.report
}

// Progress returns the attempts finished so far.
func (r *Runner) Progress() Progress {
	var p Progress
	for _, w := range r.workers {
		p.Attempts += w.progAttempts.Load()
		p.Failed += w.progFailed.Load()
	}
	return p
}

// FirstSeen returns when a response carrying X-Hotswap-Version: version
// was first received, if one was.
func (r *Runner) FirstSeen(version string) (time.Time, bool) {
	at, ok, _ := r.versions.firstSeen(version)
	if !ok {
		return time.Time{}, false
	}
	return r.start.Add(time.Duration(at)), true
}

// WaitVersion waits until a response carrying X-Hotswap-Version: version
// has been received and returns when the first one was. It fails if ctx
// ends or the run ends first.
func (r *Runner) WaitVersion(ctx context.Context, version string) (time.Time, error) {
	for {
		at, ok, changed := r.versions.firstSeen(version)
		if ok {
			return r.start.Add(time.Duration(at)), nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("load: wait for version %q: %w", version, ctx.Err())
		case <-r.done:
			if at, ok, _ := r.versions.firstSeen(version); ok {
				return r.start.Add(time.Duration(at)), nil
			}
			return time.Time{}, fmt.Errorf("load: run ended before version %q answered", version)
		}
	}
}

// sleep waits for d, or until the run stops; it reports whether the run
// goes on.
func (r *Runner) sleep(t *time.Timer, d time.Duration) bool {
	if d <= 0 {
		return !r.stopped.Load()
	}
	t.Reset(d)
	select {
	case <-t.C:
		return !r.stopped.Load()
	case <-r.stopCh:
		t.Stop()
		return false
	}
}

// next reports whether a client may start another attempt.
func (r *Runner) next() bool {
	if r.stopped.Load() {
		return false
	}
	if r.cfg.Requests > 0 && r.issued.Add(1) > r.cfg.Requests {
		r.Stop()
		return false
	}
	return true
}

// inWindow reports whether [start, end] (ns since start) comes within
// SwapWindow of a mark.
func inWindow(marks []int64, start, end, window int64) bool {
	i, _ := slices.BinarySearch(marks, start-window)
	return i < len(marks) && marks[i] <= end+window
}
