package sockdiag

import (
	"encoding/binary"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDumpFindsListener opens a real listener and looks for it, by port,
// state and inode, in the kernel's dump of this network namespace.
func TestDumpFindsListener(t *testing.T) {
	for _, tc := range []struct {
		network, addr string
		family        uint8
		v6only        uint8 // AttrU8(AttrSkV6Only): 0xff where absent (AF_INET)
	}{
		{"tcp4", "127.0.0.1:0", unix.AF_INET, 0xff},
		{"tcp6", "[::1]:0", unix.AF_INET6, 1}, // Go sets IPV6_V6ONLY for "tcp6"
	} {
		t.Run(tc.network, func(t *testing.T) {
			ln, err := net.Listen(tc.network, tc.addr)
			if err != nil {
				t.Skipf("no %s here: %v", tc.network, err)
			}
			defer ln.Close()
			port := uint16(ln.Addr().(*net.TCPAddr).Port)
			inode := listenerInode(t, ln.(*net.TCPListener))

			found := 0
			err = Dump(tc.family, 1<<StateListen, func(m *Msg, attrs []byte) {
				if m.Inode != inode {
					return
				}
				found++
				if got := binary.BigEndian.Uint16(m.ID.Sport[:]); got != port {
					t.Errorf("port %d, want %d", got, port)
				}
				if m.State != StateListen || m.Family != tc.family {
					t.Errorf("state %d family %d, want %d %d", m.State, m.Family, StateListen, tc.family)
				}
				if got := AttrU8(attrs, AttrSkV6Only); got != tc.v6only {
					t.Errorf("INET_DIAG_SKV6ONLY %#x, want %#x", got, tc.v6only)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			if found != 1 {
				t.Fatalf("listener %s (inode %d) reported %d times, want once", ln.Addr(), inode, found)
			}
		})
	}
}

// listenerInode is the socket's inode, as sock_diag reports it.
func listenerInode(t *testing.T, ln *net.TCPListener) uint32 {
	t.Helper()
	rc, err := ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return uint32(st.Ino)
}
