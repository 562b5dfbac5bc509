package pid1

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hotswap-dev/hotswap/e2e/load"
	"github.com/hotswap-dev/hotswap/e2e/testbin"
)

func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// BenchmarkStartToExec: the time from starting a process to the moment the
// child helper's main runs, directly and through hotswap (so the difference
// is what hotswap adds: its own start, configuration, runtime directory,
// control socket, fork and exec). The child writes CLOCK_MONOTONIC as its
// first act. Reported: the median and p90 over b.N runs, in ms.
//
// mininit-pid1 is the floor under any Go entrypoint: a 1.5 MB Go PID 1 that
// only forks, execs and waits (testdata/mininit), started the same way as
// hotswap-pid1. What hotswap-pid1 adds over it is hotswap's own: the
// runtime start of a bigger binary, package initializers, configuration,
// runtime directory, control socket.
//
//	go test -run '^$' -bench BenchmarkStartToExec -benchtime 50x ./e2e/pid1
func BenchmarkStartToExec(b *testing.B) {
	mininit := filepath.Join(tempDir(b), "mininit")
	if err := testbin.Static(mininit, "./e2e/pid1/testdata/mininit"); err != nil {
		b.Fatal(err)
	}
	for _, via := range []string{"direct", "mininit-pid1", "hotswap", "hotswap-pid1"} {
		b.Run(via, func(b *testing.B) {
			dir := tempDir(b)
			var ms []float64
			for i := 0; b.Loop(); i++ {
				stamp := filepath.Join(dir, "stamp"+strconv.Itoa(i))
				child := []string{helperBin, helperArg, "stamp", stamp}
				var cmd *exec.Cmd
				switch via {
				case "direct":
					cmd = exec.Command(child[0], child[1:]...)
				case "mininit-pid1":
					self, _ := os.Readlink("/proc/self/ns/mnt")
					cmd = exec.Command(helperBin, append([]string{helperArg, "nsexec", "parent-mntns=" + self, "--", mininit}, child...)...)
					cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS}
				case "hotswap":
					cmd = exec.Command(hotswapBin, append([]string{"--runtime-dir", filepath.Join(dir, "run"), "--log-level", "warn", "--"}, child...)...)
				case "hotswap-pid1":
					// The namespace exists before hotswap starts: measured
					// from nsexec's exec of hotswap, as PID 1 of a pod.
					self, _ := os.Readlink("/proc/self/ns/mnt")
					cmd = exec.Command(helperBin, append([]string{helperArg, "nsexec", "parent-mntns=" + self, "--", hotswapBin,
						"--runtime-dir", filepath.Join(dir, "run"), "--log-level", "warn", "--"}, child...)...)
					cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS}
				}
				cmd.Stderr = os.Stderr
				t0 := monoNow()
				pid1 := strings.HasSuffix(via, "-pid1")
				if pid1 {
					// t0 is taken by nsexec right before its exec: see below.
					cmd.Env = append(os.Environ(), "PID1_T0_FILE="+stamp+".t0")
				}
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				select {
				case err := <-done:
					if err != nil {
						b.Fatalf("%s: %v", via, err)
					}
				case <-time.After(30 * time.Second):
					_ = cmd.Process.Kill()
					b.Fatal("child did not finish in 30s")
				}
				if pid1 {
					s, err := os.ReadFile(stamp + ".t0")
					if err != nil {
						b.Fatal(err)
					}
					t0, _ = strconv.ParseInt(string(s), 10, 64)
				}
				s, err := os.ReadFile(stamp)
				if err != nil {
					b.Fatal(err)
				}
				t1, _ := strconv.ParseInt(string(s), 10, 64)
				ms = append(ms, float64(t1-t0)/1e6)
			}
			slices.Sort(ms)
			b.ReportMetric(ms[len(ms)/2], "ms-median")
			b.ReportMetric(ms[len(ms)*9/10], "ms-p90")
		})
	}
}

// BenchmarkThroughput: requests per second of the built-in example server
// run directly and behind hotswap (which holds the listening socket and
// passes it on, then stays off the request path), driven by e2e/load with
// keep-alive clients on loopback. Both servers run at once and the load
// alternates between them in rounds of 5,000 requests, so a noisy machine
// drifts both the same way; b.N requests go to each. Reported: req/s of
// each and the ratio hotswap/direct.
//
//	go test -run '^$' -bench BenchmarkThroughput -benchtime 100000x -count 3 ./e2e/pid1
func BenchmarkThroughput(b *testing.B) {
	direct, behind := freeAddr(b), freeAddr(b)
	dir := tempDir(b)
	startServer(b, hotswapBin, "serve", "--addr", direct, "--log-level", "warn")
	startServer(b, hotswapBin, "--runtime-dir", filepath.Join(dir, "run"), "--log-level", "warn",
		"--listen", "http=tcp://"+behind, "--", hotswapBin, "serve", "--log-level", "warn")
	waitHTTP(b, direct, 20*time.Second)
	waitHTTP(b, behind, 20*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	const round = 5000
	var spent [2]time.Duration
	b.ResetTimer()
	for left := b.N; left > 0; left -= round {
		n := min(round, left)
		for i, addr := range []string{direct, behind} {
			start := time.Now()
			rep, err := load.Run(ctx, load.Config{Addr: addr, KeepAlive: 4, Requests: int64(n), Duration: 10 * time.Minute})
			spent[i] += time.Since(start)
			if err != nil {
				b.Fatal(err)
			}
			if rep.Failed() > 0 {
				b.Fatalf("%s: %d requests failed: %v", addr, rep.Failed(), rep.Err())
			}
		}
	}
	b.StopTimer()
	d, h := float64(b.N)/spent[0].Seconds(), float64(b.N)/spent[1].Seconds()
	b.ReportMetric(d, "req/s-direct")
	b.ReportMetric(h, "req/s-hotswap")
	b.ReportMetric(h/d, "ratio")
}

// startServer starts a server process that lives until the benchmark ends.
func startServer(b *testing.B, path string, args ...string) {
	cmd := exec.Command(path, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		// A server behind hotswap is in a group of its own: find it before
		// its parent dies and it is reparented away.
		for _, pid := range descendants(cmd.Process.Pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitHTTP waits until addr answers an HTTP request with 200.
func waitHTTP(t testing.TB, addr string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			buf := make([]byte, 64)
			n, _ := c.Read(buf)
			c.Close()
			if strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s does not answer HTTP after %s", addr, d)
}

// BenchmarkIdle: hotswap's resident memory 2s after start and once idle
// (12s: after internal/startuppages released start-up's pages), as PID 1 of a
// namespace supervising a sleeping child and as PID 1 holding a listener for
// the example server (ready by sd_notify); and the size of the stripped
// static binary the tests run (built like the image's: CGO_ENABLED=0,
// -trimpath -ldflags "-s -w").
//
//	go test -run '^$' -bench BenchmarkIdle -benchtime 1x ./e2e/pid1
func BenchmarkIdle(b *testing.B) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"sleep", []string{"--", "/bin/sleep", "600"}},
		{"listen+server", []string{"--listen", "http=tcp://" + freeAddr(b), "--", hotswapBin, "serve", "--log-level", "warn"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				r := startHotswap(b, opts{mode: asPID1}, append([]string{"--log-level", "warn"}, tc.args...)...)
				time.Sleep(2 * time.Second) // settle: start-up garbage collected, goroutines parked
				if !r.running() {
					b.Fatalf("hotswap exited:\n%s", r.out)
				}
				rss, hwm := vmRSS(r.pid)
				b.ReportMetric(float64(rss)/1024, "MB-VmRSS-2s")
				// internal/startuppages gives back the binary's start-up
				// pages 10s after start: idle is after that.
				time.Sleep(10 * time.Second)
				idle, _ := vmRSS(r.pid)
				b.ReportMetric(float64(idle)/1024, "MB-VmRSS-12s")
				b.ReportMetric(float64(hwm)/1024, "MB-VmHWM")
				r.kill()
			}
		})
	}
	fi, err := os.Stat(hotswapBin)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("binary", func(b *testing.B) {
		for b.Loop() {
		}
		b.ReportMetric(float64(fi.Size())/(1<<20), "MB-stripped-static")
	})
}

// vmRSS reads VmRSS and VmHWM (kB) of pid.
func vmRSS(pid int) (rss, hwm int) {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rss, _ = strconv.Atoi(f[1])
		case "VmHWM:":
			hwm, _ = strconv.Atoi(f[1])
		}
	}
	return rss, hwm
}
