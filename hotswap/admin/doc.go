// Package admin serves hotswap's admin HTTP endpoint (--admin-addr):
// /metrics for Prometheus, /healthz (the process is alive) and /readyz
// (a generation serves).
//
// It owns the metrics and their names (README.md lists them), written in
// the Prometheus text format by VictoriaMetrics/metrics. It is a
// hotswap.Observer: it learns generations, swaps and drains from the
// engine's events, and reads counters that other packages own (orphans reaped, live children,
// child restarts, report errors) through small getter functions, so it
// imports neither entrypoint nor hotswap/kube.
//
// It bounds what its clients can hold in PID 1 (open connections, idle
// keep-alive time, slow requests): the port is on the pod network and
// usually on a Service.
//
// It must never: block Observe, register on the library's global set (each
// Server has its own), or change anything about serving — it only
// reports.
package admin
