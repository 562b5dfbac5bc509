// Package sockdiag owns reading TCP sockets from the kernel's sock_diag
// netlink interface (NETLINK_SOCK_DIAG, linux/inet_diag.h), without
// privileges: it holds the kernel ABI structs and the one dump loop that
// reuseport/steer and reuseport/groupsteer both use to see the listeners
// and half-open connections of the current network namespace. It only
// reads; it never changes a socket and never needs CAP_NET_ADMIN.
package sockdiag
