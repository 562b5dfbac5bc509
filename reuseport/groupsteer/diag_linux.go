package groupsteer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
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

// inetDiagReqV2 is struct inet_diag_req_v2 (linux/inet_diag.h).
type inetDiagReqV2 struct {
	Family   uint8
	Protocol uint8
	Ext      uint8
	Pad      uint8
	States   uint32
	ID       inetDiagSockID
}

type inetDiagSockID struct {
	Sport  [2]byte // network byte order
	Dport  [2]byte
	Src    [16]byte
	Dst    [16]byte
	If     uint32
	Cookie [2]uint32
}

// inetDiagMsg is struct inet_diag_msg.
type inetDiagMsg struct {
	Family  uint8
	State   uint8
	Timer   uint8
	Retrans uint8
	ID      inetDiagSockID
	Expires uint32
	Rqueue  uint32
	Wqueue  uint32
	UID     uint32
	Inode   uint32
}

const (
	tcpSynRecv   = 3  // TCP_SYN_RECV: how request sockets are reported
	tcpListen    = 10 // TCP_LISTEN
	diagSkV6Only = 11 // INET_DIAG_SKV6ONLY
)

// listeners lists the TCP sockets in LISTEN state of this network
// namespace, IPv4 and IPv6. sock_diag needs no privileges.
func listeners() ([]listener, error) {
	var out []listener
	err := dump(1<<tcpListen, func(m *inetDiagMsg, attrs []byte) {
		if m.State != tcpListen {
			return
		}
		l := listener{inode: m.Inode, uid: m.UID, rqueue: m.Rqueue}
		l.family, l.port, l.dev = m.Family, binary.BigEndian.Uint16(m.ID.Sport[:]), m.ID.If
		l.addr = addrOf(m.Family, m.ID.Src)
		if m.Family == unix.AF_INET6 {
			l.v6only = attrU8(attrs, diagSkV6Only) == 1
		}
		out = append(out, l)
	})
	return out, err
}

// requests lists the half-open connections to the given local ports.
func requests(ports map[uint16]bool) (map[request]bool, error) {
	out := map[request]bool{}
	err := dump(1<<tcpSynRecv, func(m *inetDiagMsg, _ []byte) {
		r := request{family: m.Family, sport: binary.BigEndian.Uint16(m.ID.Sport[:]), dpt: binary.BigEndian.Uint16(m.ID.Dport[:])}
		if m.State != tcpSynRecv || !ports[r.sport] {
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

// attrU8 is the one-byte netlink attribute typ in attrs, or 0xff.
func attrU8(attrs []byte, typ uint16) uint8 {
	for len(attrs) >= 4 {
		l := int(binary.NativeEndian.Uint16(attrs))
		if l < 4 || l > len(attrs) {
			break
		}
		if binary.NativeEndian.Uint16(attrs[2:])&0x3fff == typ && l >= 5 {
			return attrs[4]
		}
		if adv := (l + 3) &^ 3; adv < len(attrs) {
			attrs = attrs[adv:]
		} else {
			break
		}
	}
	return 0xff
}

// dump runs one NETLINK_SOCK_DIAG dump of TCP sockets in states (a bit
// mask) for each family and calls f on each message.
func dump(states uint32, f func(m *inetDiagMsg, attrs []byte)) error {
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		if err := dumpFamily(family, states, f); err != nil {
			return fmt.Errorf("sock_diag: %w", err)
		}
	}
	return nil
}

func dumpFamily(family uint8, states uint32, f func(m *inetDiagMsg, attrs []byte)) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	req := inetDiagReqV2{Family: family, Protocol: unix.IPPROTO_TCP, States: states}
	hdr := unix.NlMsghdr{
		Len:   uint32(unix.SizeofNlMsghdr + unsafe.Sizeof(req)),
		Type:  unix.SOCK_DIAG_BY_FAMILY,
		Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP,
		Seq:   1,
	}
	var buf bytes.Buffer
	binary.Write(&buf, binary.NativeEndian, hdr)
	binary.Write(&buf, binary.NativeEndian, req)
	if err := unix.Sendto(fd, buf.Bytes(), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	rb := make([]byte, 64<<10)
	msgSize := int(unsafe.Sizeof(inetDiagMsg{}))
	for {
		n, _, err := unix.Recvfrom(fd, rb, 0)
		if err != nil {
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(rb[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
						return unix.Errno(-errno)
					}
				}
				return nil
			}
			if len(m.Data) < msgSize {
				continue
			}
			var dm inetDiagMsg
			if err := binary.Read(bytes.NewReader(m.Data[:msgSize]), binary.NativeEndian, &dm); err != nil {
				continue
			}
			f(&dm, m.Data[msgSize:])
		}
	}
}
