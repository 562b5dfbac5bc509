package drain

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/e2e/netns"

	"github.com/hotswap-dev/hotswap/reuseport/activation"
	"github.com/hotswap-dev/hotswap/reuseport/steer"
)

// The migration reproducer: generations that each bind their own
// SO_REUSEPORT listener (hotswap --mode reuseport) take turns under a high
// rate of new connections, in a network namespace of the test's own
// (net.ipv4.tcp_migrate_req is set there only). Every client attempt is
// counted; a reset is a new connection the kernel accepted (the handshake
// completed) and then reset.
//
// Knobs (environment): REUSEPORT_MIGRATE_HANDOVERS (default 300),
// REUSEPORT_MIGRATE_MODES (comma-separated, default "drain"):
//
//   - close: a bare accept loop; the old generation closes its listener
//     while the kernel still spreads new connections by hash (the baseline);
//   - close-steer: the same, but the new generation steers the group's new
//     connections to itself when "ready" (package steer);
//   - drain-nosteer: Serve, and Drain to stop, without steering (the
//     library before steering);
//   - drain: Serve, steering at "ready", Drain (the library).
//
// REUSEPORT_MIGRATE_REQ=0 runs with net.ipv4.tcp_migrate_req=0.

const envMigrateNetns = "REUSEPORT_MIGRATE_NETNS"

// inOwnNetns re-runs the test under `unshare --net` and returns false in
// the outer process; in the inner one it brings loopback up and returns true.
func inOwnNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv(envMigrateNetns) == t.Name() {
		if err := netns.LoopbackUp(); err != nil {
			t.Fatalf("loopback up: %v", err)
		}
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: a network namespace of the test's own")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare(1)")
	}
	args := []string{"--net", "--", os.Args[0], "-test.count=1", "-test.v", "-test.run=^" + t.Name() + "$"}
	if d, ok := t.Deadline(); ok {
		args = append(args, "-test.timeout="+time.Until(d).Round(time.Second).String())
	}
	if testing.Short() {
		args = append(args, "-test.short")
	}
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(os.Environ(), envMigrateNetns+"="+t.Name())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	for _, l := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "migrate_test.go") {
			t.Log(strings.TrimSpace(l))
		}
	}
	if err != nil {
		t.Fatalf("inner run in its own network namespace: %v\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "--- SKIP") {
		t.Skipf("inner run skipped:\n%s", out.String())
	}
	return false
}

// netstat reads the TcpExt and Tcp counters of the current network namespace.
func netstat(t *testing.T) map[string]int64 {
	t.Helper()
	m := map[string]int64{}
	for _, f := range []string{"/proc/net/netstat", "/proc/net/snmp"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(b), "\n")
		for i := 0; i+1 < len(lines); i += 2 {
			names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
			if len(names) != len(values) || len(names) == 0 {
				continue
			}
			for j := 1; j < len(names); j++ {
				v, _ := strconv.ParseInt(values[j], 10, 64)
				m[strings.TrimSuffix(names[0], ":")+"."+names[j]] = v
			}
		}
	}
	return m
}

var migrateCounters = []string{
	"TcpExt.TCPMigrateReqSuccess", "TcpExt.TCPMigrateReqFailure",
	"TcpExt.ListenOverflows", "TcpExt.ListenDrops", "TcpExt.TCPReqQFullDrop",
	"TcpExt.SyncookiesSent", "Tcp.OutRsts", "Tcp.AttemptFails", "Tcp.EstabResets",
}

// migrateGen is one generation: its own SO_REUSEPORT listener, served by
// Serve (and stopped by Drain), or by a bare accept loop (mode close).
type migrateGen struct {
	ln   net.Listener
	st   *steer.Steerer // nil without steering
	srv  *Server
	done chan struct{}
	wg   sync.WaitGroup
}

var okResponse = []byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")

func startMigrateGen(t *testing.T, addr, mode string) *migrateGen {
	var ln net.Listener
	var st *steer.Steerer
	var err error
	if mode == "close-steer" || mode == "drain" {
		ln, st, err = steer.Listen(context.Background(), "tcp4", addr)
	} else {
		ln, err = activation.Listen(context.Background(), "tcp4", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	g := &migrateGen{ln: ln, st: st, done: make(chan struct{})}
	if strings.HasPrefix(mode, "drain") {
		hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "ok\n")
		})}
		g.srv = Serve(hs, ln, nil)
		return g
	}
	go func() {
		defer close(g.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				c.Write(okResponse)
			}()
		}
	}()
	return g
}

func (g *migrateGen) stop() error {
	if g.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return g.srv.Drain(ctx, 300*time.Millisecond)
	}
	g.ln.Close()
	<-g.done
	g.wg.Wait()
	return nil
}

// migrateClient opens a new connection per request, never retries, and
// closes with SO_LINGER 0 once it has the whole response (no TIME_WAIT on
// either side, so no port reuse meets an old connection).
func migrateClient(addr string, st *loadStats, stop <-chan struct{}) {
	d := net.Dialer{Timeout: 5 * time.Second}
	req := []byte("GET / HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
	buf := make([]byte, 512)
	for {
		select {
		case <-stop:
			return
		default:
		}
		st.attempts.Add(1)
		c, err := d.Dial("tcp4", addr)
		if err != nil {
			st.fail(err)
			continue
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Write(req)
		var got []byte
		for err == nil {
			var n int
			n, err = c.Read(buf)
			got = append(got, buf[:n]...)
		}
		if errors.Is(err, io.EOF) {
			switch {
			case bytes.HasPrefix(got, []byte("HTTP/1.1 200")):
				st.ok.Add(1)
			case len(got) == 0:
				st.eof.Add(1)
			default:
				st.non200.Add(1)
			}
		} else {
			st.fail(err)
		}
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
}

// TestMigrateHandovers counts the new connections reset over many
// handovers between SO_REUSEPORT listeners with tcp_migrate_req=1 (the
// kernel moves what is queued on a closing listener to another one of the
// group). Drain must not lose any.
func TestMigrateHandovers(t *testing.T) {
	if !inOwnNetns(t) {
		return
	}
	migrate := os.Getenv("REUSEPORT_MIGRATE_REQ")
	if migrate == "" {
		migrate = "1"
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/tcp_migrate_req", []byte(migrate), 0o644); err != nil {
		t.Skipf("net.ipv4.tcp_migrate_req (Linux >= 5.14): %v", err)
	}
	handovers := 300
	if v, err := strconv.Atoi(os.Getenv("REUSEPORT_MIGRATE_HANDOVERS")); err == nil {
		handovers = v
	}
	if testing.Short() {
		handovers = 50
	}
	modes := []string{"drain"}
	if v := os.Getenv("REUSEPORT_MIGRATE_MODES"); v != "" {
		modes = strings.Split(v, ",")
	}
	for _, mode := range modes {
		st, ctr, steered, dur := runMigrateHandovers(t, mode, handovers)
		t.Logf("mode %-5s tcp_migrate_req=%s: %d handovers (%d steered) in %v: %v", mode, migrate, handovers, steered, dur.Round(time.Millisecond), st)
		var b strings.Builder
		for _, k := range migrateCounters {
			fmt.Fprintf(&b, " %s=%d", strings.TrimPrefix(k, "TcpExt."), ctr[k])
		}
		t.Logf("mode %-5s counters:%s", mode, b.String())
		if mode == "drain" && st.failed() != 0 {
			t.Errorf("Drain lost new connections over %d handovers: %v", handovers, st)
		}
		if st.ok.Load() < int64(handovers)*20 {
			t.Errorf("too little load to mean anything: %v", st)
		}
	}
}

func runMigrateHandovers(t *testing.T, mode string, handovers int) (*loadStats, map[string]int64, int, time.Duration) {
	probe, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.Addr().String()
	probe.Close()

	before := netstat(t)
	var st loadStats
	stop := make(chan struct{})
	var wg sync.WaitGroup
	old := startMigrateGen(t, addr, mode) // before any client: no refused at the start
	begin := time.Now()
	for range 16 {
		wg.Go(func() { migrateClient(addr, &st, stop) })
	}
	var stopping sync.WaitGroup
	var stopErrs atomic.Int64
	steered := 0
	for range handovers {
		time.Sleep(10 * time.Millisecond)
		next := startMigrateGen(t, addr, mode)
		if ok, err := next.st.Attach(); err != nil { // ready
			t.Fatal(err)
		} else if ok {
			steered++
		}
		time.Sleep(2 * time.Millisecond) // the supervisor's SIGTERM
		g := old
		stopping.Go(func() {
			if g.stop() != nil {
				stopErrs.Add(1)
			}
		})
		old = next
	}
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
	dur := time.Since(begin)
	old.stop()
	stopping.Wait()
	if n := stopErrs.Load(); n > 0 {
		t.Errorf("%d stops failed", n)
	}
	after := netstat(t)
	ctr := map[string]int64{}
	for _, k := range migrateCounters {
		ctr[k] = after[k] - before[k]
	}
	return &st, ctr, steered, dur
}
