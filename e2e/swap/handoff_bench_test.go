package swap

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/e2e/load"
	"github.com/hotswap-dev/hotswap/e2e/swaptest"
	"github.com/hotswap-dev/hotswap/hotswap"
)

// BenchmarkHandoffCompare measures, side by side in one run, what each way
// of stopping the old generation costs keep-alive clients: plain
// http.Server.Shutdown, reuseport's Drain (Connection: close, then
// Shutdown), and Drain with --handoff-keepalive. Each runs at keep-alive
// fractions 0.5 and 1.0, plus a pool of long-idle connections that check
// before reuse, under a paced load, in a network namespace of its own:
//
//	go test -run '^$' -bench BenchmarkHandoffCompare -benchtime 1x -timeout 3h ./e2e/swap
//
// HANDOFF_BENCH_SWAPS sets the swaps per configuration (default 100);
// HANDOFF_BENCH_STOPS picks stop modes (comma-separated: plain, drain,
// handoff; default all); HANDOFF_BENCH_FRACTIONS the keep-alive fractions
// (default 0.5,1.0); HANDOFF_BENCH_OUT, a directory, receives the
// results as JSON. The table goes to the benchmark log (docs/perf-handoff.md).
func BenchmarkHandoffCompare(b *testing.B) {
	if !swaptest.InNetns(b) {
		return
	}
	swaps := 100
	if n, err := strconv.Atoi(os.Getenv("HANDOFF_BENCH_SWAPS")); err == nil && n > 0 {
		swaps = n
	}
	stops := []string{"plain", "drain", "handoff"}
	if s := os.Getenv("HANDOFF_BENCH_STOPS"); s != "" {
		stops = strings.Split(s, ",")
	}
	fracs := []float64{0.5, 1.0}
	if s := os.Getenv("HANDOFF_BENCH_FRACTIONS"); s != "" {
		fracs = nil
		for _, f := range strings.Split(s, ",") {
			v, err := strconv.ParseFloat(f, 64)
			if err != nil || v < 0 || v > 1 {
				b.Fatalf("HANDOFF_BENCH_FRACTIONS: %q is not a fraction 0..1", f)
			}
			fracs = append(fracs, v)
		}
	}
	var results []handoffResult
	for _, stop := range stops {
		for _, frac := range fracs {
			res := handoffBenchRun(b, stop, frac, swaps)
			results = append(results, res)
			b.Logf("%s", res.row())
		}
	}
	var tb strings.Builder
	tb.WriteString(handoffHeader)
	for _, r := range results {
		tb.WriteString(r.row())
		tb.WriteString("\n")
	}
	b.Logf("results:\n%s", tb.String())
	if dir := os.Getenv("HANDOFF_BENCH_OUT"); dir != "" {
		js, _ := json.MarshalIndent(results, "", "  ")
		if err := os.WriteFile(filepath.Join(dir, "handoff-compare.json"), js, 0o644); err != nil {
			b.Error(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "handoff-compare.md"), []byte(tb.String()), 0o644); err != nil {
			b.Error(err)
		}
	}
	var failed, reconnects int64
	for _, r := range results {
		if r.Stop == "handoff" {
			failed += r.Failed
			reconnects += r.Reconnects.Total()
		}
	}
	b.ReportMetric(float64(failed), "handoff-failed")
	b.ReportMetric(float64(reconnects), "handoff-reconnects")
}

// handoffResult is one configuration's outcome.
type handoffResult struct {
	Stop              string          `json:"stop"` // plain, drain, handoff
	KeepAliveFraction float64         `json:"keepalive_fraction"`
	Clients           int             `json:"clients"` // keep-alive + new-connection clients
	IdlePool          int             `json:"idle_pool"`
	Swaps             int             `json:"swaps"`
	Succeeded         int             `json:"succeeded"`
	Requests          int64           `json:"requests"`
	Failed            int64           `json:"failed"`
	Failures          load.Failures   `json:"failures"`
	Reconnects        load.Reconnects `json:"reconnects"` // keep-alive + idle-pool clients
	// KeepAliveConns is the TCP connections keep-alive and idle-pool
	// clients opened in all (one each at start, if none was lost).
	KeepAliveConns int64             `json:"keepalive_conns"`
	SwapWindow     load.LatencyStats `json:"swap_window"`
	Baseline       load.LatencyStats `json:"baseline"`
	Elapsed        time.Duration     `json:"elapsed_ns"`
}

const handoffHeader = "| stop | keep-alive | swaps | requests | failed | reconnects (close/error/stale) | keep-alive conns | p99 swap windows | p99 baseline | p50 swap / base |\n|---|---|---|---|---|---|---|---|---|---|\n"

func (r handoffResult) row() string {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
	return fmt.Sprintf("| %s | %.1f | %d/%d | %d | %d | %d (%d/%d/%d) | %d | %s | %s | %s / %s |",
		r.Stop, r.KeepAliveFraction, r.Succeeded, r.Swaps, r.Requests, r.Failed,
		r.Reconnects.Total(), r.Reconnects.ServerClose, r.Reconnects.Error, r.Reconnects.Stale,
		r.KeepAliveConns, ms(r.SwapWindow.P99), ms(r.Baseline.P99), ms(r.SwapWindow.P50), ms(r.Baseline.P50))
}

func handoffBenchRun(b *testing.B, stop string, frac float64, swaps int) handoffResult {
	pc := swaptest.PodConfig{}
	switch stop {
	case "plain":
		pc.Serve = []string{"--plain-shutdown"}
	case "drain":
		pc.Serve = []string{"--grace", "500ms"}
	case "handoff":
		pc.Serve = []string{"--grace", "2s"}
		pc.Flags = []string{"--handoff-keepalive"}
	default:
		b.Fatalf("stop mode %q: want plain, drain or handoff", stop)
	}
	p := swaptest.StartPod(b, pc)
	cfg := load.Config{
		Addr:              p.Addr,
		Duration:          24 * time.Hour,
		Clients:           10,
		KeepAliveFraction: frac,
		Rate:              1000,
		// A few requests are in flight at each swap; few enough that
		// p99 measures the fast requests.
		SlowFraction: 0.005,
		SlowPath:     "/?sleep=50ms",
		IdlePool:     4,
		IdleFor:      700 * time.Millisecond,
		Timeout:      5 * time.Second,
	}
	r, err := load.Start(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	res := handoffResult{Stop: stop, KeepAliveFraction: frac, Clients: cfg.Clients, IdlePool: cfg.IdlePool, Swaps: swaps}
	start := time.Now()
	time.Sleep(10 * time.Second) // the no-swap baseline
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Hour)
	defer cancel()
	for i := range swaps {
		pause := 200 * time.Millisecond
		if i > 0 && i%100 == 0 {
			pause = 3 * time.Second // more quiet baseline in long runs
		}
		time.Sleep(pause)
		at := time.Now()
		r.MarkSwap(at)
		sr, err := p.Swap(ctx)
		if err != nil {
			b.Fatalf("%s %.1f: swap %d: %v", stop, frac, i, err)
		}
		if sr.Result == hotswap.ResultSucceeded && sr.ToGen > sr.FromGen {
			res.Succeeded++
		}
		if (i+1)%100 == 0 {
			pr := r.Progress()
			b.Logf("%s %.1f: %d swaps, %d requests, %d failed", stop, frac, i+1, pr.Attempts, pr.Failed)
		}
	}
	time.Sleep(3 * time.Second) // the last drain, then a quiet tail
	r.Stop()
	rep := r.Wait()
	res.Elapsed = time.Since(start)
	res.Requests, res.Failed, res.Failures = rep.Attempts, int64(rep.Failed()), rep.Failures
	res.Reconnects = rep.Reconnects()
	res.KeepAliveConns = rep.KeepAlive.Connections + rep.IdlePool.Connections
	res.SwapWindow, res.Baseline = rep.Latency.SwapWindow, rep.Latency.Baseline
	if rep.Failed() > 0 {
		b.Logf("%s %.1f load report:\n%s", stop, frac, swaptest.Indent(rep.String()))
	}
	_ = p.Signal(syscall.SIGTERM)
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	if _, err := p.Wait(wctx); err != nil {
		b.Logf("pod did not stop: %v", err)
	}
	return res
}
