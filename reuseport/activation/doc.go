// Package activation is the socket-activation protocol, both sides, and the
// sockets behind it: what hotswap's engine (the supervisor, PID 1) uses to
// bind the pod's listeners once and pass them to each generation, and what a
// server uses to take them.
//
// Supervisor side: [ParseAddr] and [Listen] bind listeners with SO_REUSEADDR
// and SO_REUSEPORT. [ExportFiles] duplicates them for a child (fds 3.., with
// LISTEN_FDS and LISTEN_FDNAMES) without switching the shared open file
// description to blocking mode (which (*net.TCPListener).File followed by
// (*os.File).Fd does, for every process that shares the socket). Children are
// started through [ShimCommand]: a re-exec of the hotswap binary that sets
// LISTEN_PID to its own PID and execve's the target (Go cannot run code
// between fork and exec); main calls [RunShimIfRequested] first thing, or
// imports reuseport/shim. [NewNotifySocket] receives sd_notify messages with
// the sender's kernel-verified credentials (SCM_CREDENTIALS), so only the
// right process counts.
//
// Server side: [Inherit] takes the listeners passed to this process
// (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES) and [Notify] sends sd_notify
// messages. Server authors use these through package reuseport.
//
// It holds no process-wide state: [Inherit] returns a value its caller owns.
// It never imports Kubernetes code, never waits for child processes (PID 1
// has exactly one reaper, in package entrypoint), and never calls
// shutdown(2) on a listening socket: the socket is shared by every
// generation.
package activation
