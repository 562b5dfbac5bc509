package handoff

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hotswap-dev/hotswap/reuseport/activation"
)

// openFds counts this process's descriptors.
func openFds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// tcpConns returns n server-side TCP connections accepted on ln (and
// closes them and their clients at the test's end); the clients are
// returned in the same order.
func tcpConns(t *testing.T, ln net.Listener, n int) (servers, clients []net.Conn) {
	t.Helper()
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(); s.Close() })
		servers, clients = append(servers, s), append(clients, c)
	}
	return servers, clients
}

func listenLocal(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// A malformed or oversized batch is refused whole, and every descriptor it
// brought is closed: the receiver's descriptor count is back where it was.
func TestHandoffBatchRefusedClosesEveryFd(t *testing.T) {
	hub, err := Open(filepath.Join(t.TempDir(), "h.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	c, err := net.Dial("unixpacket", hub.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	servers, _ := tcpConns(t, listenLocal(t), maxBatch+8)
	times := func(n int) string { return strings.TrimSpace(strings.Repeat(" 1", n)) }
	for _, tc := range []struct {
		name, msg string
		nfds      int
		want      string // reply prefix
	}{
		{"more descriptors than times", "CONNS " + times(2), 3, "NO want one descriptor"},
		{"fewer descriptors than times", "CONNS " + times(3), 2, "NO want one descriptor"},
		{"no descriptors", "CONNS " + times(2), 0, "NO want one descriptor"},
		{"empty", "CONNS", 1, "NO bad idle time"},
		{"empty time", "CONNS ", 1, "NO bad idle time"},
		{"bad time", "CONNS 1 x", 2, "NO bad idle time"},
		{"double space", "CONNS 1  2", 2, "NO want one descriptor"},
		{"more than fit (MSG_CTRUNC)", "CONNS " + times(maxBatch+8), maxBatch + 8, "NO message or descriptors truncated"},
		{"text too long (MSG_TRUNC)", "CONNS " + times(2) + strings.Repeat(" ", 2000), 2, "NO message or descriptors truncated"},
		{"CONN with two", "CONN 1", 2, "NO want exactly one"},
		{"unknown verb", "CONNZ " + times(2), 2, "NO unknown message"},
		{"valid, for no listener here", "CONNS " + times(3), 3, "OK nnn"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := openFds(t)
			var fds []int
			for _, s := range servers[:tc.nfds] {
				fd, err := activation.DupFD(s)
				if err != nil {
					t.Fatal(err)
				}
				fds = append(fds, fd)
			}
			var oob []byte
			if len(fds) > 0 {
				oob = unix.UnixRights(fds...)
			}
			_, _, err := c.(*net.UnixConn).WriteMsgUnix([]byte(tc.msg), oob, nil)
			closeFds(fds) // ours; what remains open is the receiver's
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 256)
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, err := c.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			if r := string(buf[:n]); !strings.HasPrefix(r, tc.want) {
				t.Fatalf("reply %q, want %q...", r, tc.want)
			}
			if after := openFds(t); after != before {
				t.Fatalf("%d descriptors open after the reply, %d before: the receiver leaked %d", after, before, after-before)
			}
		})
	}
}

// fakeReceiver is a handoff socket answered by a test: answer gets each
// message and the descriptors it brought (the fake closes them after) and
// returns the reply, or "" to die before replying (close the connection,
// as a SIGKILLed receiver's kernel does). Its buffers are the size a
// receiver from before batches had (512 bytes, 4 descriptors).
func fakeReceiver(t *testing.T, answer func(msg string, nfds int) string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fake.sock")
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				buf, oob := make([]byte, 512), make([]byte, unix.CmsgSpace(4*4))
				for {
					n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
					if err != nil {
						return
					}
					fds := parseRights(oob[:oobn])
					reply := answer(string(buf[:n]), len(fds))
					closeFds(fds)
					if reply == "" {
						return
					}
					if _, err := c.Write([]byte(reply)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return path
}

// sendOnOneLane sends the connections as one batch on one lane of a pool
// to path, and returns each one's result.
func sendOnOneLane(t *testing.T, path string, conns []net.Conn) []sendResult {
	t.Helper()
	p := newSenderPool(path, new(atomic.Int64))
	defer p.close()
	var batch []*sendReq
	for _, c := range conns {
		batch = append(batch, &sendReq{c: c, idleSince: time.Now(), fd: -1, done: make(chan struct{})})
	}
	p.sendBatch(p.lanes[0], batch)
	res := make([]sendResult, len(batch))
	for i, r := range batch {
		res[i] = r.res
	}
	return res
}

// stillServes checks that each server-side socket still carries bytes
// both ways: nothing read from it, nothing closed under it.
func stillServes(t *testing.T, servers, clients []net.Conn) {
	t.Helper()
	for i, s := range servers {
		msg := fmt.Sprintf("ping %d", i)
		if _, err := clients[i].Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		s.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadFull(s, buf); err != nil || string(buf) != msg {
			t.Fatalf("connection %d after the handoff: read %q, %v", i, buf, err)
		}
	}
}

// A receiver that dies with a batch received and unanswered (SIGKILL
// between its recvmsg and its reply) leaves every connection of the batch
// to the sender, untouched, and the sender's duplicates closed.
func TestHandoffBatchReceiverDiesMidBatch(t *testing.T) {
	var mu sync.Mutex
	var got []string
	path := fakeReceiver(t, func(msg string, nfds int) string {
		mu.Lock()
		got = append(got, fmt.Sprintf("%s (%d fds)", strings.Fields(msg)[0], nfds))
		mu.Unlock()
		return ""
	})
	servers, clients := tcpConns(t, listenLocal(t), 4)
	before := openFds(t)
	res := sendOnOneLane(t, path, servers)
	for i, r := range res {
		if r != sendFailed {
			t.Errorf("connection %d: result %d, want failed (kept)", i, r)
		}
	}
	mu.Lock()
	if len(got) != 1 || got[0] != "CONNS (4 fds)" {
		t.Errorf("the receiver got %q, want one CONNS with 4 descriptors", got)
	}
	mu.Unlock()
	if after := openFds(t); after > before {
		t.Errorf("%d descriptors open after the batch, %d before", after, before)
	}
	stillServes(t, servers, clients)
}

// A receiver from before batches answers "CONNS" with "NO unknown message"
// (it closes the descriptors unread); the sender then sends the batch one
// "CONN" at a time, and does so for every later batch to that target.
func TestHandoffBatchToOldReceiver(t *testing.T) {
	var mu sync.Mutex
	var got []string
	path := fakeReceiver(t, func(msg string, nfds int) string {
		verb, _, _ := strings.Cut(msg, " ")
		mu.Lock()
		got = append(got, fmt.Sprintf("%s/%d", verb, nfds))
		mu.Unlock()
		if verb == "CONN" && nfds == 1 {
			return "OK"
		}
		return "NO unknown message"
	})
	servers, _ := tcpConns(t, listenLocal(t), 6)
	p := newSenderPool(path, new(atomic.Int64))
	defer p.close()
	for round, conns := range [][]net.Conn{servers[:3], servers[3:]} {
		var batch []*sendReq
		for _, c := range conns {
			batch = append(batch, &sendReq{c: c, idleSince: time.Now(), fd: -1, done: make(chan struct{})})
		}
		p.sendBatch(p.lanes[round], batch)
		for i, r := range batch {
			if r.res != sendOK {
				t.Errorf("round %d, connection %d: result %d, want OK", round, i, r.res)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := "CONNS/3 CONN/1 CONN/1 CONN/1 CONN/1 CONN/1 CONN/1"
	if g := strings.Join(got, " "); g != want {
		t.Errorf("the old receiver got %s, want %s", g, want)
	}
}

// A batch to a current receiver: the connections for a listener it serves
// are taken ('y'), the others refused ('n') and kept by the sender,
// untouched. A sender from before batches ("CONN") is still served.
func TestHandoffBatchPartlyTaken(t *testing.T) {
	hub, err := Open(filepath.Join(t.TempDir(), "h.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	served, other := listenLocal(t), listenLocal(t)
	done := make(chan struct{})
	defer close(done)
	// The hub's Listener serves served's address but accepts nothing
	// itself (the test accepts the TCP connections it then hands over).
	ml := hub.Listen(&addrOnly{addr: served.Addr(), closed: make(chan struct{})}, ListenOptions{Done: done})
	defer ml.Close()
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := ml.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()

	s1, _ := tcpConns(t, served, 2)
	s2, c2 := tcpConns(t, other, 2)
	res := sendOnOneLane(t, hub.path, []net.Conn{s1[0], s2[0], s1[1], s2[1]})
	if want := []sendResult{sendOK, sendRefused, sendOK, sendRefused}; fmt.Sprint(res) != fmt.Sprint(want) {
		t.Fatalf("results %v, want %v", res, want)
	}
	stillServes(t, s2, c2)
	for i := range 2 {
		select {
		case c := <-accepted:
			defer c.Close()
			if _, ok := c.(*Conn); !ok {
				t.Fatalf("accepted %T, want *handoff.Conn", c)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("only %d of 2 taken connections reached Accept", i)
		}
	}
	// One "CONN" from a sender that does not batch.
	s3, _ := tcpConns(t, served, 1)
	fd, err := activation.DupFD(s3[0])
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if r, arg := (&handoffSender{path: hub.path}).send(fd, time.Now()); r != sendOK {
		t.Fatalf("CONN from an old sender: %d %q", r, arg)
	}
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(2 * time.Second):
		t.Fatal("the CONN never reached Accept")
	}
	if st := hub.Stats(); st.Received != 3 || st.Refused != 2 {
		t.Errorf("stats %+v, want 3 received and 2 refused", st)
	}
}

// addrOnly is a listener that has an address and accepts nothing.
type addrOnly struct {
	addr   net.Addr
	once   sync.Once
	closed chan struct{}
}

func (a *addrOnly) Accept() (net.Conn, error) { <-a.closed; return nil, net.ErrClosed }
func (a *addrOnly) Close() error              { a.once.Do(func() { close(a.closed) }); return nil }
func (a *addrOnly) Addr() net.Addr            { return a.addr }
