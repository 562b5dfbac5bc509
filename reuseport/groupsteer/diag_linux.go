package groupsteer

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/hotswap-dev/hotswap/reuseport/internal/sockdiag"
)

// key is one SO_REUSEPORT group as the kernel forms it: a listener joins
// the group of the listeners with the same family, address, port,
// IPV6_V6ONLY and bound device (and the same uid, which is checked apart).
type key struct {
	family uint8
	addr   [16]byte
	port   uint16
	v6only bool
	dev    uint32
}

func (k key) String() string {
	if k.family == unix.AF_INET {
		return fmt.Sprintf("%d.%d.%d.%d:%d", k.addr[0], k.addr[1], k.addr[2], k.addr[3], k.port)
	}
	return fmt.Sprintf("[%x]:%d v6only=%v", k.addr[:], k.port, k.v6only)
}

// listener is a TCP socket in LISTEN state as sock_diag reports it.
type listener struct {
	key
	inode  uint32
	uid    uint32
	rqueue uint32 // connections in its accept queue
}

// request is a half-open connection (a request socket in SYN_RECV),
// identified by its 4-tuple.
type request struct {
	family     uint8
	src, dst   [16]byte
	sport, dpt uint16
}

// listeners lists the TCP sockets in LISTEN state of this network
// namespace, IPv4 and IPv6. sock_diag needs no privileges.
func listeners() ([]listener, error) {
	var out []listener
	err := dump(1<<sockdiag.StateListen, func(m *sockdiag.Msg, attrs []byte) {
		if m.State != sockdiag.StateListen {
			return
		}
		l := listener{inode: m.Inode, uid: m.UID, rqueue: m.Rqueue}
		l.family, l.port, l.dev = m.Family, binary.BigEndian.Uint16(m.ID.Sport[:]), m.ID.If
		l.addr = addrOf(m.Family, m.ID.Src)
		if m.Family == unix.AF_INET6 {
			l.v6only = sockdiag.AttrU8(attrs, sockdiag.AttrSkV6Only) == 1
		}
		out = append(out, l)
	})
	return out, err
}

// requests lists the half-open connections to the given local ports.
func requests(ports map[uint16]bool) (map[request]bool, error) {
	out := map[request]bool{}
	err := dump(1<<sockdiag.StateSynRecv, func(m *sockdiag.Msg, _ []byte) {
		r := request{family: m.Family, sport: binary.BigEndian.Uint16(m.ID.Sport[:]), dpt: binary.BigEndian.Uint16(m.ID.Dport[:])}
		if m.State != sockdiag.StateSynRecv || !ports[r.sport] {
			return
		}
		r.src, r.dst = addrOf(m.Family, m.ID.Src), addrOf(m.Family, m.ID.Dst)
		out[r] = true
	})
	return out, err
}

func addrOf(family uint8, a [16]byte) [16]byte {
	if family == unix.AF_INET {
		var v [16]byte
		copy(v[:4], a[:4])
		return v
	}
	return a
}

// dump runs one NETLINK_SOCK_DIAG dump of TCP sockets in states (a bit
// mask) for each family and calls f on each message.
func dump(states uint32, f func(m *sockdiag.Msg, attrs []byte)) error {
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		if err := sockdiag.Dump(family, states, f); err != nil {
			return err
		}
	}
	return nil
}
