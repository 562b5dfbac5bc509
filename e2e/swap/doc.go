// Package swap holds hotswap's end-to-end swap tests and benchmarks with the
// example server (`hotswap serve`): swaps under mixed load in handoff and
// reuseport mode, keep-alive handoff, and the faults (a new generation that
// crashes at start, is never ready, exits during the old one's drain or
// ignores the stop signal). The harness — hotswap as PID 1 in its own PID
// and network namespace, the load, the scripted swaps — is package
// e2e/swaptest.
//
// Every test asserts that no request failed. The 1,000-swap runs are
// benchmarks (see docs/perf-swap.md and hack/swap-bench.sh), not tests.
//
// Needs root (namespaces); tests skip otherwise.
package swap
