package swap

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/e2e/load"
	"github.com/hotswap-dev/hotswap/e2e/swaptest"
	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/reuseport/activation"
)

// The 1,000-swap benchmarks. Each is one long run (b.N is ignored: run
// with -benchtime=1x), in a network namespace of its own:
//
//	go test -run '^$' -bench BenchmarkSwaps -benchtime 1x -timeout 2h ./e2e/swap
//
// SWAP_BENCH_SWAPS sets the number of swaps (default 1000); SWAP_BENCH_OUT,
// a directory, receives one JSON result per benchmark (hack/swap-bench.sh
// turns them into the table of docs/perf-swap.md).

// BenchResult is what one benchmark run measured.
type BenchResult struct {
	Name        string            `json:"name"`
	Mode        string            `json:"mode"`
	MigrateReq  string            `json:"tcp_migrate_req,omitempty"`
	Stop        string            `json:"stop"` // drain or plain-shutdown
	Swaps       int               `json:"swaps"`
	Succeeded   int               `json:"succeeded"`   // swaps whose outcome was a new serving generation
	Generations int               `json:"generations"` // distinct generations that answered requests
	Requests    int64             `json:"requests"`    // attempts
	Failures    load.Failures     `json:"failures"`    // by kind
	Overall     load.LatencyStats `json:"overall"`     // latency of successful requests
	SwapWindow  load.LatencyStats `json:"swap_window"` // within ±1s of a swap trigger
	Baseline    load.LatencyStats `json:"baseline"`    // the quiet periods
	Rate        float64           `json:"rate"`
	// Per swap, quantiles over all swaps, milliseconds.
	TriggerToStart Quant `json:"trigger_to_start_ms"` // trigger → hotswap started the child
	TriggerToReady Quant `json:"trigger_to_ready_ms"` // trigger → READY=1 seen, new generation serving
	TriggerToOld   Quant `json:"trigger_to_old_exited_ms"`
	ChildStart     Quant `json:"child_start_ms"` // the same command started alone: exec → READY=1
	// Overhead is hotswap's own part of trigger → ready: p50 of
	// TriggerToReady minus p50 of ChildStart.
	OverheadMs float64       `json:"overhead_ms"`
	Elapsed    time.Duration `json:"elapsed_ns"`
}

// Quant summarizes durations in milliseconds.
type Quant struct {
	N                  int
	P50, P90, P99, Max float64
	Mean               float64
}

func quant(ds []time.Duration) Quant {
	if len(ds) == 0 {
		return Quant{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	q := func(p float64) float64 { return ms(s[min(len(s)-1, int(p*float64(len(s))))]) }
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return Quant{N: len(s), P50: q(0.5), P90: q(0.9), P99: q(0.99), Max: ms(s[len(s)-1]), Mean: ms(sum / time.Duration(len(s)))}
}

func benchSwaps() int {
	if n, err := strconv.Atoi(os.Getenv("SWAP_BENCH_SWAPS")); err == nil && n > 0 {
		return n
	}
	return 1000
}

func BenchmarkSwapsHandoff(b *testing.B) {
	benchSwapRun(b, swaptest.PodConfig{}, "")
}

func BenchmarkSwapsReuseportMigrate(b *testing.B) {
	benchSwapRun(b, swaptest.PodConfig{Mode: hotswap.ModeReuseport}, "1")
}

func BenchmarkSwapsReuseportNoMigrate(b *testing.B) {
	benchSwapRun(b, swaptest.PodConfig{Mode: hotswap.ModeReuseport}, "0")
}

// BenchmarkSwapsHandoffPlainShutdown is BenchmarkSwapsHandoff with servers
// that stop with plain http.Server.Shutdown instead of reuseport's Drain.
func BenchmarkSwapsHandoffPlainShutdown(b *testing.B) {
	benchSwapRun(b, swaptest.PodConfig{Serve: []string{"--plain-shutdown"}}, "")
}

func benchSwapRun(b *testing.B, pc swaptest.PodConfig, migrate string) {
	if !swaptest.InNetns(b) {
		return
	}
	if migrate != "" {
		swaptest.SetMigrateReq(b, migrate == "1")
	}
	n := benchSwaps()
	res := BenchResult{Name: b.Name(), Mode: string(pc.Mode), MigrateReq: migrate, Stop: "drain", Swaps: n}
	if res.Mode == "" {
		res.Mode = string(hotswap.ModeHandoff)
	}
	if slices.Contains(pc.Serve, "--plain-shutdown") {
		res.Stop = "plain-shutdown"
	}
	p := swaptest.StartPod(b, pc)
	r, err := load.Start(context.Background(), swaptest.MixedLoad(p.Addr, 24*time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Stop(); <-r.Done() })
	// The child's own start, under the same load (CPU contention included),
	// during a quiet baseline period before the first swap.
	res.ChildStart = quant(childStartTimes(b, pc, 30))
	time.Sleep(time.Second)
	b.ResetTimer()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Minute)
	defer cancel()
	var toReady, toStart, toOld []time.Duration
	type done struct {
		at  time.Time
		res hotswap.SwapResult
	}
	var swaps []done
	for i := range n {
		pause := 100 * time.Millisecond
		if i > 0 && i%100 == 0 {
			pause = 3 * time.Second // quiet periods: the latency baseline
		}
		time.Sleep(pause)
		at := time.Now()
		r.MarkSwap(at)
		sr, err := p.Swap(ctx)
		if err != nil {
			b.Fatalf("swap %d: %v", i, err)
		}
		toReady = append(toReady, time.Since(at))
		if sr.Result == hotswap.ResultSucceeded && sr.ToGen > sr.FromGen {
			res.Succeeded++
		}
		swaps = append(swaps, done{at, sr})
		if (i+1)%100 == 0 {
			pr := r.Progress()
			b.Logf("%d swaps, %d requests, %d failed", i+1, pr.Attempts, pr.Failed)
		}
	}
	time.Sleep(3 * time.Second) // the last drain, then a quiet tail
	b.StopTimer()
	res.Elapsed = time.Since(start)
	r.Stop()
	rep := r.Wait()
	gt := p.GenTimes()
	for _, s := range swaps {
		if g := gt[s.res.ToGen]; g != nil && !g.Started.IsZero() {
			toStart = append(toStart, g.Started.Sub(s.at))
		}
		if g := gt[s.res.FromGen]; g != nil && !g.Exited.IsZero() {
			toOld = append(toOld, g.Exited.Sub(s.at))
		}
	}
	res.TriggerToReady, res.TriggerToStart, res.TriggerToOld = quant(toReady), quant(toStart), quant(toOld)
	res.OverheadMs = res.TriggerToReady.P50 - res.ChildStart.P50
	res.Requests, res.Failures, res.Rate = rep.Attempts, rep.Failures, rep.Rate
	res.Overall, res.SwapWindow, res.Baseline = rep.Latency.Overall, rep.Latency.SwapWindow, rep.Latency.Baseline
	gens := map[string]bool{}
	for _, g := range rep.Generations {
		gens[g.Generation] = true
	}
	res.Generations = len(gens)

	b.Logf("load report:\n%s", swaptest.Indent(rep.String()))
	js, _ := json.MarshalIndent(res, "", "  ")
	b.Logf("result:\n%s", js)
	if dir := os.Getenv("SWAP_BENCH_OUT"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, b.Name()+".json"), js, 0o644); err != nil {
			b.Error(err)
		}
	}
	b.ReportMetric(float64(res.Failures.Total()), "failed")
	b.ReportMetric(float64(res.Requests), "requests")
	b.ReportMetric(res.TriggerToReady.P50, "ready-p50-ms")
}

// childStartTimes starts the command hotswap runs (the wrapper script and
// `hotswap serve`), alone, k times, and measures exec → READY=1: the part
// of a swap that is the child's own start, not hotswap's.
func childStartTimes(b *testing.B, pc swaptest.PodConfig, k int) []time.Duration {
	dir := b.TempDir()
	ns, err := activation.NewNotifySocket(filepath.Join(dir, "notify.sock"))
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Close()
	bin := swaptest.Bin(b)
	addr := fmt.Sprintf("127.0.0.1:%d", swaptest.FreePort(b))
	args := []string{"serve", "--addr", addr}
	args = append(args, pc.Serve...)
	var out []time.Duration
	for range k {
		// Through sh, as the tests' wrapper script does.
		cmd := exec.Command("/bin/sh", append([]string{"-c", `read -r x < /dev/null; exec "$0" "$@"`, bin}, args...)...)
		cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+ns.Path())
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		for {
			m, err := ns.Recv()
			if err != nil {
				b.Fatal(err)
			}
			if m.Fields["READY"] == "1" && m.PID == cmd.Process.Pid {
				break
			}
		}
		out = append(out, time.Since(start))
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
	return out
}
