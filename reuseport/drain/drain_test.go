package drain

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/reuseport/activation"
)

// rawClient is one HTTP/1.1 keep-alive connection that never retries.
type rawClient struct {
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{c: c, br: bufio.NewReader(c)}
}

func (rc *rawClient) send(path string) {
	fmt.Fprintf(rc.c, "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path)
}

func (rc *rawClient) read(t testing.TB) *http.Response {
	t.Helper()
	rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// closedByPeer reports whether the server closed the connection.
func (rc *rawClient) closedByPeer() bool {
	rc.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := rc.br.ReadByte()
	return errors.Is(err, io.EOF)
}

func TestDrainTellsKeepAliveClients(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "slow")
	})
	ln := listenTCP(t)
	s := Serve(&http.Server{Handler: mux}, ln, nil)

	idle := dialRaw(t, ln.Addr().String())
	idle.send("/")
	if resp := idle.read(t); resp.Close {
		t.Fatal("Connection: close before draining")
	}
	inflight := dialRaw(t, ln.Addr().String())
	inflight.send("/slow")
	<-started

	begin := time.Now()
	drained := make(chan error, 1)
	go func() { drained <- s.Drain(context.Background(), 10*time.Second) }()
	for !s.draining.Load() {
		time.Sleep(time.Millisecond)
	}
	<-s.Done()

	// The idle keep-alive connection is not closed under its client: its
	// next request is answered, with Connection: close, then it is closed.
	idle.send("/")
	if resp := idle.read(t); !resp.Close || resp.StatusCode != 200 {
		t.Errorf("request on idle connection while draining: status %d, close %v", resp.StatusCode, resp.Close)
	}
	if !idle.closedByPeer() {
		t.Error("idle connection not closed after Connection: close")
	}
	// The request in flight when draining began is told too.
	close(release)
	if resp := inflight.read(t); !resp.Close {
		t.Error("in-flight response without Connection: close")
	}
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("drain took %v: it should end once no connection is left, not after the grace", d)
	}
	if s.Err() != nil {
		t.Errorf("Err after drain: %v", s.Err())
	}
}

func TestDrainSilentIdleAfterGrace(t *testing.T) {
	ln := listenTCP(t)
	s := Serve(&http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}, ln, nil)
	idle := dialRaw(t, ln.Addr().String())
	idle.send("/")
	idle.read(t)
	begin := time.Now()
	if err := s.Drain(context.Background(), 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d < 300*time.Millisecond {
		t.Errorf("drain returned after %v, before the grace, with a keep-alive connection open", d)
	}
	if !idle.closedByPeer() {
		t.Error("idle connection still open after drain")
	}
}

func TestDrainContextEnds(t *testing.T) {
	ln := listenTCP(t)
	stuck := make(chan struct{})
	defer close(stuck)
	s := Serve(&http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-stuck })}, ln, nil)
	c := dialRaw(t, ln.Addr().String())
	c.send("/")
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := s.Drain(ctx, time.Hour)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "reuseport: drain ") {
		t.Errorf("Drain = %v, want a wrapped deadline error", err)
	}
	if !c.closedByPeer() {
		t.Error("connection left open after the drain deadline")
	}
	if err2 := s.Drain(context.Background(), 0); err2 != err {
		t.Errorf("second Drain = %v, want the first result", err2)
	}
}

func TestServeKeepsWriterInterfaces(t *testing.T) {
	ln := listenTCP(t)
	var flusher, hijacker, readerFrom bool
	done := make(chan struct{})
	s := Serve(&http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		_, flusher = w.(http.Flusher)
		_, hijacker = w.(http.Hijacker)
		_, readerFrom = w.(io.ReaderFrom)
		if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Second)); err != nil {
			t.Errorf("ResponseController through the wrapper: %v", err)
		}
	})}, ln, nil)
	defer s.Drain(context.Background(), 0)
	get(t, "tcp", ln.Addr().String())
	<-done
	if !flusher || !hijacker || !readerFrom {
		t.Errorf("Flusher %v Hijacker %v ReaderFrom %v", flusher, hijacker, readerFrom)
	}
}

func BenchmarkServeWrapper(b *testing.B) {
	for _, wrapped := range []bool{false, true} {
		b.Run(fmt.Sprintf("wrapped=%v", wrapped), func(b *testing.B) {
			ln, err := activation.Listen(context.Background(), "tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
			if wrapped {
				s := Serve(srv, ln, nil)
				defer s.Drain(context.Background(), 0)
			} else {
				go srv.Serve(ln)
				defer srv.Close()
			}
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			req := []byte("GET / HTTP/1.1\r\nHost: b\r\n\r\n")
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c.Write(req)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
