// Package handoff moves HTTP/1.1 keep-alive connections from a draining
// generation to the newer one, at request boundaries, so that clients never
// reconnect (hotswap run --handoff-keepalive; docs/handoff.md).
//
// It owns both sides of the protocol on a unix SOCK_SEQPACKET socket: the
// supervisor's [SetTarget] ("TARGET path"), the sender and the receiver of
// connections ("CONN" + one descriptor with SCM_RIGHTS, or "CONNS" + up to
// 32 in one message) in a [Hub], and the [Conn] and [Listener] through
// which net/http reads, so that a socket is given away from inside
// net/http's own read at a clean boundary.
//
// Server authors do not import it: reuseport.Serve opens the process's hub
// ([FromEnv]) and package reuseport/drain drives it. The dependency is one
// way: drain imports handoff, and handoff knows nothing of drain's Server —
// a server plugs in through [ListenOptions] and the [Conn] hooks.
//
// It must never call shutdown(2) on a connection (after a handover the
// socket is the next generation's), never read from a received socket
// before answering "OK" (the sender relies on that to keep serving it), and
// never import Kubernetes code.
package handoff
