package swaptest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/e2e/load"
	"github.com/hotswap-dev/hotswap/e2e/testbin"
	"github.com/hotswap-dev/hotswap/hotswap"
)

// Main runs a package's tests; call it from TestMain. The outer process
// removes the hotswap binary it built once every test has run.
func Main(m *testing.M) {
	code := m.Run()
	if os.Getenv(envInner) == "" {
		testbin.Cleanup()
	}
	os.Exit(code)
}

// Bin is the static hotswap binary: built once by the outer process
// and handed to the inner one.
func Bin(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(envBin); p != "" {
		return p
	}
	p, err := testbin.Hotswap()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// PodConfig describes one hotswap run.
type PodConfig struct {
	// Mode is handoff (default: hotswap binds --listen) or reuseport (the
	// server binds its own SO_REUSEPORT socket).
	Mode hotswap.Mode
	// Flags are extra hotswap flags (--start-timeout 1s, ...).
	Flags []string
	// Serve are the initial flags of `hotswap serve` (the wrapper script
	// reads them at each start; see SetServeFlags). Unused with Command.
	Serve []string
	// Prelude is shell the wrapper script runs before it execs the server,
	// for a test whose generation must leave something behind. It runs in
	// the pod's directory; empty for the tests that count processes.
	// Unused with Command.
	Prelude string
	// Command, when set, is the server hotswap runs instead of the example
	// server's wrapper script (a real server with its own configuration).
	Command []string
	// Dir and Addr, when set, are the pod's directory (holding the
	// server's configuration) and its serving address, chosen before the
	// server's configuration is written (see NewDir and FreeAddr).
	Dir, Addr string
}

// Pod is hotswap running as PID 1 of its own PID namespace, in the test's
// network namespace, serving the example server through DIR/run.sh.
type Pod struct {
	t    testing.TB
	Bin  string
	Dir  string
	Addr string // 127.0.0.1:PORT
	Sock string // control socket

	cmd    *exec.Cmd
	exited chan struct{}
	state  *os.ProcessState

	logMu sync.Mutex
	raw   bytes.Buffer // everything PID 1 and the children wrote
	recs  []LogRec     // hotswap's own JSON log lines
	logCh chan struct{}
}

// LogRec is one JSON log line of hotswap.
type LogRec struct {
	Time  time.Time
	Msg   string
	Attrs map[string]any
}

func (r LogRec) Int(k string) int {
	switch v := r.Attrs[k].(type) {
	case float64:
		return int(v)
	case string:
		n, _ := strconv.Atoi(v)
		return n
	}
	return 0
}

// FreePort picks a loopback port that is free now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// FreeAddr is 127.0.0.1:PORT with a port that is free now.
func FreeAddr(t testing.TB) string { return fmt.Sprintf("127.0.0.1:%d", FreePort(t)) }

// NewDir makes a temporary directory for a pod, traversable by others so
// that a test as nobody (or a server that drops privileges) reaches it.
func NewDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// StartPod starts hotswap as PID 1 and waits until its first generation serves.
func StartPod(t testing.TB, pc PodConfig) *Pod {
	t.Helper()
	bin := Bin(t)
	dir := pc.Dir
	if dir == "" {
		dir = NewDir(t)
	}
	p := &Pod{t: t, Bin: bin, Dir: dir, Addr: pc.Addr, Sock: filepath.Join(dir, "run", "control.sock"), exited: make(chan struct{}), logCh: make(chan struct{}, 1)}
	if p.Addr == "" {
		p.Addr = FreeAddr(t)
	}
	if err := os.MkdirAll(filepath.Join(dir, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	command := pc.Command
	if len(command) == 0 {
		serveAddr := []string{}
		if pc.Mode == hotswap.ModeReuseport {
			serveAddr = []string{"--addr", p.Addr}
		}
		script := fmt.Sprintf("#!/bin/sh\n# Written by e2e/swaptest: the flags of each new generation come from %[1]s/flags.\n# No command substitution: it would fork, and the tests count processes.\n%[4]s\nread -r flags < %[1]s/flags\nexec %[2]s serve %[3]s $flags\n",
			dir, bin, strings.Join(serveAddr, " "), pc.Prelude)
		if err := os.WriteFile(filepath.Join(dir, "run.sh"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		p.SetServeFlags(pc.Serve...)
		command = []string{filepath.Join(dir, "run.sh")}
	}

	args := []string{"--log-format", "json", "--runtime-dir", filepath.Join(dir, "run"), "--control-socket", p.Sock, "--release-version", "v1"}
	if pc.Mode == hotswap.ModeReuseport {
		args = append(args, "--mode", "reuseport")
	} else {
		args = append(args, "--listen", "http=tcp://"+p.Addr)
	}
	args = append(args, pc.Flags...)
	args = append(args, "--")
	args = append(args, command...)
	// sh is PID 1 for a moment: it gives the new mount namespace its own
	// /proc (hotswap as PID 1 reads /proc to find stragglers) and execs
	// hotswap, which stays PID 1.
	p.cmd = exec.Command("/bin/sh", append([]string{"-c", `mount --make-rprivate / && mount -t proc proc /proc && exec "$0" "$@"`, bin}, args...)...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	p.cmd.Dir = dir
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	logDone := make(chan struct{})
	go p.readLog(pr, logDone)
	go func() {
		<-logDone
		err := p.cmd.Wait()
		_ = err
		p.state = p.cmd.ProcessState
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.exited:
			case <-time.After(15 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.exited
			}
		}
		if t.Failed() {
			t.Logf("hotswap output:\n%s", Indent(p.Output()))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.WaitPhase(ctx, hotswap.PhaseServing); err != nil {
		t.Fatalf("hotswap did not start serving: %v\n%s", err, Indent(p.Output()))
	}
	return p
}

func (p *Pod) readLog(r io.ReadCloser, done chan struct{}) {
	defer close(done)
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		p.logMu.Lock()
		p.raw.Write(line)
		p.raw.WriteByte('\n')
		if len(line) > 0 && line[0] == '{' {
			var m map[string]any
			if json.Unmarshal(line, &m) == nil {
				rec := LogRec{Attrs: m}
				rec.Msg, _ = m["msg"].(string)
				if s, ok := m["time"].(string); ok {
					rec.Time, _ = time.Parse(time.RFC3339Nano, s)
				}
				p.recs = append(p.recs, rec)
			}
		}
		p.logMu.Unlock()
		select {
		case p.logCh <- struct{}{}:
		default:
		}
	}
}

// Output is everything hotswap and its children wrote so far.
func (p *Pod) Output() string {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	return p.raw.String()
}

// Logs returns hotswap's JSON log records so far.
func (p *Pod) Logs() []LogRec {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	return append([]LogRec(nil), p.recs...)
}

// WaitLog waits for a log record that match accepts.
func (p *Pod) WaitLog(ctx context.Context, match func(LogRec) bool) (LogRec, error) {
	for {
		for _, r := range p.Logs() {
			if match(r) {
				return r, nil
			}
		}
		select {
		case <-p.logCh:
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return LogRec{}, ctx.Err()
		}
	}
}

// PID is PID 1's PID as the test sees it.
func (p *Pod) PID() int { return p.cmd.Process.Pid }

// SetServeFlags rewrites the flags the next generation's wrapper script
// passes to `hotswap serve`.
func (p *Pod) SetServeFlags(flags ...string) {
	p.t.Helper()
	tmp := filepath.Join(p.Dir, "flags.tmp")
	if err := os.WriteFile(tmp, []byte(strings.Join(flags, " ")+"\n"), 0o644); err != nil {
		p.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(p.Dir, "flags")); err != nil {
		p.t.Fatal(err)
	}
}

// Status asks the control socket.
func (p *Pod) Status(ctx context.Context) (hotswap.Status, error) {
	resp, err := hotswap.Control(ctx, p.Sock, hotswap.ControlRequest{Op: "status"})
	if err != nil {
		return hotswap.Status{}, err
	}
	if resp.Error != "" || resp.Status == nil {
		return hotswap.Status{}, fmt.Errorf("status: %s", resp.Error)
	}
	return *resp.Status, nil
}

// WaitPhase polls the status until the phase is want.
func (p *Pod) WaitPhase(ctx context.Context, want hotswap.Phase) error {
	var last hotswap.Status
	var lastErr error
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("hotswap exited (%v) while waiting for phase %s", p.state, want)
		default:
		}
		st, err := p.Status(ctx)
		if err == nil && st.Phase == want {
			return nil
		}
		last, lastErr = st, err
		select {
		case <-ctx.Done():
			return fmt.Errorf("phase %s not reached: last %s (%v): %w", want, last.Phase, lastErr, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Swap triggers a swap through the control socket and waits for its outcome.
func (p *Pod) Swap(ctx context.Context) (hotswap.SwapResult, error) {
	resp, err := hotswap.Control(ctx, p.Sock, hotswap.ControlRequest{Op: "swap", Timeout: "60s"})
	if err != nil {
		return hotswap.SwapResult{}, err
	}
	if resp.Error != "" || resp.Swap == nil {
		return hotswap.SwapResult{}, errors.New(resp.Error)
	}
	return *resp.Swap, nil
}

// SwapCLI runs `hotswap swap` and returns its exit code and output.
func (p *Pod) SwapCLI(ctx context.Context, extra ...string) (int, string) {
	cmd := exec.CommandContext(ctx, p.Bin, append([]string{"swap", "--control-socket", p.Sock}, extra...)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	default:
		return -1, err.Error()
	}
}

// Signal sends sig to PID 1.
func (p *Pod) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// Wait waits for PID 1 to exit and returns its exit code.
func (p *Pod) Wait(ctx context.Context) (int, error) {
	select {
	case <-p.exited:
		return p.state.ExitCode(), nil
	case <-ctx.Done():
		return -1, ctx.Err()
	}
}

// Procs lists the PIDs (as the test sees them) of every process in PID 1's
// PID namespace, PID 1 included.
func (p *Pod) Procs() []int {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", p.PID()))
	if err != nil {
		return nil
	}
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err == nil && l == ns {
			out = append(out, pid)
		}
	}
	return out
}

// GenTime is when hotswap started a generation and when it saw it exit.
type GenTime struct {
	Started, Exited time.Time
}

var reExited = regexp.MustCompile(`generation (\d+) exited`)

// GenTimes reads, for every generation, when hotswap started it and when
// it saw it exit.
func (p *Pod) GenTimes() map[int]*GenTime {
	out := map[int]*GenTime{}
	get := func(g int) *GenTime {
		if out[g] == nil {
			out[g] = &GenTime{}
		}
		return out[g]
	}
	for _, r := range p.Logs() {
		switch {
		case r.Msg == "started generation":
			get(r.Int("generation")).Started = r.Time
		case r.Msg == "drained":
			get(r.Int("generation")).Exited = r.Time
		default:
			if m := reExited.FindStringSubmatch(r.Msg); m != nil {
				g, _ := strconv.Atoi(m[1])
				if x := get(g); x.Exited.IsZero() {
					x.Exited = r.Time
				}
			}
		}
	}
	return out
}

// MixedLoad is the load every test runs: back-to-back keep-alive clients,
// a new connection per request, 10% slow requests (100 ms in flight) and a
// pool of long-idle keep-alive connections that a server's drain must close
// cleanly. Paced, so two cores are left for hotswap and the servers.
func MixedLoad(addr string, d time.Duration) load.Config {
	return load.Config{
		Addr:         addr,
		Duration:     d,
		KeepAlive:    6,
		NewConn:      3,
		Rate:         1500,
		SlowFraction: 0.1,
		SlowPath:     "/?sleep=100ms",
		IdlePool:     4,
		IdleFor:      700 * time.Millisecond,
		Timeout:      5 * time.Second,
		KeepAttempts: true,
	}
}

// StartLoad starts the mixed load and waits until the pod answers it.
func StartLoad(t testing.TB, p *Pod, cfg load.Config) *load.Runner {
	t.Helper()
	r, err := load.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop(); <-r.Done() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for r.Progress().Attempts < 50 {
		select {
		case <-ctx.Done():
			t.Fatalf("load did not get going: %+v", r.Progress())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return r
}

// FinishLoad stops the run, prints its report and fails on any failed attempt.
func FinishLoad(t testing.TB, r *load.Runner) *load.Report {
	t.Helper()
	return FinishLoadExcept(t, r, nil)
}

// FinishLoadExcept is FinishLoad, but failed attempts that excused accepts
// are only listed, not counted against the test.
func FinishLoadExcept(t testing.TB, r *load.Runner, excused func(load.Attempt) bool) *load.Report {
	t.Helper()
	r.Stop()
	rep := r.Wait()
	t.Logf("load report:\n%s", Indent(rep.String()))
	if rep.Failed() == 0 {
		return rep
	}
	bad := 0
	for _, a := range rep.Log {
		if !a.Kind.Failed() {
			continue
		}
		why := ""
		if excused != nil && excused(a) {
			why = " (excused)"
		} else {
			bad++
		}
		t.Logf("failed attempt%s: start %s (+%.3fs) end +%.3fs latency %v class %s kind %s reused %v", why, a.Start.Format("15:04:05.000000"),
			a.Start.Sub(rep.Start).Seconds(), a.Start.Add(a.Latency).Sub(rep.Start).Seconds(), a.Latency, a.Class, a.Kind, a.Reused)
	}
	if bad > 0 {
		t.Errorf("%d requests failed: %v", bad, rep.Err())
	}
	return rep
}
