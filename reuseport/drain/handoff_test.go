package drain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/reuseport/activation"
	"github.com/hotswap-dev/hotswap/reuseport/handoff"
)

// hgen is one "generation" inside the test process: its own handoff hub
// and Server on a descriptor of one shared listening socket, as under
// hotswap. Its responses say which generation answered (X-Gen).
type hgen struct {
	name    string
	hub     *handoff.Hub
	s       *Server
	srv     *http.Server
	started chan struct{} // a /slow request is in its handler
	release chan struct{} // close to let /slow requests answer
}

func newHgen(t testing.TB, name string, ln net.Listener, tune func(*http.Server)) *hgen {
	t.Helper()
	hub, err := handoff.Open(filepath.Join(t.TempDir(), name+".sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	g := &hgen{name: name, hub: hub, started: make(chan struct{}, 16), release: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/slow" {
			g.started <- struct{}{}
			<-g.release
		}
		w.Header().Set("X-Gen", name)
		io.WriteString(w, name)
	})
	g.srv = &http.Server{Handler: mux, IdleTimeout: time.Minute}
	if tune != nil {
		tune(g.srv)
	}
	g.s = Serve(g.srv, ln, hub)
	t.Cleanup(func() {
		select {
		case <-g.release:
		default:
			close(g.release)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.s.Drain(ctx, 0)
	})
	return g
}

// dupListener is another descriptor of ln's socket (what a new generation
// inherits).
func dupListener(t testing.TB, ln net.Listener) net.Listener {
	t.Helper()
	fd, err := activation.DupFD(ln)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "dup")
	defer f.Close()
	l, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func (g *hgen) drainAsync(grace time.Duration) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- g.s.Drain(context.Background(), grace) }()
	for !g.s.draining.Load() {
		time.Sleep(time.Millisecond)
	}
	return ch
}

func waitDrain(t *testing.T, ch <-chan error, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case err := <-ch:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(within):
		t.Fatalf("drain did not end within %v: connections were not handed over", within)
	}
	return time.Since(start)
}

func expectGen(t *testing.T, resp *http.Response, gen string, close bool) {
	t.Helper()
	if got := resp.Header.Get("X-Gen"); got != gen || resp.StatusCode != 200 {
		t.Fatalf("answered by %q with %s, want %q with 200", got, resp.Status, gen)
	}
	if resp.Close != close {
		t.Fatalf("Connection: close = %v, want %v", resp.Close, close)
	}
}

// silent checks that nothing arrives on the connection for a while: no
// "400 Bad Request" written by the old generation, no EOF, no reset.
func (rc *rawClient) silent(t *testing.T, d time.Duration) {
	t.Helper()
	rc.c.SetReadDeadline(time.Now().Add(d))
	b, err := rc.br.Peek(1)
	if err == nil {
		buf, _ := rc.br.Peek(rc.br.Buffered())
		t.Fatalf("unexpected bytes on an idle connection: %q", buf)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("idle connection: %v (%q), want silence", err, b)
	}
}

func TestHandoffIdleMovesWithoutClose(t *testing.T) {
	ln := listenTCP(t)
	old := newHgen(t, "old", dupListener(t, ln), nil)
	c := dialRaw(t, ln.Addr().String())
	c.send("/")
	expectGen(t, c.read(t), "old", false)

	nu := newHgen(t, "new", dupListener(t, ln), nil)
	if err := handoff.SetTarget(context.Background(), old.hub.Path(), nu.hub.Path()); err != nil {
		t.Fatal(err)
	}
	// A grace of 10s: only a handover (not a timeout) ends it quickly, and
	// only a kept wake-up moves a connection blocked in its idle read.
	took := waitDrain(t, old.drainAsync(10*time.Second), 3*time.Second)
	t.Logf("drain with one idle connection took %v", took)
	c.silent(t, 200*time.Millisecond)
	c.send("/")
	expectGen(t, c.read(t), "new", false)
	if s, r := old.hub.Stats().Sent, nu.hub.Stats().Received; s != 1 || r != 1 {
		t.Fatalf("sent %d received %d, want 1 and 1", s, r)
	}
	// The shared open file description is still non-blocking.
	nu.s.mu.Lock()
	var hc *handoff.Conn
	for _, ci := range nu.s.conns {
		hc = ci.hc
	}
	nu.s.mu.Unlock()
	if hc == nil || !isNonBlocking(hc.Conn) {
		t.Fatal("handed-over socket is blocking (or untracked)")
	}
	c.send("/")
	expectGen(t, c.read(t), "new", false)
}

func TestHandoffInFlightFinishesThenMoves(t *testing.T) {
	ln := listenTCP(t)
	old := newHgen(t, "old", dupListener(t, ln), nil)
	c := dialRaw(t, ln.Addr().String())
	c.send("/slow")
	<-old.started
	nu := newHgen(t, "new", dupListener(t, ln), nil)
	old.hub.PointAt(nu.hub.Path())
	done := old.drainAsync(10 * time.Second)
	close(old.release)
	// Finished on the old generation, keep-alive kept.
	expectGen(t, c.read(t), "old", false)
	// Then it moves without the client sending anything.
	waitDrain(t, done, 3*time.Second)
	c.silent(t, 100*time.Millisecond)
	c.send("/")
	expectGen(t, c.read(t), "new", false)
}

func TestHandoffPipelinedStayUntilCleanBoundary(t *testing.T) {
	ln := listenTCP(t)
	old := newHgen(t, "old", dupListener(t, ln), nil)
	c := dialRaw(t, ln.Addr().String())
	// Two requests in one write: net/http buffers the second while the
	// first runs. The connection must not move while it holds those bytes.
	fmt.Fprintf(c.c, "GET /slow HTTP/1.1\r\nHost: test\r\n\r\nGET /two HTTP/1.1\r\nHost: test\r\n\r\n")
	<-old.started
	nu := newHgen(t, "new", dupListener(t, ln), nil)
	old.hub.PointAt(nu.hub.Path())
	done := old.drainAsync(10 * time.Second)
	close(old.release)
	expectGen(t, c.read(t), "old", false)
	expectGen(t, c.read(t), "old", false)
	waitDrain(t, done, 3*time.Second)
	c.send("/three")
	expectGen(t, c.read(t), "new", false)
}

func TestHandoffRequestWithBodyServedAndClosed(t *testing.T) {
	ln := listenTCP(t)
	old := newHgen(t, "old", dupListener(t, ln), nil)
	c := dialRaw(t, ln.Addr().String())
	fmt.Fprintf(c.c, "POST /slow HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello")
	<-old.started
	nu := newHgen(t, "new", dupListener(t, ln), nil)
	old.hub.PointAt(nu.hub.Path())
	done := old.drainAsync(10 * time.Second)
	close(old.release)
	expectGen(t, c.read(t), "old", true)
	if !c.closedByPeer() {
		t.Fatal("connection not closed after its Connection: close response")
	}
	waitDrain(t, done, 3*time.Second)
	if n := old.hub.Stats().Sent; n != 0 {
		t.Fatalf("%d connections handed over, want 0", n)
	}
}

// A request whose first bytes net/http has read when the handover starts
// stays and is served here (not dropped, no 400), then moves.
func TestHandoffHalfReadRequestStays(t *testing.T) {
	ln := listenTCP(t)
	old := newHgen(t, "old", dupListener(t, ln), nil)
	c := dialRaw(t, ln.Addr().String())
	c.send("/")
	expectGen(t, c.read(t), "old", false)
	nu := newHgen(t, "new", dupListener(t, ln), nil)
	io.WriteString(c.c, "GET /half HTTP/1.1\r\nHo")
	time.Sleep(100 * time.Millisecond) // read by net/http, which waits for the rest
	old.hub.PointAt(nu.hub.Path())
	done := old.drainAsync(10 * time.Second)
	time.Sleep(100 * time.Millisecond)
	io.WriteString(c.c, "st: test\r\n\r\n")
	expectGen(t, c.read(t), "old", false)
	waitDrain(t, done, 3*time.Second)
	c.send("/")
	expectGen(t, c.read(t), "new", false)
}

// The new generation is gone (died after ready): the old one keeps its
// connections and serves them with Connection: close.
func TestHandoffSendFailureFallsBack(t *testing.T) {
	ln := listenTCP(t)
	old := newHgen(t, "old", dupListener(t, ln), nil)
	dead, err := handoff.Open(filepath.Join(t.TempDir(), "dead.sock"))
	if err != nil {
		t.Fatal(err)
	}
	deadPath := dead.Path()
	dead.Close() // the file stays; connect fails with ECONNREFUSED
	idle := dialRaw(t, ln.Addr().String())
	idle.send("/")
	expectGen(t, idle.read(t), "old", false)
	busy := dialRaw(t, ln.Addr().String())
	busy.send("/slow")
	<-old.started
	old.hub.PointAt(deadPath)
	done := old.drainAsync(2 * time.Second)
	time.Sleep(100 * time.Millisecond)
	idle.send("/")
	expectGen(t, idle.read(t), "old", true)
	close(old.release)
	expectGen(t, busy.read(t), "old", true)
	if !idle.closedByPeer() || !busy.closedByPeer() {
		t.Fatal("not closed after Connection: close")
	}
	waitDrain(t, done, 3*time.Second)
	if n := old.hub.Stats().Kept; n == 0 {
		t.Fatal("no failed handover recorded")
	}
}

// A handed-over connection keeps the server's idle timeout, counted from
// when it became idle on the old generation, not the header timeout a new
// connection gets.
func TestHandoffKeepsIdleTimeout(t *testing.T) {
	ln := listenTCP(t)
	old := newHgen(t, "old", dupListener(t, ln), nil)
	tune := func(s *http.Server) {
		s.ReadHeaderTimeout = 200 * time.Millisecond
		s.IdleTimeout = 1500 * time.Millisecond
	}
	a := dialRaw(t, ln.Addr().String())
	b := dialRaw(t, ln.Addr().String())
	for _, c := range []*rawClient{a, b} {
		c.send("/")
		expectGen(t, c.read(t), "old", false)
	}
	nu := newHgen(t, "new", dupListener(t, ln), tune)
	idleFrom := time.Now()
	old.hub.PointAt(nu.hub.Path())
	waitDrain(t, old.drainAsync(10*time.Second), 3*time.Second)
	time.Sleep(600 * time.Millisecond) // > ReadHeaderTimeout
	a.send("/")
	expectGen(t, a.read(t), "new", false)
	// b stays idle: closed by the idle timeout, about 1.5s after it
	// became idle on the old generation.
	if !b.closedByPeer() {
		b.c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := b.br.ReadByte(); !errors.Is(err, io.EOF) {
			t.Fatalf("idle handed-over connection not closed by the idle timeout: %v", err)
		}
	}
	if d := time.Since(idleFrom); d < 1200*time.Millisecond || d > 3*time.Second {
		t.Fatalf("closed %v after it became idle, want about 1.5s", d)
	}
}

// Back-to-back swaps: A hands to B; B, draining in turn with C as its
// target, answers "MOVED" for what A still sends, and A follows to C.
func TestHandoffBackToBack(t *testing.T) {
	ln := listenTCP(t)
	a := newHgen(t, "A", dupListener(t, ln), nil)
	busy := dialRaw(t, ln.Addr().String())
	busy.send("/slow")
	<-a.started
	b := newHgen(t, "B", dupListener(t, ln), nil)
	idle := dialRaw(t, ln.Addr().String())
	// idle may be accepted by A or B: both share the socket.
	idle.send("/")
	idle.read(t)

	a.hub.PointAt(b.hub.Path())
	doneA := a.drainAsync(10 * time.Second)
	time.Sleep(100 * time.Millisecond)

	c := newHgen(t, "C", dupListener(t, ln), nil)
	b.hub.PointAt(c.hub.Path()) // A is not told: it learns from B's MOVED
	doneB := b.drainAsync(10 * time.Second)
	waitDrain(t, doneB, 3*time.Second)
	idle.send("/")
	expectGen(t, idle.read(t), "C", false)

	close(a.release)
	expectGen(t, busy.read(t), "A", false)
	waitDrain(t, doneA, 3*time.Second)
	busy.send("/")
	expectGen(t, busy.read(t), "C", false)
}
