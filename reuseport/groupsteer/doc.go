// Package groupsteer makes a swap of a server hotswap did not write
// reset-free in --mode reuseport: once the new generation is ready, no new
// connection reaches the old generation's SO_REUSEPORT sockets, and the old
// generation is told to stop only when nothing is queued on them. With
// net.ipv4.tcp_migrate_req=0 (the default, and per network namespace) the
// kernel resets what a closing listener still holds; this package makes
// sure it holds nothing.
//
// How, without privileges (no CAP_BPF, no CAP_NET_ADMIN):
//
//   - Only a member of a group can attach a reuseport program to it, so
//     hotswap joins each group with its own sockets, "fillers": same
//     address, SO_REUSEPORT, and a socket filter that drops every packet,
//     set before listen(2). The kernel runs a listener's socket filter
//     after the group picked it, so a SYN that lands on a filler is
//     dropped and retransmitted by the client a second later: a delay,
//     never a reset. The program makes sure none lands there.
//   - The kernel keeps a group as an array: listen(2) appends; a leaving
//     socket's index gets the last member. hotswap models the array by
//     class (filler, or which generation) — all that these moves make
//     predictable, and all a program needs.
//   - At a cutover (Steerer.Cutover, the new generation ready): while the
//     program still picks the old generation, all fillers are closed if
//     there are no more of them than new sockets (each close moves a new,
//     not yet picked, socket into a filler's index: the fillers never pile
//     up); then one filler per old socket is appended at the tail and a
//     classic BPF program (random % n, then a table of indices) picking
//     only the new generation's indices replaces the old one. Each old
//     socket that leaves takes a tail filler into its hole: the new
//     generation's indices never move.
//   - Waiter.Wait then waits until every handshake in flight at the
//     cutover has ended (sock_diag, SYN_RECV) and the old sockets' accept
//     queues are empty (sock_diag's rqueue of a listener), bounded by a
//     timeout. Only then may the old generation be told to stop.
//   - Steerer.Mark, called before each generation starts, reads the group
//     (sock_diag, no privileges), applies what happened since (an old
//     generation whose sockets all left) and adopts groups it does not
//     steer yet that hold only the serving generation's sockets.
//
// What it cannot steer it leaves to the kernel's hash, as without it, and
// says why once: sockets of another uid (the kernel only lets the same uid
// join), a socket bound to a device, a kernel without reuseport programs,
// sock_diag unavailable, or a group that changed in a way the model cannot
// follow (part of a generation's sockets gone, a socket from outside a
// swap); the group is then adopted again at a later swap.
//
// It never imports Kubernetes code or swap logic; hotswap's engine calls it
// through its Runtime.
package groupsteer
