package drain

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/reuseport/activation"
)

// The handover load test: generations of an HTTP server take turns on one
// shared listening socket (PID 1 holds it; each generation serves a dup made
// by ExportFiles, as under hotswap's handoff mode), while keep-alive and
// new-connection clients that never retry count every attempt. Each old
// generation is stopped with plain http.Server.Shutdown or with Drain and
// then "exits": every connection it accepted is closed, as process exit
// would. REUSEPORT_SWAPS sets the number of handovers (default 20).

// loadStats counts attempts and failures by kind.
type loadStats struct {
	attempts, ok                                atomic.Int64
	refused, reset, eof, timeout, other, non200 atomic.Int64
}

func (s *loadStats) failed() int64 { return s.attempts.Load() - s.ok.Load() }

func (s *loadStats) String() string {
	return fmt.Sprintf("%d requests, %d failed (refused %d, reset %d, EOF %d, timeout %d, other %d, non-2xx %d)",
		s.attempts.Load(), s.failed(), s.refused.Load(), s.reset.Load(), s.eof.Load(), s.timeout.Load(), s.other.Load(), s.non200.Load())
}

func (s *loadStats) fail(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		s.refused.Add(1)
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		s.reset.Add(1)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		s.eof.Add(1)
	case errors.As(err, &ne) && ne.Timeout():
		s.timeout.Add(1)
	default:
		s.other.Add(1)
	}
}

// do sends one request on *c (dialing if nil) and reads the whole response;
// it never retries. A response with Connection: close (or an error) closes *c.
func (s *loadStats) do(addr string, c **bufConn, keepAlive bool) {
	s.attempts.Add(1)
	if *c == nil {
		nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			s.fail(err)
			return
		}
		*c = &bufConn{nc, bufio.NewReader(nc)}
	}
	conn := *c
	drop := func() { conn.Close(); *c = nil }
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	hdr := ""
	if !keepAlive {
		hdr = "Connection: close\r\n"
	}
	if _, err := fmt.Fprintf(conn, "GET /?slow=%v HTTP/1.1\r\nHost: load\r\n%s\r\n", rand.IntN(10) == 0, hdr); err != nil {
		s.fail(err)
		drop()
		return
	}
	resp, err := http.ReadResponse(conn.br, nil)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	switch {
	case err != nil:
		s.fail(err)
		drop()
		return
	case resp.StatusCode != http.StatusOK:
		s.non200.Add(1)
	default:
		s.ok.Add(1)
	}
	if resp.Close || !keepAlive {
		drop()
	}
}

type bufConn struct {
	net.Conn
	br *bufio.Reader
}

// generation is one server generation in-process.
type generation struct {
	srv   *http.Server
	s     *Server // nil for plain Shutdown
	mu    sync.Mutex
	conns []net.Conn
}

// trackingListener remembers accepted connections so that "exit" can close
// them all, like the kernel does when a process exits.
type trackingListener struct {
	net.Listener
	g *generation
}

func (l trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.g.mu.Lock()
		l.g.conns = append(l.g.conns, c)
		l.g.mu.Unlock()
	}
	return c, err
}

func startGeneration(t testing.TB, shared net.Listener, useDrain bool) *generation {
	files, _, err := activation.ExportFiles([]activation.NamedListener{{Name: "http", Listener: shared}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.FileListener(files[0])
	files[0].Close()
	if err != nil {
		t.Fatal(err)
	}
	g := &generation{srv: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("slow") == "true" {
			time.Sleep(50 * time.Millisecond)
		}
		io.WriteString(w, "ok\n")
	})}}
	tl := trackingListener{ln, g}
	if useDrain {
		g.s = Serve(g.srv, tl, nil)
	} else {
		go g.srv.Serve(tl)
	}
	return g
}

// stop drains the generation and then exits it.
func (g *generation) stop(grace time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	if g.s != nil {
		err = g.s.Drain(ctx, grace)
	} else {
		err = g.srv.Shutdown(ctx)
	}
	g.mu.Lock() // process exit
	for _, c := range g.conns {
		c.Close()
	}
	g.mu.Unlock()
	return err
}

func runHandovers(t *testing.T, useDrain bool, swaps int) (*loadStats, time.Duration) {
	shared := listenTCP(t)
	addr := shared.Addr().String()
	var st loadStats
	stopClients := make(chan struct{})
	var wg sync.WaitGroup
	const keepAliveClients, newConnClients = 8, 4
	for i := 0; i < keepAliveClients+newConnClients; i++ {
		keepAlive := i < keepAliveClients
		wg.Go(func() {
			var c *bufConn
			defer func() {
				if c != nil {
					c.Close()
				}
			}()
			for {
				select {
				case <-stopClients:
					return
				default:
				}
				st.do(addr, &c, keepAlive)
				time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
			}
		})
	}
	old := startGeneration(t, shared, useDrain)
	var drainTotal time.Duration
	for i := 0; i < swaps; i++ {
		time.Sleep(50 * time.Millisecond)
		next := startGeneration(t, shared, useDrain) // new generation ready
		begin := time.Now()
		if err := old.stop(time.Second); err != nil {
			t.Errorf("stop generation %d: %v", i, err)
		}
		drainTotal += time.Since(begin)
		old = next
	}
	time.Sleep(50 * time.Millisecond)
	close(stopClients)
	wg.Wait()
	old.stop(time.Second)
	return &st, drainTotal / time.Duration(max(swaps, 1))
}

func TestDrainHandoversZeroFailed(t *testing.T) {
	swaps := 20
	if v, err := strconv.Atoi(os.Getenv("REUSEPORT_SWAPS")); err == nil {
		swaps = v
	}
	if testing.Short() {
		swaps = 5
	}
	plain, plainDur := runHandovers(t, false, swaps)
	drain, drainDur := runHandovers(t, true, swaps)
	t.Logf("%d handovers, 8 keep-alive + 4 new-connection clients, 10%% of requests 50 ms", swaps)
	t.Logf("plain Shutdown: %v; mean stop %v", plain, plainDur.Round(time.Millisecond))
	t.Logf("Drain:          %v; mean stop %v", drain, drainDur.Round(time.Millisecond))
	if drain.failed() != 0 {
		t.Errorf("Drain lost requests: %v", drain)
	}
	if drain.attempts.Load() < int64(swaps)*50 {
		t.Errorf("too little load to mean anything: %v", drain)
	}
}
