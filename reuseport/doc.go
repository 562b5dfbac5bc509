// Package reuseport is what a Go server imports to become swap-ready under
// hotswap: one call, or a handful of pieces, and nothing else.
//
//	err := reuseport.ListenAndServe("http", ":8080", &http.Server{Handler: h})
//
// ListenAndServe is [Listener] + [Serve] + [Steer] + [Ready], then, on
// SIGTERM or SIGINT, [Stopping] and [Server.Drain]. Use those pieces directly
// for more control. Under hotswap the listener is the one PID 1 holds (fd
// 3..); started standalone, the server binds the fallback address itself with
// SO_REUSEPORT, so the same binary works in both modes. Servers written for
// systemd (for example with go-systemd's activation package) work unchanged.
//
// Why Drain and not http.Server.Shutdown: Shutdown closes idle keep-alive
// connections while their clients may be sending the next request on them
// (the client sees EOF or a reset and, unless it retries, a failed request),
// and it can return while a connection that was accepted a moment earlier is
// not yet tracked, so the process exits under it. Drain stops accepting,
// answers every request for a grace period with "Connection: close" (so each
// keep-alive client learns to reconnect, to the new generation, at a request
// boundary), and only then shuts down. Measured on hotswap's machines, plain
// Shutdown loses a few requests per 20 swaps; Drain loses none.
//
// Keep-alive handoff: when the supervisor sets HOTSWAP_HANDOFF_SOCKET
// (hotswap run --handoff-keepalive), Serve also receives HTTP/1.1 keep-alive
// connections handed over by older generations, and Drain, once hotswap
// names the newer generation, hands its own over at request boundaries (the
// socket itself, with SCM_RIGHTS) instead of closing them, so clients never
// reconnect. TLS and HTTP/2 connections drain normally. See docs/handoff.md.
//
// Steering is explicit: under hotswap --mode reuseport, [Steer] makes the
// listener [Listener] bound take every new connection of its SO_REUSEPORT
// group, so the previous generation's closes idle. [Ready] only notifies.
// When hotswap steers the group itself (its default since it does so for
// any server; HOTSWAP_REUSEPORT_STEERED=1), [Steer] does nothing.
//
// # The packages under it
//
// This package is a facade; each role lives in its own package, and a server
// author needs none of them:
//
//   - reuseport/activation: the socket-activation protocol, both sides
//     (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES; sd_notify with the
//     SCM_CREDENTIALS receiver), SO_REUSEPORT listeners and the exec shim.
//     hotswap's engine (the supervisor, PID 1) uses it.
//   - reuseport/drain: an http.Server that drains without dropping a request.
//   - reuseport/handoff: keep-alive connection handoff (the supervisor's
//     SetTarget, the sender and receiver of connections).
//   - reuseport/steer: the CBPF program that steers a SO_REUSEPORT group.
//   - reuseport/shim: runs the exec shim from a package initializer.
//
// The dependency is one way: this package → drain → handoff → activation,
// and steer → activation. Its only state is what the process inherited and
// bound (read on first use); its tests reset it.
//
// # What this package must never do
//
// It (and every package under it) never imports Kubernetes code (a binary
// built without the kube features must not link client-go), never waits for
// child processes (PID 1 has exactly one reaper, in package entrypoint), and
// never calls shutdown(2) on a listening socket or on a handed-over
// connection: the socket is shared by (or now belongs to) another generation,
// and shutdown acts on the socket, not on this process's descriptor.
package reuseport
