package groupsteer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/e2e/netns"
)

// envNetns marks the re-executed test binary running in its own network
// namespace, where it may set net.ipv4.tcp_migrate_req.
const envNetns = "GROUPSTEER_TEST_NETNS"

// envListenAs makes the re-executed test binary a listener of another
// uid: it binds SO_REUSEPORT on the address given, says "ok" and waits
// for its stdin to close.
const envListenAs = "GROUPSTEER_TEST_LISTEN"

func TestMain(m *testing.M) {
	if addr := os.Getenv(envListenAs); addr != "" {
		g := listenGen(nil, "foreign", []string{addr}, 1)
		fmt.Println("ok")
		io.Copy(io.Discard, os.Stdin)
		g.stop()
		os.Exit(0)
	}
	if os.Getenv(envNetns) == "" && os.Geteuid() == 0 {
		if _, err := exec.LookPath("unshare"); err == nil {
			cmd := exec.Command("unshare", append([]string{"--net", "--", os.Args[0]}, os.Args[1:]...)...)
			cmd.Env = append(os.Environ(), envNetns+"=1")
			cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
			if err := cmd.Run(); err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					os.Exit(ee.ExitCode())
				}
				fmt.Fprintln(os.Stderr, "unshare:", err)
				os.Exit(1)
			}
			os.Exit(0)
		}
	}
	if os.Getenv(envNetns) != "" {
		if err := netns.LoopbackUp(); err != nil {
			fmt.Fprintln(os.Stderr, "loopback up:", err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

// inNetns skips unless the test runs in its own network namespace with
// net.ipv4.tcp_migrate_req=0, the pod default this package exists for.
func inNetns(t testing.TB) {
	t.Helper()
	if os.Getenv(envNetns) == "" {
		t.Skip("needs root and unshare(1): runs in its own network namespace")
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/tcp_migrate_req", []byte("0"), 0o644); err != nil {
		t.Fatalf("net.ipv4.tcp_migrate_req=0: %v", err)
	}
}

// generation is a stand-in for one server generation: n SO_REUSEPORT
// listeners on addr, each accepting and answering every connection with
// the generation's name.
type generation struct {
	name string
	lns  []net.Listener
	wg   sync.WaitGroup
}

// addrs are "tcp" addresses, or "tcp6 [::]:PORT" for an IPv6-only socket.
func listenGen(t testing.TB, name string, addrs []string, n int) *generation {
	if t != nil {
		t.Helper()
	}
	g := &generation{name: name}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, 15 /* SO_REUSEPORT */, 1) })
		return serr
	}}
	for i := range n * len(addrs) {
		network, addr := "tcp", addrs[i%len(addrs)]
		if a, ok := strings.CutPrefix(addr, "tcp6 "); ok {
			network, addr = "tcp6", a
		}
		ln, err := lc.Listen(context.Background(), network, addr)
		if err != nil {
			if t == nil {
				panic(err)
			}
			t.Fatalf("%s: listen %s: %v", name, addr, err)
		}
		g.lns = append(g.lns, ln)
	}
	for _, ln := range g.lns {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					c.SetDeadline(time.Now().Add(5 * time.Second))
					if _, err := bufio.NewReader(c).ReadString('\n'); err == nil {
						io.WriteString(c, g.name+"\n")
					}
				}()
			}
		}()
	}
	return g
}

// stop closes the generation's listeners, as a server does on its stop
// signal: what is queued on them is reset unless the kernel migrates it.
func (g *generation) stop() {
	for _, ln := range g.lns {
		ln.Close()
	}
	g.wg.Wait()
}

// loadStats counts new-connection requests and how they ended.
type loadStats struct {
	ok, failed, delayed atomic.Int64
	mu                  sync.Mutex
	errs                map[string]int
	byGen               map[string]int
}

// runLoad dials new connections to addr from c clients until ctx ends,
// one request each, never retrying.
func runLoad(ctx context.Context, addrs []string, c int) (*loadStats, func()) {
	st := &loadStats{errs: map[string]int{}, byGen: map[string]int{}}
	var wg sync.WaitGroup
	for i := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := dialAddr(addrs[i%len(addrs)])
			for ctx.Err() == nil {
				start := time.Now()
				gen, err := ask(addr)
				st.mu.Lock()
				if err != nil {
					st.failed.Add(1)
					st.errs[reAddr.ReplaceAllString(err.Error(), "ADDR")]++
				} else {
					st.ok.Add(1)
					st.byGen[gen]++
					if time.Since(start) > 500*time.Millisecond {
						st.delayed.Add(1) // a dropped SYN, retransmitted
					}
				}
				st.mu.Unlock()
			}
		}()
	}
	return st, wg.Wait
}

var reAddr = regexp.MustCompile(`127\.0\.0\.1:\d+`)

func ask(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "hi\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

// dialAddr is where to connect to a listening address: the loopback
// address of a wildcard's family.
func dialAddr(a string) string {
	a = strings.TrimPrefix(a, "tcp6 ")
	a = strings.Replace(a, "[::]", "[::1]", 1)
	return strings.Replace(a, "0.0.0.0", "127.0.0.1", 1)
}

func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// swapLoop runs swaps generations of sizes[i%len(sizes)] listeners each
// under new-connection load, steering with s when s is not nil, and
// returns the load's counts.
func swapLoop(t *testing.T, s *Steerer, swaps int, sizes []int, addrs ...string) *loadStats {
	if len(addrs) == 0 {
		addrs = []string{freeAddr(t)}
	}
	cur := listenGen(t, "gen0", addrs, sizes[0])
	if s != nil {
		s.Mark(true) // the first generation is ready: adopt its group
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, wait := runLoad(ctx, addrs, 8)
	for i := 1; i <= swaps; i++ {
		time.Sleep(20 * time.Millisecond)
		var m Mark
		if s != nil {
			m = s.Mark(true)
			// After the old generation left: its fillers took its
			// places, and the last cutover closed the ones before.
			if n := s.size(); n > 2*maxInt(sizes)+1 {
				t.Fatalf("swap %d: the group holds %d members: fillers pile up", i, n)
			}
		}
		next := listenGen(t, fmt.Sprintf("gen%d", i), addrs, sizes[i%len(sizes)])
		if s != nil {
			w := s.Cutover(m)
			if !w.Steered() {
				t.Fatalf("swap %d: nothing steered", i)
			}
			if err := w.Wait(context.Background(), 3*time.Second); err != nil {
				t.Errorf("swap %d: %v", i, err)
			}
			// Every connection made now must reach the new generation.
			for j := range 20 {
				if gen, err := ask(dialAddr(addrs[j%len(addrs)])); err != nil || gen != next.name {
					t.Fatalf("swap %d: a new connection after the cutover reached %q (err %v), want %s", i, gen, err, next.name)
				}
			}
		}
		cur.stop()
		cur = next
	}
	time.Sleep(20 * time.Millisecond)
	cancel()
	wait()
	cur.stop()
	return st
}

func maxInt(xs []int) int {
	m := 0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

// size is the number of members of the one steered group, as the model
// has it, checked against the kernel's count.
func (s *Steerer) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.groups {
		return len(g.slots)
	}
	return 0
}

// TestCutoverWithoutResets is the package's claim against the real
// kernel: with tcp_migrate_req=0, generations of several listeners each
// swapped under a load of new connections, closing the old listeners only
// after the cutover's wait, fail no connection; and every connection made
// after a cutover reaches the new generation (the program's indices are
// right), whatever the number of listeners per generation.
func TestCutoverWithoutResets(t *testing.T) {
	inNetns(t)
	s := New(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	defer s.Close()
	st := swapLoop(t, s, 40, []int{1, 3, 2, 4, 4, 1})
	t.Logf("steered: %d ok, %d failed, %d delayed >500ms, by generation %d entries; errors %v", st.ok.Load(), st.failed.Load(), st.delayed.Load(), len(st.byGen), st.errs)
	if st.failed.Load() > 0 {
		t.Errorf("%d of %d new connections failed with steering: %v", st.failed.Load(), st.failed.Load()+st.ok.Load(), st.errs)
	}
	if st.ok.Load() == 0 {
		t.Fatal("no request succeeded: the load did not run")
	}
}

// TestCutoverSeveralGroups: a generation listening on several groups at
// once — IPv4, IPv6-only and a dual-stack wildcard on one port, as nginx
// with `listen 8080 reuseport; listen [::]:8080 reuseport` — is steered in
// each (the group key includes IPV6_V6ONLY, read through sock_diag).
func TestCutoverSeveralGroups(t *testing.T) {
	inNetns(t)
	s := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer s.Close()
	_, port, _ := strings.Cut(freeAddr(t), ":")
	st := swapLoop(t, s, 12, []int{2, 1, 3}, "127.0.0.1:"+port, "tcp6 [::]:"+port)
	if n := len(s.groups); n != 2 {
		t.Errorf("%d groups steered, want 2", n)
	}
	_, port2, _ := strings.Cut(freeAddr(t), ":")
	st2 := swapLoop(t, s, 12, []int{2, 1, 3}, "[::]:"+port2) // a dual-stack wildcard (IPV6_V6ONLY=0)
	for _, x := range []*loadStats{st, st2} {
		if x.failed.Load() > 0 || x.ok.Load() == 0 {
			t.Errorf("%d ok, %d failed: %v", x.ok.Load(), x.failed.Load(), x.errs)
		}
	}
}

// TestWithoutSteeringResets shows the test can fail: the same swaps
// without a Steerer reset connections queued on the closing listeners.
// Resets are a race, so it only logs when none happened.
func TestWithoutSteeringResets(t *testing.T) {
	inNetns(t)
	st := swapLoop(t, nil, 40, []int{1, 3, 2, 4, 4, 1})
	t.Logf("unsteered: %d ok, %d failed; errors %v", st.ok.Load(), st.failed.Load(), st.errs)
}

// TestOtherUIDFallsBack: a group whose sockets belong to another uid cannot
// be joined (the kernel refuses, and hotswap would steer nothing): Mark
// adopts nothing and says why, once; a cutover steers nothing.
func TestOtherUIDFallsBack(t *testing.T) {
	inNetns(t)
	addr := freeAddr(t)
	// A copy of the test binary uid 65534 can execute (go test's is in a
	// directory only root may enter).
	dir, err := os.MkdirTemp("", "groupsteer")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin := dir + "/listen"
	self, err := os.ReadFile(os.Args[0])
	if err == nil {
		err = os.WriteFile(bin, self, 0o755)
	}
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), envListenAs+"="+addr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ok\n" {
		t.Fatalf("listener as uid 65534: %q, %v", line, err)
	}
	var logs strings.Builder
	s := New(slog.New(slog.NewTextHandler(&logs, nil)))
	defer s.Close()
	m := s.Mark(true)
	s.Mark(true)
	if len(s.groups) != 0 {
		t.Fatalf("adopted a group of another uid: %d groups", len(s.groups))
	}
	if w := s.Cutover(m); w.Steered() {
		t.Fatal("a cutover steered a group of another uid")
	}
	if n := strings.Count(logs.String(), "uid 65534"); n != 1 {
		t.Fatalf("the uid reason was said %d times, want once:\n%s", n, logs.String())
	}
	if _, err := ask(addr); err != nil {
		t.Fatalf("the other uid's listener no longer answers: %v", err)
	}
}

// TestRestartAfterCrash: the serving generation dies without a cutover
// (its sockets leave in an order the model cannot follow) and a restart
// binds new ones. The next Mark gives the group up and takes it over again
// from what the kernel shows; the following swap is steered.
func TestRestartAfterCrash(t *testing.T) {
	inNetns(t)
	var logs strings.Builder
	s := New(slog.New(slog.NewTextHandler(&logs, nil)))
	defer s.Close()
	addrs := []string{freeAddr(t)}
	gen0 := listenGen(t, "gen0", addrs, 2)
	s.Mark(true)
	m := s.Mark(true)
	gen1 := listenGen(t, "gen1", addrs, 3)
	if err := s.Cutover(m).Wait(context.Background(), time.Second); err != nil {
		t.Fatal(err)
	}
	gen0.stop()
	gen1.stop() // crash
	gen2 := listenGen(t, "gen2", addrs, 2)
	defer gen2.stop()
	s.Mark(true) // the restart is ready
	if n := s.size(); n != 3 {
		t.Fatalf("after the restart the model holds %d members, want 3 (2 sockets and a filler)\n%s", n, logs.String())
	}
	for range 20 {
		if gen, err := ask(dialAddr(addrs[0])); err != nil || gen != "gen2" {
			t.Fatalf("after the restart: %q, %v", gen, err)
		}
	}
	m = s.Mark(true)
	gen3 := listenGen(t, "gen3", addrs, 1)
	defer gen3.stop()
	if w := s.Cutover(m); !w.Steered() {
		t.Fatalf("the swap after the restart was not steered\n%s", logs.String())
	}
	for range 20 {
		if gen, err := ask(dialAddr(addrs[0])); err != nil || gen != "gen3" {
			t.Fatalf("after the cutover: %q, %v", gen, err)
		}
	}
}
