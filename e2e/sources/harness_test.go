package sources

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/e2e/kubetest"
	"github.com/hotswap-dev/hotswap/e2e/load"
	"github.com/hotswap-dev/hotswap/e2e/testbin"
	"github.com/hotswap-dev/hotswap/hotswap"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if kubeCluster != nil {
		kubeCluster.Stop()
	}
	testbin.Cleanup()
	os.Exit(code)
}

var (
	kubeOnce    sync.Once
	kubeCluster *kubetest.Cluster
	kubeErr     error
)

// cluster starts the package's one etcd + kube-apiserver on first use (only
// the ConfigMap test needs it); TestMain stops it. Missing binaries fail the
// test, saying to run hack/kube-assets.sh.
func cluster(t *testing.T) *kubetest.Cluster {
	t.Helper()
	kubeOnce.Do(func() { kubeCluster, kubeErr = kubetest.Start(kubetest.Options{}) })
	if kubeErr != nil {
		t.Fatal(kubeErr)
	}
	return kubeCluster
}

func hotswapBin(t testing.TB) string {
	t.Helper()
	p, err := testbin.Hotswap()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// logRec is one line of hotswap's JSON log.
type logRec struct {
	Time  time.Time `json:"time"`
	Level string    `json:"level"`
	Msg   string    `json:"msg"`
	Event string    `json:"event"`
	Err   string    `json:"err"`
	raw   string
}

// pod is the real hotswap binary running as a child of the test (a child
// subreaper, not PID 1: e2e/pid1 covers that), serving the built-in example
// server on a loopback port it owns.
type pod struct {
	t    *testing.T
	bin  string
	Addr string
	Sock string

	cmd    *exec.Cmd
	exited chan struct{}

	mu   sync.Mutex
	logs []logRec
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startPod runs `hotswap --listen http=tcp://ADDR FLAGS -- COMMAND...` and
// waits until a generation serves.
func startPod(t *testing.T, flags []string, command ...string) *pod {
	t.Helper()
	return startPodEnv(t, nil, flags, command...)
}

// startPodEnv is startPod with extra environment variables.
func startPodEnv(t *testing.T, env []string, flags []string, command ...string) *pod {
	t.Helper()
	p := &pod{t: t, bin: hotswapBin(t), Addr: freeAddr(t), exited: make(chan struct{})}
	run := t.TempDir()
	p.Sock = filepath.Join(run, "control.sock")
	args := append([]string{"--listen", "http=tcp://" + p.Addr, "--runtime-dir", run, "--log-format", "json",
		"--drain-timeout", "5s", "--grace", "5s"}, flags...)
	args = append(append(args, "--"), command...)
	p.cmd = exec.Command(p.bin, args...)
	p.cmd.Env = append(append(os.Environ(), "HOTSWAP_CONTROL_SOCKET="+p.Sock), env...)
	p.cmd.Stdout = os.Stdout
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.readLogs(stderr)
	t.Cleanup(p.stop)
	p.waitStatus(15*time.Second, "first generation serving", func(s hotswap.Status) bool { return s.Phase == hotswap.PhaseServing })
	return p
}

func (p *pod) readLogs(r io.Reader) {
	defer close(p.exited)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var rec logRec
		if json.Unmarshal([]byte(line), &rec) != nil {
			rec = logRec{Time: time.Now(), Msg: line}
		}
		rec.raw = line
		p.mu.Lock()
		p.logs = append(p.logs, rec)
		p.mu.Unlock()
		if testing.Verbose() {
			fmt.Fprintln(os.Stderr, "  hotswap:", line)
		}
	}
}

func (p *pod) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
	_ = p.cmd.Wait() // the test process has no reaper of its own: os/exec may wait
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

// status asks the running hotswap through its control socket, with the CLI.
func (p *pod) status() (hotswap.Status, error) {
	var s hotswap.Status
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, p.bin, "status", "-o", "json", "--control-socket", p.Sock).Output()
	if err != nil {
		return s, fmt.Errorf("hotswap status: %w", err)
	}
	return s, json.Unmarshal(out, &s)
}

func (p *pod) waitStatus(within time.Duration, what string, ok func(hotswap.Status) bool) hotswap.Status {
	p.t.Helper()
	deadline := time.Now().Add(within)
	var last hotswap.Status
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			p.t.Fatalf("hotswap exited while waiting for %s", what)
		default:
		}
		s, err := p.status()
		if err == nil && ok(s) {
			return s
		}
		last, lastErr = s, err
		time.Sleep(25 * time.Millisecond)
	}
	b, _ := json.MarshalIndent(last, "", "  ")
	p.t.Fatalf("not %s within %s (last error %v); last status:\n%s", what, within, lastErr, b)
	return last
}

// logAfter returns the first log record at or after index from whose event
// or message matches.
func (p *pod) logAfter(from int, match func(logRec) bool) (logRec, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := from; i < len(p.logs); i++ {
		if match(p.logs[i]) {
			return p.logs[i], true
		}
	}
	return logRec{}, false
}

func (p *pod) logLen() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.logs)
}

// waitLog waits for a log record after index from.
func (p *pod) waitLog(from int, within time.Duration, what string, match func(logRec) bool) logRec {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if r, ok := p.logAfter(from, match); ok {
			return r
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.t.Fatalf("no log line for %s within %s", what, within)
	return logRec{}
}

func eventIs(ev string) func(logRec) bool {
	return func(r logRec) bool { return r.Event == ev }
}

func msgHas(s string) func(logRec) bool {
	return func(r logRec) bool { return strings.Contains(r.raw, s) }
}

// startLoad runs the load generator against the pod until the test ends;
// the returned function stops it and fails the test on any failed request.
func startLoad(t *testing.T, addr string) (*load.Runner, func()) {
	t.Helper()
	r, err := load.Start(context.Background(), load.Config{
		Addr: addr, Duration: 10 * time.Minute, Timeout: 5 * time.Second,
		KeepAlive: 2, NewConn: 1, Think: 2 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r, func() {
		t.Helper()
		r.Stop()
		rep := r.Wait()
		t.Logf("load: %d attempts, %d ok, %d failed; versions seen: %d", rep.Attempts, rep.OK, rep.Failed(), len(rep.Versions))
		if err := rep.Err(); err != nil {
			t.Fatalf("requests failed under load: %v", err)
		}
		if rep.OK == 0 {
			t.Fatal("no request succeeded")
		}
	}
}

// release copies the hotswap binary to dir/name with mode, made unique by
// trailing bytes (ignored by the loader) so each copy is a new release.
func release(t *testing.T, dir, name, tag string, mode os.FileMode) (string, string) {
	t.Helper()
	b, err := os.ReadFile(hotswapBin(t))
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, []byte("\nhotswap-e2e-release "+tag+"\n")...)
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return p, hex.EncodeToString(sum[:])
}

// flip points link at target the way ln -sfn does.
func flip(t *testing.T, link, target string) time.Time {
	t.Helper()
	tmp := link + ".new"
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
	return at
}

// rejectedAfter waits for a LastRejected newer than prev whose reason has want.
func (p *pod) rejectedAfter(prev *hotswap.SwapResult, want string) hotswap.Status {
	p.t.Helper()
	var prevID uint64
	if prev != nil {
		prevID = prev.ID
	}
	s := p.waitStatus(15*time.Second, "release rejected with "+want, func(s hotswap.Status) bool {
		return s.LastRejected != nil && s.LastRejected.ID > prevID
	})
	if !strings.Contains(s.LastRejected.Reason, want) {
		p.t.Fatalf("rejected for %q, want %q", s.LastRejected.Reason, want)
	}
	return s
}
