// Package reuseport owns hotswap's sockets: listeners bound with
// SO_REUSEADDR and SO_REUSEPORT, passing them to a child process as fds 3..
// with the systemd socket-activation protocol (LISTEN_FDS, LISTEN_FDNAMES,
// LISTEN_PID), and sd_notify readiness messages. It is also the small
// library a Go server imports to become swap-ready.
//
// # For server authors
//
// A Go HTTP server becomes swap-ready with one call:
//
//	err := reuseport.ListenAndServe("http", ":8080", &http.Server{Handler: h})
//
// ListenAndServe is [Listener] + [Serve] + [Ready], then, on SIGTERM or
// SIGINT, [Stopping] and [Server.Drain]. Use those pieces directly for more
// control. Under hotswap the listener is the one PID 1 holds (fd 3..); started
// standalone, the server binds the fallback address itself with SO_REUSEPORT,
// so the same binary works in both modes. Servers written for systemd (for
// example with go-systemd's activation package) work unchanged.
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
// Keep-alive handoff: when the supervisor sets [HandoffSocketEnv] (hotswap
// run --handoff-keepalive), Serve also receives HTTP/1.1 keep-alive
// connections handed over by older generations, and Drain, once told where
// to send ([SetHandoffTarget]), hands its own to the newer generation at
// request boundaries (the socket itself, with SCM_RIGHTS) instead of closing
// them, so clients never reconnect. TLS and HTTP/2 connections drain
// normally. See docs/handoff.md.
//
// # For the supervisor (hotswap's engine, PID 1)
//
// [ParseAddr] and [Listen] bind the pod's listeners once. [ExportFiles]
// duplicates them for a child without switching the shared open file
// description to blocking mode (which (*net.TCPListener).File followed by
// (*os.File).Fd does, for every process that shares the socket). Children are
// started through [ShimCommand]: a re-exec of the hotswap binary that sets
// LISTEN_PID to its own PID and execve's the target (Go cannot run code
// between fork and exec); main calls [RunShimIfRequested] first thing.
// [NewNotifySocket] receives sd_notify messages with the sender's kernel-
// verified credentials (SCM_CREDENTIALS), so only the right process counts.
//
// # What this package must never do
//
// It never imports Kubernetes code (a binary built without the kube features
// must not link client-go), never waits for child processes (PID 1 has exactly
// one reaper, in package entrypoint), and never calls shutdown(2) on a
// listening socket or on a handed-over connection: the socket is shared by
// (or now belongs to) another generation, and shutdown acts on the socket,
// not on this process's descriptor.
package reuseport
