package sockdiag

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TCP states as sock_diag reports them (include/net/tcp_states.h); a dump
// asks for states as a bit mask of 1<<state.
const (
	StateSynRecv = 3  // TCP_SYN_RECV: how request sockets (half-open connections) are reported
	StateListen  = 10 // TCP_LISTEN
)

// AttrSkV6Only is the INET_DIAG_SKV6ONLY attribute: one byte, IPV6_V6ONLY
// of an AF_INET6 socket. The kernel sends it unasked for AF_INET6.
const AttrSkV6Only = 11

// reqV2 is struct inet_diag_req_v2.
type reqV2 struct {
	Family   uint8
	Protocol uint8
	Ext      uint8
	Pad      uint8
	States   uint32
	ID       SockID
}

// SockID is struct inet_diag_sockid: a socket's 4-tuple, bound device and
// cookie.
type SockID struct {
	Sport  [2]byte // network byte order
	Dport  [2]byte
	Src    [16]byte // an AF_INET address is the first 4 bytes
	Dst    [16]byte
	If     uint32
	Cookie [2]uint32
}

// Msg is struct inet_diag_msg: one socket of a dump.
type Msg struct {
	Family  uint8
	State   uint8
	Timer   uint8
	Retrans uint8
	ID      SockID
	Expires uint32
	Rqueue  uint32 // for a listener, connections in its accept queue
	Wqueue  uint32
	UID     uint32
	Inode   uint32
}

// Dump asks the kernel for the TCP sockets of family (unix.AF_INET or
// unix.AF_INET6) in this network namespace whose state is in states (a
// bit mask of 1<<State...), and calls fn on each, with the netlink
// attributes that follow the message. fn must not keep m or attrs. A
// message too short to be an inet_diag_msg is skipped. The kernel may
// report a socket in another state than asked: fn checks m.State.
func Dump(family uint8, states uint32, fn func(m *Msg, attrs []byte)) error {
	if err := dump(family, states, fn); err != nil {
		return fmt.Errorf("sock_diag: %w", err)
	}
	return nil
}

func dump(family uint8, states uint32, fn func(m *Msg, attrs []byte)) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	req := reqV2{Family: family, Protocol: unix.IPPROTO_TCP, States: states}
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
	msgSize := int(unsafe.Sizeof(Msg{}))
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
			var dm Msg
			if err := binary.Read(bytes.NewReader(m.Data[:msgSize]), binary.NativeEndian, &dm); err != nil {
				continue
			}
			fn(&dm, m.Data[msgSize:])
		}
	}
}

// AttrU8 is the value of the one-byte netlink attribute typ in attrs (as
// Dump passes them), or 0xff when attrs does not hold it.
func AttrU8(attrs []byte, typ uint16) uint8 {
	for len(attrs) >= 4 {
		l := int(binary.NativeEndian.Uint16(attrs))
		if l < 4 || l > len(attrs) {
			break
		}
		// The top two bits of nla_type are flags (nested, byte order).
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
