package drain

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hotswap-dev/hotswap/reuseport/handoff"
)

// BenchmarkHandoffIdle: N idle keep-alive connections on the old
// generation, all handed to the new one in one swap (the old one drains
// with a grace long enough that only handovers can end it). Both
// generations are in this process, on descriptors of one listening socket,
// as under hotswap; the descriptors cross a real unix socket with
// SCM_RIGHTS. The old generation is this process; the new one and the
// clients are processes of their own (this one's descriptor limit, 20,000
// without CAP_SYS_RESOURCE, does not fit two ends of 10,000 connections). Reported: the time from the drain's start to the last
// handover, i.e. to the end of its drain (ms-handoff), and the CPU time both generations spent meanwhile
// (ms-cpu the old generation's, ms-cpu-new the new one's: on a busy machine
// the wall time is mostly waiting for a CPU), connections handed
// (handed) and per message (conns/msg), and after the swap,
// every client sends one more request on its same TCP connection: answered
// by the new generation (moved), failed, and kept by the old one (kept:
// answered by the old generation with Connection: close, so the client
// reconnects). heap-MB is the Go heap in use with the N connections open on
// both sides. N is 100, 1,000 and 10,000 (-short: up to 1,000).
//
//	go test -run '^$' -bench BenchmarkHandoffIdle -benchtime 1x ./reuseport/drain
func BenchmarkHandoffIdle(b *testing.B) {
	raiseNoFile(b, 12000) // the server side of 10,000: the old closes each as the new takes it
	sizes := []int{100, 1000, 10000}
	if testing.Short() {
		sizes = sizes[:2]
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
			for b.Loop() {
				benchHandoffIdle(b, n)
			}
		})
	}
}

func benchHandoffIdle(b *testing.B, n int) {
	ln := listenTCP(b)
	old := newHgen(b, "old", dupListener(b, ln), nil)
	cl := startClients(b, ln.Addr().String(), n)
	if line := cl.next(b); line != "ready" {
		b.Fatalf("clients: %s", line)
	}
	nu, nuProc := startNewGenProc(b, ln)
	if err := handoff.SetTarget(context.Background(), old.hub.Path(), nu); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)

	stopProf := profileDrain(b, nuProc)
	cpu0, cpuNew0 := cpuTime(b), procCPU(nuProc.proc.Pid)
	start := time.Now()
	done := old.drainAsync(time.Minute)
	// The drain ends when the old generation has no connection left: all
	// handed over (or, kept, answered with Connection: close — none is
	// idle here, so none should be).
	select {
	case err := <-done:
		if err != nil {
			b.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		b.Fatalf("the old generation never finished draining (%+v)", old.hub.Stats())
	}
	took := time.Since(start)
	cpu, cpuNew := cpuTime(b)-cpu0, procCPU(nuProc.proc.Pid)-cpuNew0
	stopProf()
	handed, msgs := old.hub.Stats().Sent, old.hub.Stats().Messages

	cl.send(b, "go")
	var moved, kept, failed int
	if _, err := fmt.Sscanf(cl.next(b), "moved %d kept %d failed %d", &moved, &kept, &failed); err != nil {
		b.Fatalf("clients: %v", err)
	}
	b.ReportMetric(float64(took.Microseconds())/1000, "ms-handoff")
	b.ReportMetric(float64(cpu.Microseconds())/1000, "ms-cpu")
	b.ReportMetric(float64(cpuNew.Microseconds())/1000, "ms-cpu-new")
	b.ReportMetric(float64(handed), "handed")
	if msgs > 0 {
		b.ReportMetric(float64(handed)/float64(msgs), "conns/msg")
	}
	b.ReportMetric(float64(moved), "moved")
	b.ReportMetric(float64(kept), "kept")
	b.ReportMetric(float64(failed), "failed")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MB")
	if failed > 0 {
		b.Errorf("%d of %d requests after the swap failed (handed %d in %v; old hub %+v)", failed, n, handed, took, old.hub.Stats())
	}
}

// genEnv makes the test binary the benchmark's new generation: it serves
// the listening socket on fd 3 with X-Gen: new and a handoff hub at the
// path in the variable, says "ready" on stdout, and exits when stdin closes.
// Another process, as under hotswap, each with its own descriptor limit.
const genEnv = "HOTSWAP_DRAIN_BENCH_GEN"

func runNewGen(hubPath string) int {
	f := os.NewFile(3, "listener")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		fmt.Println("listener:", err)
		return 1
	}
	hub, err := handoff.Open(hubPath)
	if err != nil {
		fmt.Println("hub:", err)
		return 1
	}
	srv := &http.Server{IdleTimeout: time.Minute, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Gen", "new")
		io.WriteString(w, "new")
	})}
	Serve(srv, ln, hub)
	fmt.Println("ready")
	// "profile FILE" starts a CPU profile of this generation, "stop" ends
	// it (profileDrain); EOF ends the process.
	in := bufio.NewScanner(os.Stdin)
	var prof *os.File
	for in.Scan() {
		if f, ok := strings.CutPrefix(in.Text(), "profile "); ok && prof == nil {
			if prof, err = os.Create(f); err == nil {
				runtime.SetCPUProfileRate(profileHz)
				err = pprof.StartCPUProfile(prof)
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "profile:", err)
			}
		} else if in.Text() == "stop" && prof != nil {
			pprof.StopCPUProfile()
			prof.Close()
			prof = nil
		}
	}
	return 0
}

// profileEnv names a path prefix: BenchmarkHandoffIdle then writes CPU
// profiles of the drain window only, PREFIX-old.prof (this process) and
// PREFIX-new.prof (the new generation), for go tool pprof.
const profileEnv = "HOTSWAP_DRAIN_BENCH_CPUPROFILE"

// profileHz: a drain lasts about a second, short for pprof's 100 Hz; the
// kernel checks CPU-time timers once a tick (CONFIG_HZ=250 here), so a
// higher rate loses samples rather than gaining them.
// (StartCPUProfile then warns that the rate was already set.)
const profileHz = 250

// profileDrain starts both generations' CPU profiles if profileEnv is set
// and returns what stops them.
func profileDrain(b testing.TB, nu *selfProc) func() {
	prefix := os.Getenv(profileEnv)
	if prefix == "" {
		return func() {}
	}
	f, err := os.Create(prefix + "-old.prof")
	if err != nil {
		b.Fatal(err)
	}
	runtime.SetCPUProfileRate(profileHz)
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	nu.send(b, "profile "+prefix+"-new.prof")
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		nu.send(b, "stop")
	}
}

// startNewGenProc starts the new generation on ln and returns its hub's
// path and its process.
func startNewGenProc(b testing.TB, ln net.Listener) (string, *selfProc) {
	lf, err := ln.(*net.TCPListener).File()
	if err != nil {
		b.Fatal(err)
	}
	defer lf.Close()
	path := filepath.Join(b.TempDir(), "new.sock")
	var p *selfProc
	if bin := os.Getenv(newGenBinEnv); bin != "" {
		p = startBinary(b, bin, genEnv+"="+path, lf)
	} else {
		p = startSelf(b, genEnv+"="+path, lf)
	}
	if line := p.next(b); line != "ready" {
		b.Fatalf("new generation: %s", line)
	}
	return path, p
}

// clientsEnv makes the test binary the benchmark's client process:
// "ADDR N": N keep-alive connections, one request each, then "ready" on
// stdout; on "go" from stdin one more request on each connection, then
// "moved M kept K failed F" (kept: answered by the old generation).
const clientsEnv = "HOTSWAP_DRAIN_BENCH_CLIENTS"

func TestMain(m *testing.M) {
	if v := os.Getenv(clientsEnv); v != "" {
		os.Exit(runClients(v))
	}
	if v := os.Getenv(genEnv); v != "" {
		os.Exit(runNewGen(v))
	}
	os.Exit(m.Run())
}

func runClients(spec string) int {
	var addr string
	var n int
	if _, err := fmt.Sscan(spec, &addr, &n); err != nil {
		fmt.Println("bad spec:", err)
		return 2
	}
	clients := make([]*rawClient, n)
	for i := range clients {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fmt.Println("dial:", err)
			return 1
		}
		clients[i] = &rawClient{c: c, br: bufio.NewReader(c)}
	}
	var failed atomic.Int64
	forEach(clients, 64, func(c *rawClient) {
		c.send("/")
		if resp, err := readResponse(c); err != nil || resp.Header.Get("X-Gen") != "old" || resp.Close {
			failed.Add(1)
		}
	})
	if f := failed.Load(); f > 0 {
		fmt.Printf("%d first requests failed\n", f)
		return 1
	}
	fmt.Println("ready")
	if line, _ := bufio.NewReader(os.Stdin).ReadString('\n'); line != "go\n" {
		return 2
	}
	var moved, kept atomic.Int64
	forEach(clients, 64, func(c *rawClient) {
		c.send("/")
		resp, err := readResponse(c)
		switch {
		case err != nil:
			failed.Add(1)
		case resp.Header.Get("X-Gen") == "new":
			moved.Add(1)
		default:
			kept.Add(1)
		}
	})
	fmt.Printf("moved %d kept %d failed %d\n", moved.Load(), kept.Load(), failed.Load())
	return 0
}

// selfProc is this test binary run again in one of its roles (genEnv,
// clientsEnv), spoken to a line at a time on its stdin and stdout.
type selfProc struct {
	in   io.WriteCloser
	out  *bufio.Scanner
	proc *os.Process
}

// startSelf runs this test binary with the variable kv set and files from
// fd 3 on; it is waited for at the test's end, after its stdin is closed.
func startSelf(b testing.TB, kv string, files ...*os.File) *selfProc {
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	return startBinary(b, self, kv, files...)
}

// newGenBinEnv names another build of this test binary (say, of an older
// commit) to run as the new generation: a handoff between two versions of
// the protocol, e.g. a sender that batches and a receiver from before
// batches.
const newGenBinEnv = "HOTSWAP_DRAIN_BENCH_NEWGEN_BIN"

// startBinary is startSelf for the test binary bin.
func startBinary(b testing.TB, bin, kv string, files ...*os.File) *selfProc {
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), kv)
	cmd.ExtraFiles = files
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { in.Close(); _ = cmd.Wait() })
	return &selfProc{in: in, out: bufio.NewScanner(out), proc: cmd.Process}
}

func startClients(b testing.TB, addr string, n int) *selfProc {
	return startSelf(b, fmt.Sprintf("%s=%s %d", clientsEnv, addr, n))
}

func (p *selfProc) next(b testing.TB) string {
	if !p.out.Scan() {
		b.Fatalf("no answer: %v", p.out.Err())
	}
	return p.out.Text()
}

func (p *selfProc) send(b testing.TB, line string) {
	if _, err := io.WriteString(p.in, line+"\n"); err != nil {
		b.Fatal(err)
	}
}

// forEach runs f on every client, at most par at a time.
func forEach(clients []*rawClient, par int, f func(*rawClient)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, par)
	for _, c := range clients {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f(c)
		}()
	}
	wg.Wait()
}

// cpuTime is the CPU time (user + system) this process used so far: the
// old generation's share of a handoff, which, unlike its wall time, does not
// grow with what else the machine runs.
func cpuTime(b testing.TB) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the CPU time (user + system) process pid used so far, from
// /proc (10 ms resolution); 0 if it cannot be read.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ 100
}

// raiseNoFile lifts RLIMIT_NOFILE to at least n (the benchmarks run as
// root, which may raise the hard limit too).
func raiseNoFile(b testing.TB, n uint64) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	lim.Cur = n
	lim.Max = max(lim.Max, n)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		b.Skipf("need %d descriptors: %v", n, err)
	}
}

// readResponse is rawClient.read returning its error.
func readResponse(rc *rawClient) (*http.Response, error) {
	_ = rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, nil
}

// TestHandoffReceiverCrashKeepsTheRest: the new generation is killed
// (SIGKILL) halfway through a handoff of 2,000 idle keep-alive connections.
// The ones it had taken die with it, as any process's connections do; every
// other one stays with the old generation, which answers its next request
// (with Connection: close). None is dropped in between. Connections go
// in batches, several lanes at a time, so the kill lands with batches
// sent and unanswered: those stay whole with the old generation.
func TestHandoffReceiverCrashKeepsTheRest(t *testing.T) {
	n := 2000
	if testing.Short() {
		n = 400
	}
	ln := listenTCP(t)
	old := newHgen(t, "old", dupListener(t, ln), nil)
	cl := startClients(t, ln.Addr().String(), n)
	if line := cl.next(t); line != "ready" {
		t.Fatalf("clients: %s", line)
	}
	path, proc := startNewGenProc(t, ln)
	if err := handoff.SetTarget(context.Background(), old.hub.Path(), path); err != nil {
		t.Fatal(err)
	}
	done := old.drainAsync(time.Minute)
	for old.hub.Stats().Sent < int64(n/2) {
		time.Sleep(100 * time.Microsecond)
	}
	if err := proc.proc.Kill(); err != nil {
		t.Fatal(err)
	}
	// The old one serves the rest with Connection: close; the clients'
	// next requests end the drain.
	cl.send(t, "go")
	var moved, kept, failed int
	if _, err := fmt.Sscanf(cl.next(t), "moved %d kept %d failed %d", &moved, &kept, &failed); err != nil {
		t.Fatalf("clients: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the old generation never finished draining")
	}
	st := old.hub.Stats()
	t.Logf("%d connections: %d handed before the crash (%+v); then moved %d, kept %d, failed %d", n, st.Sent, st, moved, kept, failed)
	if st.Messages >= st.Sent {
		t.Errorf("%d connections in %d messages: no batch, so no crash mid-batch either", st.Sent, st.Messages)
	}
	if moved != 0 {
		t.Errorf("%d answered by the dead generation", moved)
	}
	if int64(failed) != st.Sent {
		t.Errorf("%d requests failed, want exactly the %d connections the dead generation had taken", failed, st.Sent)
	}
	if kept != n-int(st.Sent) {
		t.Errorf("%d answered by the old generation, want %d (every connection it still had)", kept, n-int(st.Sent))
	}
}
