package load

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// exampleServer starts a real net/http server on 127.0.0.1 that behaves like
// the example server (?sleep=DUR, X-Hotswap-* headers) and counts the
// requests its handler served.
type exampleServer struct {
	*httptest.Server
	served  atomic.Int64
	version atomic.Value // string
	status  func(n int64, w http.ResponseWriter) int
}

func newExampleServer(t testing.TB, configure func(*http.Server)) *exampleServer {
	s := &exampleServer{}
	s.version.Store("v1")
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.served.Add(1)
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
			time.Sleep(d)
		}
		v := s.version.Load().(string)
		w.Header().Set("X-Hotswap-Version", v)
		w.Header().Set("X-Hotswap-Generation", strings.TrimPrefix(v, "v"))
		w.Header().Set("X-Hotswap-Pid", "1234")
		code := http.StatusOK
		if s.status != nil {
			code = s.status(n, w)
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, "version=%s generation=%s pid=1234\n", v, strings.TrimPrefix(v, "v"))
	}))
	if configure != nil {
		configure(s.Config)
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func (s *exampleServer) addr() string { return s.Listener.Addr().String() }

// rawServer starts a TCP server on 127.0.0.1 that runs handle on each
// connection; it closes everything at cleanup.
func rawServer(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// readRequest reads one request head (no body) from br.
func readRequest(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 && strings.TrimSpace(string(line)) == "" {
			return nil
		}
	}
}

func checkTotals(t *testing.T, rep *Report) {
	t.Helper()
	if got := rep.OK + int64(rep.Failed()) + rep.Aborted; got != rep.Attempts {
		t.Errorf("ok %d + failed %d + aborted %d = %d, want attempts %d", rep.OK, rep.Failed(), rep.Aborted, got, rep.Attempts)
	}
	var sum int64
	for _, c := range rep.classes() {
		sum += c.r.Attempts
		if c.r.OK+c.r.Failures.Total()+c.r.Aborted != c.r.Attempts {
			t.Errorf("%s: totals do not add up: %+v", c.class, *c.r)
		}
	}
	if sum != rep.Attempts {
		t.Errorf("class attempts sum %d, want %d", sum, rep.Attempts)
	}
	if rep.Latency.Overall.Count != rep.OK {
		t.Errorf("latency count %d, want ok %d", rep.Latency.Overall.Count, rep.OK)
	}
	if w, b := rep.Latency.SwapWindow, rep.Latency.Baseline; w.Count+b.Count != rep.OK || w.Failed+b.Failed != int64(rep.Failed()) {
		t.Errorf("window %+v + baseline %+v do not add up to ok %d failed %d", w, b, rep.OK, rep.Failed())
	}
}

func TestCountsMatchServer(t *testing.T) {
	s := newExampleServer(t, nil)
	r, err := Start(context.Background(), Config{
		Addr: s.addr(), Duration: time.Second,
		KeepAlive: 4, NewConn: 2, SlowFraction: 0.1, IdlePool: 3, IdleFor: 100 * time.Millisecond,
		SwapWindow: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	r.MarkSwap(time.Now())
	rep := r.Wait()
	t.Logf("\n%s", rep)
	checkTotals(t, rep)
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	if rep.Attempts == 0 || rep.OK != s.served.Load() {
		t.Errorf("ok %d attempts %d, server served %d", rep.OK, rep.Attempts, s.served.Load())
	}
	if rc := rep.Reconnects(); rc.Total() != 0 {
		t.Errorf("reconnects %+v, want none", rc)
	}
	if rep.KeepAlive.Connections != 4 || rep.IdlePool.Connections != 3 || rep.NewConn.Connections != rep.NewConn.Attempts {
		t.Errorf("connections: keepalive %d idle %d newconn %d (attempts %d)", rep.KeepAlive.Connections,
			rep.IdlePool.Connections, rep.NewConn.Connections, rep.NewConn.Attempts)
	}
	if rep.IdlePool.Attempts < 3*5 {
		t.Errorf("idle pool made %d attempts, want ≥ 15", rep.IdlePool.Attempts)
	}
	if len(rep.Versions) != 1 || rep.Versions[0].Version != "v1" || rep.Versions[0].Responses != rep.Attempts {
		t.Errorf("versions %+v, want v1 × %d", rep.Versions, rep.Attempts)
	}
	if len(rep.Generations) != 1 || rep.Generations[0].Pid != "1234" || rep.Generations[0].Generation != "1" {
		t.Errorf("generations %+v", rep.Generations)
	}
	if len(rep.Swaps) != 1 || rep.Latency.SwapWindow.Count == 0 || rep.Latency.Baseline.Count == 0 {
		t.Errorf("swaps %v, window %d, baseline %d", rep.Swaps, rep.Latency.SwapWindow.Count, rep.Latency.Baseline.Count)
	}
	if p := rep.Latency.Overall; p.P99 < 50*time.Millisecond || p.Max < p.P99 || p.P50 > p.P99 {
		t.Errorf("latency %+v: want p99 ≥ 50ms with 10%% slow requests", p)
	}
}

func TestRequestBound(t *testing.T) {
	s := newExampleServer(t, nil)
	rep, err := Run(context.Background(), Config{Addr: s.addr(), Requests: 300, KeepAlive: 3, NewConn: 1})
	if err != nil {
		t.Fatal(err)
	}
	checkTotals(t, rep)
	if rep.Attempts != 300 || rep.OK != 300 || s.served.Load() != 300 {
		t.Fatalf("attempts %d ok %d served %d, want 300", rep.Attempts, rep.OK, s.served.Load())
	}
}

func TestServerConnectionClose(t *testing.T) {
	s := newExampleServer(t, nil)
	s.status = func(n int64, w http.ResponseWriter) int {
		if n%3 == 0 {
			w.Header().Set("Connection", "close")
		}
		return http.StatusOK
	}
	rep, err := Run(context.Background(), Config{Addr: s.addr(), Requests: 300, KeepAlive: 1})
	if err != nil {
		t.Fatal(err)
	}
	checkTotals(t, rep)
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	// Requests 3, 6, ..., 300 close; a new connection follows each but the last.
	want := Reconnects{ServerClose: 99}
	if rc := rep.Reconnects(); rc != want || rep.KeepAlive.Connections != 100 || s.served.Load() != 300 {
		t.Fatalf("reconnects %+v connections %d served %d, want %+v, 100, 300", rc, rep.KeepAlive.Connections, s.served.Load(), want)
	}
}

func TestStatusCounted(t *testing.T) {
	s := newExampleServer(t, nil)
	s.status = func(n int64, w http.ResponseWriter) int {
		if n%2 == 0 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
	rep, err := Run(context.Background(), Config{Addr: s.addr(), Requests: 100, KeepAlive: 1, FailurePause: -1})
	if err != nil {
		t.Fatal(err)
	}
	checkTotals(t, rep)
	if rep.Failures.Status != 50 || rep.Failures.StatusCodes[503] != 50 || rep.OK != 50 || rep.Failed() != 50 {
		t.Fatalf("failures %+v ok %d", rep.Failures, rep.OK)
	}
	if rep.Reconnects().Total() != 0 {
		t.Errorf("a non-2xx must not close the connection: reconnects %+v", rep.Reconnects())
	}
	err = rep.Err()
	if !errors.Is(err, ErrFailures) || !strings.Contains(err.Error(), "non-2xx=50") || !strings.Contains(err.Error(), "503×50") {
		t.Fatalf("Err() = %v", err)
	}
}

func TestResetCounted(t *testing.T) {
	var served atomic.Int64
	addr := rawServer(t, func(c net.Conn) {
		if readRequest(bufio.NewReader(c)) != nil {
			return
		}
		served.Add(1)
		_ = c.(*net.TCPConn).SetLinger(0) // close sends RST
	})
	rep, err := Run(context.Background(), Config{Addr: addr, Duration: 300 * time.Millisecond, KeepAlive: 2, NewConn: 1})
	if err != nil {
		t.Fatal(err)
	}
	checkTotals(t, rep)
	if rep.Attempts == 0 || rep.Failures.Reset != rep.Attempts || rep.Attempts != served.Load() {
		t.Fatalf("attempts %d served %d failures %s, want all reset", rep.Attempts, served.Load(), rep.Failures)
	}
	if ka := rep.KeepAlive; ka.Reconnects.Error != ka.Connections-2 || ka.Reconnects.ServerClose != 0 {
		t.Errorf("keepalive reconnects %+v with %d connections", ka.Reconnects, ka.Connections)
	}
	if rep.Failures.OnReused != 0 {
		t.Errorf("%d failures on reused connections: every connection fails its first attempt", rep.Failures.OnReused)
	}
}

func TestIdleClosedByServer(t *testing.T) {
	short := func(hs *http.Server) { hs.IdleTimeout = 30 * time.Millisecond }
	t.Run("checked before reuse", func(t *testing.T) {
		s := newExampleServer(t, short)
		rep, err := Run(context.Background(), Config{Addr: s.addr(), Duration: 600 * time.Millisecond,
			IdlePool: 3, IdleFor: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		checkTotals(t, rep)
		if err := rep.Err(); err != nil {
			t.Fatal(err)
		}
		ip := rep.IdlePool
		if ip.Reconnects.Stale == 0 || ip.Reconnects.Stale != ip.Connections-3 || rep.OK != s.served.Load() {
			t.Fatalf("idle pool %+v, served %d: want stale reconnects only", ip, s.served.Load())
		}
	})
	t.Run("reused unchecked", func(t *testing.T) {
		s := newExampleServer(t, short)
		rep, err := Run(context.Background(), Config{Addr: s.addr(), Duration: 600 * time.Millisecond,
			IdlePool: 3, IdleFor: 100 * time.Millisecond, IdleNoCheck: true})
		if err != nil {
			t.Fatal(err)
		}
		checkTotals(t, rep)
		f := rep.Failures
		if f.Total() == 0 || f.EOF+f.Reset != f.Total() || f.OnReused != f.Total() || rep.OK != s.served.Load() {
			t.Fatalf("failures %s (ok %d, served %d): want EOF/reset on reused connections", f, rep.OK, s.served.Load())
		}
		if ip := rep.IdlePool; ip.Reconnects.Error == 0 || ip.Reconnects.Stale != 0 {
			t.Errorf("idle pool reconnects %+v: want by error", ip.Reconnects)
		}
	})
	t.Run("keep-alive closed after response", func(t *testing.T) {
		// A server that closes each connection just after its response
		// without saying Connection: close: back-to-back clients see EOF
		// or reset on the reused connection, as at a plain Shutdown.
		var served atomic.Int64
		addr := rawServer(t, func(c net.Conn) {
			if readRequest(bufio.NewReader(c)) != nil {
				return
			}
			served.Add(1)
			c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
			time.Sleep(5 * time.Millisecond)
		})
		rep, err := Run(context.Background(), Config{Addr: addr, Duration: 300 * time.Millisecond, KeepAlive: 2})
		if err != nil {
			t.Fatal(err)
		}
		checkTotals(t, rep)
		f := rep.Failures
		if rep.OK != served.Load() || f.Total() == 0 || f.EOF+f.Reset != f.Total() || f.OnReused != f.Total() {
			t.Fatalf("ok %d served %d failures %s", rep.OK, served.Load(), f)
		}
	})
}

func TestTimeBoundWithHungServer(t *testing.T) {
	var accepted atomic.Int64
	addr := rawServer(t, func(c net.Conn) {
		accepted.Add(1)
		io.Copy(io.Discard, c) // never answers
	})
	start := time.Now()
	rep, err := Run(context.Background(), Config{Addr: addr, Duration: 300 * time.Millisecond, Timeout: 200 * time.Millisecond,
		KeepAlive: 2, NewConn: 2, IdlePool: 2, IdleFor: 50 * time.Millisecond})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	checkTotals(t, rep)
	if took > 300*time.Millisecond+200*time.Millisecond+time.Second {
		t.Errorf("run took %v, want ≤ duration+timeout", took)
	}
	if rep.Attempts == 0 || rep.Failures.Timeout != rep.Attempts {
		t.Fatalf("attempts %d, failures %s: want all timeouts", rep.Attempts, rep.Failures)
	}
	if !strings.Contains(rep.Err().Error(), "timeout=") {
		t.Errorf("Err() = %v", rep.Err())
	}
}

func TestRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	rep, err := Run(context.Background(), Config{Addr: addr, Duration: 100 * time.Millisecond, KeepAlive: 1, NewConn: 1})
	if err != nil {
		t.Fatal(err)
	}
	checkTotals(t, rep)
	if rep.Attempts == 0 || rep.Failures.Refused != rep.Attempts || rep.KeepAlive.Connections != 0 {
		t.Fatalf("attempts %d failures %s", rep.Attempts, rep.Failures)
	}
	// FailurePause (10ms) keeps a client from spinning on a dead server.
	if rep.Attempts > 2*(100/10+2) {
		t.Errorf("%d attempts in 100ms: failure pause not applied", rep.Attempts)
	}
}

func TestCancelAborts(t *testing.T) {
	addr := rawServer(t, func(c net.Conn) {
		io.Copy(io.Discard, c) // never answers
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	rep, err := Run(ctx, Config{Addr: addr, Duration: time.Minute, Timeout: time.Minute, KeepAlive: 2, NewConn: 1})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("cancelled run took %v", took)
	}
	checkTotals(t, rep)
	if rep.Aborted != 3 || rep.Failed() != 0 {
		t.Fatalf("aborted %d failed %d (%s), want 3 aborted, none failed", rep.Aborted, rep.Failed(), rep.Failures)
	}
}

func TestVersionsAndWindows(t *testing.T) {
	s := newExampleServer(t, nil)
	r, err := Start(context.Background(), Config{Addr: s.addr(), Duration: 800 * time.Millisecond, KeepAlive: 2, NewConn: 1,
		SwapWindow: 50 * time.Millisecond, MarkLag: 300 * time.Millisecond, KeepAttempts: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.WaitVersion(context.Background(), "v1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	trigger := time.Now()
	s.version.Store("v2")
	at, err := r.WaitVersion(context.Background(), "v2")
	if err != nil {
		t.Fatal(err)
	}
	if at.Before(trigger) || at.Sub(trigger) > time.Second {
		t.Errorf("v2 first seen %v after the switch", at.Sub(trigger))
	}
	r.MarkSwap(trigger)
	time.Sleep(200 * time.Millisecond)
	r.MarkSwap(time.Now().Add(-100 * time.Millisecond)) // recorded late, within MarkLag
	if _, ok := r.FirstSeen("v3"); ok {
		t.Error("v3 seen")
	}
	rep := r.Wait()
	checkTotals(t, rep)
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.WaitVersion(context.Background(), "v3"); err == nil {
		t.Error("WaitVersion after the run: want error")
	}
	if len(rep.Versions) != 2 || rep.Versions[0].Version != "v1" || rep.Versions[1].Version != "v2" ||
		rep.Versions[0].Responses+rep.Versions[1].Responses != rep.Attempts || !rep.Versions[1].First.Equal(at) {
		t.Errorf("versions %+v", rep.Versions)
	}
	if len(rep.Generations) != 2 || rep.Generations[1].Generation != "2" {
		t.Errorf("generations %+v", rep.Generations)
	}
	// The streaming classification equals one made afterwards from the log.
	if int64(len(rep.Log)) != rep.Attempts {
		t.Fatalf("log has %d attempts, want %d", len(rep.Log), rep.Attempts)
	}
	var win, base int64
	for _, a := range rep.Log {
		in := false
		for _, m := range rep.Swaps {
			if !a.Start.After(m.Add(50*time.Millisecond)) && !a.Start.Add(a.Latency).Before(m.Add(-50*time.Millisecond)) {
				in = true
			}
		}
		if in {
			win++
		} else {
			base++
		}
	}
	if win == 0 || win != rep.Latency.SwapWindow.Count || base != rep.Latency.Baseline.Count {
		t.Errorf("window %d baseline %d, log says %d %d", rep.Latency.SwapWindow.Count, rep.Latency.Baseline.Count, win, base)
	}
}

func TestReportOutput(t *testing.T) {
	s := newExampleServer(t, nil)
	rep, err := Run(context.Background(), Config{Addr: s.addr(), Requests: 20, KeepAlive: 1})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"attempts": 20`, `"reconnects"`, `"p99_ns"`, `"version": "v1"`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("JSON lacks %s:\n%s", want, b.String())
		}
	}
	if txt := rep.String(); !strings.Contains(txt, "keepalive") || !strings.Contains(txt, "baseline") {
		t.Errorf("text report:\n%s", txt)
	}
}

func TestGenerationsInterleaved(t *testing.T) {
	// During a swap both generations answer: a client sees them alternate.
	var served atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g := 7 + served.Add(1)%2
		w.Header().Set("X-Hotswap-Generation", fmt.Sprint(g))
		w.Header().Set("X-Hotswap-Version", fmt.Sprintf("v1.%d", g))
		w.Header().Set("X-Hotswap-Pid", fmt.Sprint(100+g))
	}))
	defer s.Close()
	rep, err := Run(context.Background(), Config{Addr: s.Listener.Addr().String(), Requests: 1000, KeepAlive: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rep.Generations) != 2 || rep.Generations[0].Responses != 500 || rep.Generations[1].Responses != 500 ||
		rep.Generations[0].Generation != "8" || rep.Generations[1].Pid != "107" {
		t.Fatalf("generations %+v", rep.Generations)
	}
	if len(rep.Versions) != 2 || rep.Versions[0].Version != "v1.8" || rep.Versions[1].Responses != 500 {
		t.Fatalf("versions %+v", rep.Versions)
	}
}

func TestRate(t *testing.T) {
	s := newExampleServer(t, nil)
	rep, err := Run(context.Background(), Config{Addr: s.addr(), Duration: time.Second, KeepAlive: 3, NewConn: 1, Rate: 200})
	if err != nil {
		t.Fatal(err)
	}
	checkTotals(t, rep)
	if rep.Attempts < 150 || rep.Attempts > 210 || rep.OK != s.served.Load() {
		t.Fatalf("%d attempts in 1s at rate 200 (served %d)", rep.Attempts, s.served.Load())
	}
}
