package steer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"

	"github.com/hotswap-dev/hotswap/reuseport/activation"
	"github.com/hotswap-dev/hotswap/reuseport/internal/sockdiag"
)

const (
	soAttachReuseportCBPF = 51 // SO_ATTACH_REUSEPORT_CBPF
	soDetachReuseportBPF  = 68 // SO_DETACH_REUSEPORT_BPF
)

// SteeredEnv is set to "1" in a generation's environment when hotswap
// itself steers the generation's SO_REUSEPORT groups (hotswap --mode
// reuseport with --reuseport-steer=auto; package reuseport/groupsteer):
// the group's program is then hotswap's, and a generation must neither
// detach nor replace it.
const SteeredEnv = "HOTSWAP_REUSEPORT_STEERED"

// Steerer is one listener that may steer its group to itself once ready.
// A nil *Steerer is valid and steers nothing.
type Steerer struct {
	ln       *net.TCPListener
	joinedAs int // listeners in the group right after this one joined, if it was second; else 0
}

// Listen binds like activation.Listen and remembers whether this listener
// joined a group of exactly one other listener (the previous generation).
// The Steerer is nil when steering cannot apply (not TCP, or the group
// cannot be read); the listener is usable either way.
func Listen(ctx context.Context, network, address string) (net.Listener, *Steerer, error) {
	before, berr := listenersDump()
	ln, err := activation.Listen(ctx, network, address)
	if err != nil {
		return nil, nil, err
	}
	tl, ok := ln.(*net.TCPListener)
	if !ok || berr != nil {
		return ln, nil, nil
	}
	t := &Steerer{ln: tl}
	self, err := localEntry(tl)
	if err != nil || self.port == 0 {
		return ln, nil, nil
	}
	// A program left by an earlier generation must not steer to an index
	// that means something else now: spread by hash until this one is ready.
	_ = t.control(func(fd int) error {
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, soDetachReuseportBPF, 0)
	})
	after, err := listenersDump()
	if err == nil && countEntry(before, self) == 1 && countEntry(after, self) == 2 {
		t.joinedAs = 2
	}
	return ln, t, nil
}

// Attach steers every new connection of the group to t's listener, if the
// group is still the two listeners it was when t joined; it reports whether
// it did. Call it when the server is ready to take all new connections:
// right before it reports READY=1. Without it (or when it reports false),
// the kernel spreads connections by hash, as without a program.
func (t *Steerer) Attach() (bool, error) {
	if t == nil || t.joinedAs != 2 {
		return false, nil
	}
	self, err := localEntry(t.ln)
	if err != nil {
		return false, err
	}
	now, err := listenersDump()
	if err != nil {
		return false, err
	}
	if countEntry(now, self) != 2 {
		// The previous one has gone (this one is alone: nothing to steer),
		// or the group changed in a way that hides this one's index.
		return false, nil
	}
	prog := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 1}}
	err = t.control(func(fd int) error {
		return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, soAttachReuseportCBPF,
			&unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
	})
	if err != nil {
		return false, fmt.Errorf("reuseport: steer new connections to %s: %w", t.ln.Addr(), err)
	}
	return true, nil
}

func (t *Steerer) control(f func(fd int) error) error {
	rc, err := t.ln.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// listenEntry is a listening socket as sock_diag reports it.
type listenEntry struct {
	family uint8
	addr   [16]byte
	port   uint16
}

func localEntry(ln *net.TCPListener) (listenEntry, error) {
	var e listenEntry
	rc, err := ln.SyscallConn()
	if err != nil {
		return e, err
	}
	var sa unix.Sockaddr
	var serr error
	if err := rc.Control(func(fd uintptr) { sa, serr = unix.Getsockname(int(fd)) }); err != nil {
		return e, err
	}
	if serr != nil {
		return e, serr
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		e.family, e.port = unix.AF_INET, uint16(sa.Port)
		copy(e.addr[:4], sa.Addr[:])
	case *unix.SockaddrInet6:
		e.family, e.port = unix.AF_INET6, uint16(sa.Port)
		e.addr = sa.Addr
	default:
		return e, errors.New("not an inet socket")
	}
	return e, nil
}

func countEntry(es []listenEntry, self listenEntry) int {
	n := 0
	for _, e := range es {
		if e == self {
			n++
		}
	}
	return n
}

// listenersDump lists the TCP sockets in LISTEN state of this network
// namespace (IPv4 and IPv6), through NETLINK_SOCK_DIAG; no privileges needed.
func listenersDump() ([]listenEntry, error) {
	var out []listenEntry
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		err := sockdiag.Dump(family, 1<<sockdiag.StateListen, func(m *sockdiag.Msg, _ []byte) {
			if m.State != sockdiag.StateListen {
				return
			}
			e := listenEntry{family: m.Family, port: binary.BigEndian.Uint16(m.ID.Sport[:])}
			if m.Family == unix.AF_INET {
				copy(e.addr[:4], m.ID.Src[:4])
			} else {
				e.addr = m.ID.Src
			}
			out = append(out, e)
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
