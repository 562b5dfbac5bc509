package handoff

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hotswap-dev/hotswap/reuseport/activation"
)

// fakeConn lets a test decide what a blocked Read returns after a wake-up.
type fakeConn struct {
	net.Conn
	mu      sync.Mutex
	dl      time.Time
	changed chan struct{}
	onWake  func() (int, error)
	data    string
}

func (f *fakeConn) SetReadDeadline(t time.Time) error {
	f.mu.Lock()
	f.dl = t
	f.mu.Unlock()
	select {
	case f.changed <- struct{}{}:
	default:
	}
	return nil
}

func (f *fakeConn) deadline() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dl
}

func (f *fakeConn) Read(p []byte) (int, error) {
	for {
		if d := f.deadline(); !d.IsZero() && d.Before(time.Now()) {
			// The wake-up hit, but bytes arrived at the same moment.
			return copy(p, f.data), nil
		}
		<-f.changed
	}
}

// Bytes that arrive just as a takeover wakes the read belong to net/http:
// the takeover is abandoned, the data returned, and net/http's deadline —
// also one it set while the wake-up was pending — is put back.
func TestHandoffWakeRacesIncomingBytes(t *testing.T) {
	hub, err := Open(filepath.Join(t.TempDir(), "h.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	hub.PointAt("/nonexistent/target.sock")
	l := &Listener{hub: hub}
	fc := &fakeConn{changed: make(chan struct{}, 1), data: "GET / HTTP/1.1\r\n"}
	hc := newConn(fc, l, false, time.Now())
	want := time.Now().Add(time.Hour)
	hc.SetReadDeadline(want)
	type res struct {
		n   int
		err error
	}
	out := make(chan res, 1)
	go func() {
		n, err := hc.Read(make([]byte, 4096))
		out <- res{n, err}
	}()
	for {
		hc.mu.Lock()
		r := hc.reading
		hc.mu.Unlock()
		if r {
			break
		}
		time.Sleep(time.Millisecond)
	}
	l.moving.Store(true)
	// net/http rewrites the deadline while the wake-up is pending (as it
	// does after its idle hook): the wake-up must not be lost.
	hc.mu.Lock()
	hc.woken = true
	fc.SetReadDeadline(aLongTimeAgo)
	hc.mu.Unlock()
	later := time.Now().Add(2 * time.Hour)
	hc.SetReadDeadline(later)
	if !fc.deadline().Equal(aLongTimeAgo) {
		t.Fatal("SetReadDeadline overwrote a pending wake-up")
	}
	r := <-out
	if r.err != nil || r.n != len(fc.data) {
		t.Fatalf("Read = %d, %v; want the %d bytes that arrived", r.n, r.err, len(fc.data))
	}
	if got := fc.deadline(); !got.Equal(later) {
		t.Fatalf("deadline after the abandoned takeover %v, want net/http's %v", got, later)
	}
	if hc.taken.Load() || hub.sent.Load() != 0 {
		t.Fatal("connection handed over although net/http had read its bytes")
	}
}

// The handoff socket refuses peers of other users and bad messages, and a
// connection for a listener nobody here serves is answered NO (the sender
// keeps it).
func TestHandoffSocketRefuses(t *testing.T) {
	hub, err := Open(filepath.Join(t.TempDir(), "h.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	fi, err := os.Stat(hub.path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v (%v), want 0600", fi.Mode(), err)
	}
	c, err := net.Dial("unixpacket", hub.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ask := func(msg string, fds ...int) string {
		t.Helper()
		var oob []byte
		if len(fds) > 0 {
			oob = unix.UnixRights(fds...)
		}
		if _, _, err := c.(*net.UnixConn).WriteMsgUnix([]byte(msg), oob, nil); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 256)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n])
	}
	if r := ask("HELLO"); !strings.HasPrefix(r, "NO") {
		t.Fatalf("unknown message: %q", r)
	}
	if r := ask("CONN 0"); !strings.HasPrefix(r, "NO") {
		t.Fatalf("CONN without descriptor: %q", r)
	}
	if r := ask("TARGET relative.sock"); !strings.HasPrefix(r, "NO") {
		t.Fatalf("relative target: %q", r)
	}
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tc, err := net.Dial("tcp", other.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	fd, err := activation.DupFD(tc)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if r := ask("CONN 0", fd); !strings.HasPrefix(r, "NO not serving") {
		t.Fatalf("connection for no server here: %q", r)
	}
	if r := ask("TARGET /x/y.sock"); r != "OK" {
		t.Fatalf("target: %q", r)
	}
	if r := ask("CONN 0", fd); r != "MOVED /x/y.sock" {
		t.Fatalf("with a target: %q, want MOVED", r)
	}
}
