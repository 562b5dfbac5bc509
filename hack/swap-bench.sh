#!/usr/bin/env bash
# Runs the swap benchmarks of e2e/swap (1,000 swaps each under mixed load,
# hotswap as PID 1, each in a network namespace of its own) and prints the
# results as the Markdown table of docs/perf-swap.md. Needs root. Long:
# about 5 minutes per benchmark on 2 cores.
#
#   hack/swap-bench.sh                      all four runs, 1,000 swaps each
#   SWAP_BENCH_SWAPS=100 hack/swap-bench.sh  shorter
#   hack/swap-bench.sh 'Handoff$'            only the benchmarks matching a regexp
set -euo pipefail
cd "$(dirname "$0")/.."
pattern=${1:-.}
out=${SWAP_BENCH_OUT:-$(mktemp -d /tmp/swap-bench.XXXXXX)}
mkdir -p "$out"
export SWAP_BENCH_OUT=$out
echo "results in $out" >&2
go test -count=1 -run '^$' -bench "BenchmarkSwaps.*${pattern}" -benchtime 1x -timeout 3h ./e2e/swap | tee "$out/bench.log" >&2
go run ./hack/swap-bench-table "$out"/*.json
