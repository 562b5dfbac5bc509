// Package swap holds hotswap's end-to-end swap tests and benchmarks: hotswap
// runs as PID 1 in a fresh PID + mount namespace, inside a network namespace
// of the test's own (private loopback; net.ipv4.tcp_migrate_req set there
// only), with the load generator of package e2e/load driving it over
// loopback while swaps are triggered through the control socket or SIGUSR2.
//
// Every test asserts that no request failed. The 1,000-swap runs are
// benchmarks (see docs/perf-swap.md and hack/swap-bench.sh), not tests.
//
// How a test runs:
//
//   - The test re-runs itself (the test binary, -test.run=^Name$) under
//     `unshare --net`, so the whole test body, its load generator included,
//     lives in a network namespace with only a loopback interface, which the
//     child brings up itself. Nothing leaves that namespace.
//   - hotswap starts with CLONE_NEWPID|CLONE_NEWNS: it is PID 1 of its own PID
//     namespace (with its own /proc) and shares the test's network namespace,
//     so the load reaches it on 127.0.0.1.
//   - The control socket lives in the test's temporary directory, a path both
//     sides see; SIGUSR2 and SIGTERM are sent to PID 1's PID as the test sees it.
//
// Faulty releases: until release sources (hotswap/source) can hand the
// engine a different command, the command hotswap runs is a wrapper script,
// DIR/run.sh, which execs `hotswap serve` with the flags it reads from
// DIR/flags at each start. A test rewrites DIR/flags before a swap to make
// the next generation crash at start, never become ready, exit during the
// old one's drain or ignore the stop signal. The script execs, so the
// server keeps the PID hotswap started (LISTEN_PID and sd_notify's main-PID
// check still hold).
//
// Needs root (namespaces); tests skip otherwise.
package swap
