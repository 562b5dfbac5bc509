package entrypoint

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkReapZombies: a helper forks N children that exit at once, waits
// until all are zombies and exits, so N zombies reparent to us together.
// Reported: the wall time from the first to the last reap of that burst
// (ms-wall), and how many statuses of supervised children, started all
// along by four goroutines, were lost or wrong (lost, must be 0).
// Forking the zombies is not timed. N is 10,000 unless -short.
//
//	go test -run '^$' -bench BenchmarkReapZombies -benchtime 1x ./entrypoint
func BenchmarkReapZombies(b *testing.B) {
	n := 10000
	if testing.Short() {
		n = 1000
	}
	r := newTestReaper(b)
	null := devNull(b)
	for b.Loop() {
		var mu sync.Mutex
		var first, last time.Time
		var got atomic.Int64
		r.OnOrphan(func(int, ExitStatus) {
			now := time.Now()
			mu.Lock()
			if first.IsZero() {
				first = now
			}
			last = now
			mu.Unlock()
			got.Add(1)
		})
		spawner, err := r.Start(helperSpec(b, "zombies", strconv.Itoa(n)))
		if err != nil {
			b.Fatal(err)
		}
		// Supervised children all along, with distinct codes.
		stop := make(chan struct{})
		var started, bad atomic.Int64
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := w; ; i += 4 {
					select {
					case <-stop:
						return
					default:
					}
					code := i % 256
					p, err := r.Start(Spec{Path: "/bin/sh", Argv: []string{"sh", "-c", "exit " + strconv.Itoa(code)}, Env: []string{}, Files: []*os.File{null, null, null}})
					if err != nil {
						bad.Add(1)
						continue
					}
					started.Add(1)
					select {
					case <-p.Done():
						if p.Status().Code() != code {
							bad.Add(1)
						}
					case <-time.After(30 * time.Second):
						bad.Add(1)
					}
				}
			})
		}
		select {
		case <-spawner.Done():
		case <-time.After(30 * time.Minute):
			b.Fatal("zombie spawner never finished")
		}
		if st := spawner.Status(); st.Code() != 0 {
			b.Fatalf("spawner: %v", st)
		}
		deadline := time.Now().Add(30 * time.Second)
		for got.Load() < int64(n) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		close(stop)
		wg.Wait()
		if got.Load() != int64(n) {
			b.Fatalf("reaped %d of %d orphans", got.Load(), n)
		}
		mu.Lock()
		ended := spawner.Ended()
		if ended.Before(first) {
			first = ended
		}
		wall := last.Sub(first)
		mu.Unlock()
		b.ReportMetric(float64(wall.Microseconds())/1000, "ms-wall")
		b.ReportMetric(float64(n), "orphans")
		b.ReportMetric(float64(bad.Load()), "lost")
		b.ReportMetric(float64(started.Load()), "supervised")
		if bad.Load() > 0 {
			b.Errorf("%d supervised statuses lost or wrong", bad.Load())
		}
		r.OnOrphan(nil)
	}
}

// BenchmarkOrphanReapDelay: N orphans (bash processes that become orphans
// when their parent exits) each write the clock ($EPOCHREALTIME) just
// before exiting, 2ms apart; the reaper notes the clock when it reaps each.
// Reported: the delay from exit to reap, p50, p99 and max, in µs, and the
// most runnable tasks on the machine seen while the orphans exited
// (procs_running in /proc/stat, sampled every 2ms). The pipe-p50/p99 are
// the control: the same exits as seen by a goroutine reading a pipe each
// orphan writes to last, i.e. how late this process gets to run at all.
//
// The sub-benchmarks tell the reaper's share from the benchmark's own:
// all N orphans wake together when their parent exits (a herd of N bash
// processes on 2 cores). With settle=0 the first exits fall inside that
// herd, and every process on the machine, the reaper included, waits its
// turn behind up to N runnable ones; with settle=1.5s the herd has gone back
// to sleep before the first exit, and what remains is the reaper's wake-up
// path: SIGCHLD, the runtime's signal goroutine, the reaper goroutine,
// waitid, wait4.
//
// With REAP_TRACE=1 (root, tracefs) the kernel's own clock splits each
// delay (reaptrace_test.go): the orphan's last user-space steps
// (stamp-to-exit), its teardown to a zombie (exit-to-signal), SIGCHLD until
// our handler runs (signal-to-run), and from there to wait4 returning its
// PID (run-to-reap), of which runq-in-reap is our threads waiting on a run
// queue and reaper-own the rest. The trace costs a little on every
// syscall, so its runs are not the plain benchmark's numbers.
// REAP_TRACE_OUT=FILE keeps the raw trace.
//
//	go test -run '^$' -bench BenchmarkOrphanReapDelay -benchtime 1x ./entrypoint
func BenchmarkOrphanReapDelay(b *testing.B) {
	n := 1000
	if testing.Short() {
		n = 200
	}
	for _, settle := range []time.Duration{0, 1500 * time.Millisecond} {
		b.Run("settle="+settle.String(), func(b *testing.B) {
			r := newTestReaper(b)
			for b.Loop() {
				benchOrphanReapDelay(b, r, n, settle)
			}
		})
	}
}

func benchOrphanReapDelay(b *testing.B, r *Reaper, n int, settle time.Duration) {
	file := filepath.Join(b.TempDir(), "exits")
	var mu sync.Mutex
	reaped := map[int]int64{}
	r.OnOrphan(func(pid int, _ ExitStatus) {
		t := time.Now().UnixMicro()
		mu.Lock()
		reaped[pid] = t
		mu.Unlock()
	})
	defer r.OnOrphan(nil)
	// The control: each orphan's last act is to write its PID to this
	// pipe; a goroutine notes when it reads it. Same process, same exits,
	// same machine, but woken by the netpoller instead of SIGCHLD.
	pr, pw, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	defer pr.Close()
	told := map[int]int64{}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			t := time.Now().UnixMicro()
			if pid, err := strconv.Atoi(sc.Text()); err == nil {
				mu.Lock()
				told[pid] = t
				mu.Unlock()
			}
		}
	}()
	var trace *reapTrace
	if os.Getenv("REAP_TRACE") == "1" {
		if trace, err = startReapTrace(); err != nil {
			b.Logf("REAP_TRACE: no kernel trace, so no split of the delay: %v", err)
		} else {
			defer trace.close()
		}
	}
	spec := helperSpec(b, "orphans", strconv.Itoa(n), "2ms", settle.String(), file)
	spec.Files = []*os.File{nil, os.Stderr, os.Stderr, pw}
	p, err := r.Start(spec)
	pw.Close() // the orphans hold the write end: EOF once the last exits
	if err != nil {
		b.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(10 * time.Minute):
		b.Fatal("orphan spawner never finished")
	}
	// The sampler starts once the exits may start: settle from now.
	runnable := make(chan int, 1)
	stopSampling := make(chan struct{})
	go func() {
		time.Sleep(settle)
		most := 0
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				runnable <- most
				return
			case <-tick.C:
				most = max(most, procsRunning())
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		mu.Lock()
		k := len(reaped)
		mu.Unlock()
		if k >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stopSampling)
	var traced []byte
	if trace != nil {
		if traced, err = trace.stop(); err != nil {
			b.Fatal(err)
		}
		if out := os.Getenv("REAP_TRACE_OUT"); out != "" {
			if err := os.WriteFile(out, traced, 0o600); err != nil {
				b.Fatal(err)
			}
		}
	}
	f, err := os.Open(file)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	select {
	case <-readDone:
	case <-time.After(time.Minute):
		b.Fatal("control pipe never reached EOF")
	}
	var delays, control []int64
	stamps := map[int]int64{} // µs, CLOCK_MONOTONIC
	off := monoOffset()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var pid int
		var at float64 // seconds, µs resolution
		if _, err := fmtSscan(sc.Text(), &pid, &at); err != nil {
			continue
		}
		stamps[pid] = int64(math.Round(at*1e6)) - off
		mu.Lock()
		rt, ok := reaped[pid]
		ct, cok := told[pid]
		mu.Unlock()
		if ok {
			delays = append(delays, rt-int64(math.Round(at*1e6)))
		}
		if cok {
			control = append(control, ct-int64(math.Round(at*1e6)))
		}
	}
	if len(delays) != n {
		b.Fatalf("matched %d exits to reaps, want %d", len(delays), n)
	}
	if testing.Verbose() {
		b.Logf("delays in exit order (µs): %v", delays)
	}
	if len(control) != n {
		b.Fatalf("matched %d exits to control reads, want %d", len(control), n)
	}
	q := func(d []int64, p float64) float64 {
		slices.Sort(d)
		return float64(d[int(p*float64(len(d)-1))])
	}
	b.ReportMetric(q(delays, 0.5), "µs-p50")
	b.ReportMetric(q(delays, 0.99), "µs-p99")
	b.ReportMetric(float64(delays[len(delays)-1]), "µs-max")
	b.ReportMetric(q(control, 0.5), "µs-pipe-p50")
	b.ReportMetric(q(control, 0.99), "µs-pipe-p99")
	b.ReportMetric(float64(<-runnable), "max-runnable")
	if traced != nil {
		reportReapSplit(b, splitReaps(parseTrace(traced), stamps, os.Getpid()), n)
	}
}

// reportReapSplit reports where the delay went, by the kernel's clock
// (REAP_TRACE=1): p50, p99 and max of each segment, in ms.
func reportReapSplit(b *testing.B, splits []reapSplit, n int) {
	if len(splits) < n*9/10 {
		b.Fatalf("REAP_TRACE: only %d of %d orphans have every event (trace buffer too small?)", len(splits), n)
	}
	own, pending := 0, 0
	for _, s := range splits {
		if s.ownSignal {
			own++
		}
		if s.signalPending {
			pending++
		}
	}
	b.ReportMetric(float64(len(splits)), "traced")
	b.ReportMetric(float64(own), "own-signal")
	var table strings.Builder
	fmt.Fprintf(&table, "kernel clock, %d orphans, %d woke the reaper with their own SIGCHLD, %d found it already pending; ms:\n", len(splits), own, pending)
	fmt.Fprintf(&table, "%-15s %8s %8s %8s\n", "segment", "p50", "p99", "max")
	for _, seg := range reapSegments {
		d := make([]int64, len(splits))
		for i, s := range splits {
			d[i] = seg.get(s)
		}
		p50, p99, most := quantiles(d)
		b.ReportMetric(p50, seg.name+"-p50-ms")
		b.ReportMetric(p99, seg.name+"-p99-ms")
		b.ReportMetric(most, seg.name+"-max-ms")
		fmt.Fprintf(&table, "%-15s %8.3f %8.3f %8.3f\n", seg.name, p50, p99, most)
	}
	b.Log(table.String())
}

// procsRunning is the number of runnable tasks on the machine, from
// /proc/stat; 0 if it cannot be read.
func procsRunning() int {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "procs_running "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}
