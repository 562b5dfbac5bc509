package activation

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// TestRemoveStaleSocketTypes (issue 13, item 6): a socket file is removed
// only when nobody listens on it, whatever its type — a live datagram
// (notify) or seqpacket (handoff) socket of another supervisor is never
// taken over.
func TestRemoveStaleSocketTypes(t *testing.T) {
	for _, network := range []string{"unix", "unixpacket", "unixgram"} {
		t.Run(network, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.sock")
			var closeLive func()
			if network == "unixgram" {
				c, err := net.ListenUnixgram(network, &net.UnixAddr{Name: path, Net: network})
				if err != nil {
					t.Fatal(err)
				}
				closeLive = func() { c.Close() } // leaves the file, as a crash would
			} else {
				l, err := net.ListenUnix(network, &net.UnixAddr{Name: path, Net: network})
				if err != nil {
					t.Fatal(err)
				}
				l.SetUnlinkOnClose(false)
				closeLive = func() { l.Close() }
			}
			if err := RemoveStaleSocket(path); err == nil || !strings.Contains(err.Error(), "in use") {
				t.Fatalf("live %s socket: %v, want in use", network, err)
			}
			closeLive()
			if err := RemoveStaleSocket(path); err != nil {
				t.Fatalf("stale %s socket: %v", network, err)
			}
		})
	}
}

// TestNewNotifySocketKeepsLiveOne: a second notify socket at the path of a
// live one fails, and the live one still receives.
func TestNewNotifySocketKeepsLiveOne(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	ns, err := NewNotifySocket(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if other, err := NewNotifySocket(path); err == nil {
		other.Close()
		t.Fatal("a second notify socket replaced a live one")
	}
	t.Setenv("NOTIFY_SOCKET", path)
	if err := Notify("READY=1"); err != nil {
		t.Fatalf("the live socket no longer receives: %v", err)
	}
	if m, err := ns.Recv(); err != nil || m.Fields["READY"] != "1" {
		t.Fatalf("got %+v %v", m, err)
	}
}
