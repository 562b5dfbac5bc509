// Package pid1 holds the end-to-end tests of hotswap as an init: the real
// static binary runs as PID 1 of a new PID and mount namespace (and, for the
// subreaper cases, as a child of a PID 1 that never reaps), with real
// processes, real signals, a read-only root and an unprivileged user. The
// test binary doubles as every helper process (the children that record
// signals, leave orphans or daemons behind, and the namespace's first
// process), so nothing else needs building.
//
// Benchmarks here measure what the README reports: time from hotswap's start
// to its child's exec, request throughput through hotswap against the
// server run directly, idle RSS and binary size. They report numbers; no
// test asserts a duration.
package pid1
