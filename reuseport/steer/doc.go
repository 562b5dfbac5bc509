// Package steer makes a ready generation take every new connection of its
// SO_REUSEPORT group, so that the previous generation's listener is idle
// when it closes (hotswap --mode reuseport).
//
// Why: with net.ipv4.tcp_migrate_req=1 the kernel moves what is queued on a
// closing listener (accept queue, half-open requests) to another listener of
// the group, but one race is not covered. When the final ACK of a handshake
// the old listener answered is processed on one CPU while close(2) runs on
// another, tcp_v4_rcv sees the listener still in TCP_LISTEN, creates the
// child, and inet_csk_complete_hashdance -> inet_csk_reqsk_queue_add then
// finds it in TCP_CLOSE and calls inet_child_forget: the child is
// disconnected, which sends a RST to a client that already completed its
// connect (net/ipv4/inet_connection_sock.c; no migration is tried on that
// path). A listener that no new SYN reaches has no handshake in flight when
// it closes, and nothing to race with.
//
// How, without eBPF privileges: SO_ATTACH_REUSEPORT_CBPF with a program
// that returns the index of this generation's socket in the group's socket
// array (an index past the end falls back to the hash, as without a
// program). The kernel appends a joining listener to the array and, when one
// leaves, moves the last one into its slot, so the index is known only in
// the case that matters: the group held exactly one listener (the previous
// generation) before this one joined, and still holds both when this one
// is ready — then this one is at index 1. Otherwise nothing is steered and
// the kernel spreads by hash, as before.
//
// Steering is always an explicit call: [Listen] only records the group as
// it found it, and [Steerer.Attach] attaches the program. reuseport.Steer
// calls Attach for the listeners reuseport.Listener bound, and
// reuseport.ListenAndServe calls Steer right before it reports ready.
// Under a hotswap that steers the group itself (package
// reuseport/groupsteer; [SteeredEnv] set), reuseport.Listener does not use
// this package at all: the group's program is hotswap's.
//
// It needs no privileges (classic BPF on its own socket, sock_diag to read
// the group), never steers unless the group's layout is known, and never
// imports Kubernetes code.
package steer
