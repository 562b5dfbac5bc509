// Command swap-bench-table prints the JSON results of e2e/swap's benchmarks
// (written to $SWAP_BENCH_OUT) as the Markdown tables of docs/perf-swap.md.
//
//	go run ./hack/swap-bench-table /tmp/swap-bench.*/*.json
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

type latency struct {
	Count  int64         `json:"count"`
	Failed int64         `json:"failed"`
	P50    time.Duration `json:"p50_ns"`
	P99    time.Duration `json:"p99_ns"`
}

type quant struct {
	N                        int
	P50, P90, P99, Max, Mean float64
}

type result struct {
	Name        string  `json:"name"`
	Mode        string  `json:"mode"`
	MigrateReq  string  `json:"tcp_migrate_req"`
	Stop        string  `json:"stop"`
	Swaps       int     `json:"swaps"`
	Succeeded   int     `json:"succeeded"`
	Generations int     `json:"generations"`
	Requests    int64   `json:"requests"`
	Rate        float64 `json:"rate"`
	Failures    struct {
		Refused, Reset, EOF, Timeout, Other int64
		Status                              int64 `json:"non_2xx"`
		OnReused                            int64 `json:"on_reused"`
	} `json:"failures"`
	Overall        latency       `json:"overall"`
	SwapWindow     latency       `json:"swap_window"`
	Baseline       latency       `json:"baseline"`
	TriggerToStart quant         `json:"trigger_to_start_ms"`
	TriggerToReady quant         `json:"trigger_to_ready_ms"`
	TriggerToOld   quant         `json:"trigger_to_old_exited_ms"`
	ChildStart     quant         `json:"child_start_ms"`
	OverheadMs     float64       `json:"overhead_ms"`
	Elapsed        time.Duration `json:"elapsed_ns"`
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/1e6) }

func main() {
	var rs []result
	for _, f := range os.Args[1:] {
		b, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		var r result
		if err := json.Unmarshal(b, &r); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", f, err)
			os.Exit(1)
		}
		rs = append(rs, r)
	}
	fmt.Println("| run | mode | tcp_migrate_req | old stops with | swaps → new generation (answered) | requests (req/s) | failed: refused / reset / eof / timeout / non-2xx / other | p50 / p99 overall ms | p50 / p99 ±1 s of swaps ms | p50 / p99 quiet ms |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rs {
		f := r.Failures
		mig := r.MigrateReq
		if mig == "" {
			mig = "—"
		}
		fmt.Printf("| %s | %s | %s | %s | %d/%d (%d) | %d (%.0f) | **%d**: %d / %d / %d / %d / %d / %d | %s / %s | %s / %s | %s / %s |\n",
			r.Name, r.Mode, mig, r.Stop, r.Succeeded, r.Swaps, r.Generations, r.Requests, r.Rate,
			f.Refused+f.Reset+f.EOF+f.Timeout+f.Status+f.Other, f.Refused, f.Reset, f.EOF, f.Timeout, f.Status, f.Other,
			ms(r.Overall.P50), ms(r.Overall.P99), ms(r.SwapWindow.P50), ms(r.SwapWindow.P99), ms(r.Baseline.P50), ms(r.Baseline.P99))
	}
	fmt.Println()
	fmt.Println("| run | trigger → child started p50 / p99 ms | trigger → new ready p50 / p99 ms | trigger → old exited p50 / p99 ms | child alone: exec → READY=1 p50 / p99 ms | hotswap overhead (p50) ms |")
	fmt.Println("| --- | --- | --- | --- | --- | --- |")
	for _, r := range rs {
		fmt.Printf("| %s | %.1f / %.1f | %.1f / %.1f | %.1f / %.1f | %.1f / %.1f | %.1f |\n", r.Name,
			r.TriggerToStart.P50, r.TriggerToStart.P99, r.TriggerToReady.P50, r.TriggerToReady.P99,
			r.TriggerToOld.P50, r.TriggerToOld.P99, r.ChildStart.P50, r.ChildStart.P99, r.OverheadMs)
	}
}
