package admin

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"
)

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// Clients cannot make PID 1 hold descriptors without bound through the
// admin port: at most MaxConns connections are open on the server side,
// and an idle keep-alive connection is closed after IdleTimeout. Before,
// 300 idle connections held 311 descriptors for as long as they liked.
func TestIdleConnectionsAreBounded(t *testing.T) {
	const maxConns, clients = 8, 64
	s := New(Options{Addr: "127.0.0.1:0", MaxConns: maxConns, IdleTimeout: 300 * time.Millisecond}, nil)
	l, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	base := openFDs(t)

	conns := make([]net.Conn, clients)
	for i := range conns {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	time.Sleep(150 * time.Millisecond) // let the server accept all it will
	// Our own client ends count once each; the rest is the server's.
	if server := openFDs(t) - base - clients; server > maxConns+2 {
		t.Errorf("the server holds %d descriptors for %d clients, want at most MaxConns=%d", server, clients, maxConns)
	}

	// Each client is answered (in turns of MaxConns), then hung up on.
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for _, c := range conns {
		wg.Go(func() {
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				errs <- err
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
				errs <- errors.New("idle keep-alive connection not closed by the server: " + errorString(err))
				return
			}
			c.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
		break
	}
	deadline := time.Now().Add(5 * time.Second)
	for openFDs(t) > base+2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := openFDs(t); n > base+2 {
		t.Errorf("%d descriptors open after every client left, %d before", n, base)
	}
}

func errorString(err error) string {
	if err == nil {
		return "read a byte"
	}
	return err.Error()
}
