// Package servers is hotswap's compatibility matrix: real servers nobody
// here wrote — nginx, HAProxy, Caddy, gunicorn, uvicorn, puma — each as Debian
// packages it, with its own configuration, run under hotswap as PID 1 and
// swapped 20 times under load (new-connection, keep-alive and long-idle
// pooled clients; package e2e/load, which counts every attempt and never
// retries). The harness is package e2e/swaptest.
//
// Every test asserts that each swap succeeded, that every old generation
// drained and exited by itself before --drain-timeout, and that no request
// on a new connection failed — except where a server's own drain is known
// to lose them (uvicorn: server.newConnLoss says why), which is measured
// and logged instead. Keep-alive failures are measured and logged, not
// asserted: whether a server closes an idle keep-alive connection while a
// client writes its next request on it is the server's drain behaviour,
// which docs/servers.md explains per server. Each test ends with a RESULT
// line, the row of the README's compatibility table.
//
// A test skips, saying why, when its server is not installed
// (hack/install-test-deps.sh installs them). Needs root (namespaces).
package servers
