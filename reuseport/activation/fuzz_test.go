package activation

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Any process of the pod's user can write to a notify or handoff socket:
// their parsers must survive every input, and never leak or keep a
// descriptor they were sent. Run longer with
//
//	go test -run XXX -fuzz FuzzParseNotify -fuzztime 60s ./reuseport/activation/

// fdOpen reports whether fd is an open descriptor of this process.
func fdOpen(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil
}

// hasRights reports whether raw control data carries SCM_RIGHTS: the parser
// would close the descriptor numbers in it, which in a fuzzer could be the
// test's own stdout. Those inputs are built from real descriptors instead.
func hasRights(oob []byte) bool {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_RIGHTS {
			return true
		}
	}
	return false
}

func FuzzParseNotify(f *testing.F) {
	cred := func(pid, uid int32) []byte {
		return unix.UnixCredentials(&unix.Ucred{Pid: pid, Uid: uint32(uid), Gid: 0})
	}
	f.Add([]byte("READY=1\nSTATUS=serving"), cred(42, 0), uint8(0))
	f.Add([]byte("READY=1"), []byte{}, uint8(0))
	f.Add([]byte("=x\n\n==\nA"), cred(0, 0), uint8(1))
	f.Add([]byte("FDSTORE=1"), cred(7, 1000), uint8(3))
	f.Add([]byte(strings.Repeat("K=V\n", 1000)), cred(-1, -1), uint8(0))
	f.Add([]byte{0xff, 0xfe, '=', 0}, []byte{1, 2, 3}, uint8(2))
	f.Fuzz(func(t *testing.T, data, oob []byte, nfds uint8) {
		if hasRights(oob) {
			t.Skip()
		}
		// Real descriptors sent along, as FDSTORE=1 would: each must be
		// closed by the parser, never kept.
		var fds []int
		for range nfds % 5 {
			var p [2]int
			if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
				t.Fatal(err)
			}
			unix.Close(p[1])
			fds = append(fds, p[0])
		}
		if len(fds) > 0 {
			// The kernel writes well-formed control data: add the rights
			// only to fuzzed data that is, so the test never asks the
			// parser to find descriptors in garbage.
			if _, err := unix.ParseSocketControlMessage(oob); err != nil || len(oob)%unix.SizeofPtr != 0 {
				for _, fd := range fds {
					unix.Close(fd)
				}
				fds = nil
			} else {
				oob = append(unix.UnixRights(fds...), oob...)
			}
		}
		msg, ok := parseNotify(data, oob)
		for _, fd := range fds {
			if fdOpen(fd) {
				unix.Close(fd)
				t.Fatalf("descriptor %d sent with the message was left open", fd)
			}
		}
		if ok && msg.PID <= 0 {
			t.Fatalf("accepted a message without a sender PID: %+v", msg)
		}
		for k, v := range msg.Fields {
			if k == "" || strings.ContainsAny(k, "=\n") || strings.Contains(v, "\n") {
				t.Fatalf("bad field %q=%q from %q", k, v, data)
			}
		}
	})
}
