package handoff

import (
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Any process of the pod's user can write to a notify or handoff socket:
// their parsers must survive every input, and never leak or keep a
// descriptor they were sent. Run longer with
//
//	go test -run XXX -fuzz FuzzHandoffMessage -fuzztime 60s ./reuseport/handoff/

// fdOpen reports whether fd is an open descriptor of this process.
func fdOpen(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil
}

func FuzzHandoffMessage(f *testing.F) {
	hub, err := Open(filepath.Join(f.TempDir(), "h.sock"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(hub.Close)
	f.Add("CONN 1700000000000000000", uint8(1), false, 0)
	f.Add("CONN x", uint8(1), false, 0)
	f.Add("CONN 1", uint8(2), false, 0)
	f.Add("CONN 1", uint8(1), true, unix.MSG_CTRUNC)
	f.Add("TARGET /tmp/next.sock", uint8(0), false, 0)
	f.Add("TARGET relative", uint8(1), false, 0)
	f.Add("TARGET ", uint8(0), false, 0)
	f.Add("MOVED /x", uint8(0), false, 0)
	f.Add("", uint8(0), false, 0)
	f.Add("CONN -9223372036854775808", uint8(1), true, 0)
	f.Add("CONNS 1 2", uint8(2), true, 0)
	f.Add("CONNS 1 2 3", uint8(3), false, 0)
	f.Add("CONNS 1 2", uint8(3), true, 0)
	f.Add("CONNS 1 x", uint8(2), true, 0)
	f.Add("CONNS ", uint8(1), true, 0)
	f.Add("CONNS 1 2", uint8(2), true, unix.MSG_CTRUNC)
	f.Add("CONNS 1 2", uint8(2), true, unix.MSG_TRUNC)
	f.Add("TARGET /tmp/next.sock\x00CONNS 1 2", uint8(2), true, 0)
	f.Fuzz(func(t *testing.T, msg string, nfds uint8, sockets bool, flags int) {
		// Start each input from a hub with no target, as a fresh
		// generation is; a TARGET input sets one for the CONN that follows
		// in the same input only.
		hub.mu.Lock()
		hub.target = ""
		hub.mu.Unlock()
		var fds []int
		for range nfds % 6 {
			if sockets {
				p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					t.Fatal(err)
				}
				unix.Close(p[1])
				fds = append(fds, p[0])
				continue
			}
			var p [2]int
			if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
				t.Fatal(err)
			}
			unix.Close(p[1])
			fds = append(fds, p[0])
		}
		sent := append([]int(nil), fds...)
		if len(msg) > 1024 {
			msg = msg[:1024] // two messages of at most the receiver's 512 bytes
		}
		for _, m := range strings.SplitN(msg, "\x00", 2) {
			reply, commit := hub.handle(m, fds, flags)
			if commit != nil {
				commit(false) // the reply was not delivered: the receiver must let go
			}
			fds = nil // the first message owns them
			switch {
			case reply == "OK", strings.HasPrefix(reply, "NO "), strings.HasPrefix(reply, "MOVED /"):
			case strings.HasPrefix(reply, "OK ") && len(reply) == 3+len(sent) && strings.Trim(reply[3:], "yn") == "":
			default:
				t.Fatalf("reply %q to %q is not OK, NO or MOVED", reply, m)
			}
		}
		for _, fd := range sent {
			if fdOpen(fd) {
				unix.Close(fd)
				t.Fatalf("descriptor %d sent with %q was left open", fd, msg)
			}
		}
	})
}
