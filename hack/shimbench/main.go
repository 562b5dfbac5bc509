// Command shimbench measures what starting a generation costs, for several
// hotswap binaries side by side on the same machine, interleaved run by run
// (docs/perf-swap.md, "Generation start"):
//
//	start   process start → the child's first output: hotswap as PID 1 of a
//	        fresh PID namespace starting `sh -c 'echo; exec sleep'` with one
//	        listener, against that sh as PID 1 directly;
//	swap    SIGUSR2 to hotswap → the new generation's first output, against
//	        fork+exec of the same sh by this tool;
//	answer  SIGUSR2 → the first HTTP answer from the new generation of
//	        `hotswap serve` (the same server binary in every arm), against
//	        that server started alone: exec → first answer.
//
// The child's first output stands for its exec: sh's own start is in every
// arm and in the baseline alike. Needs root (unshare) and util-linux.
//
//	go build -o /tmp/hotswap-after ./cmd/hotswap
//	mkdir /tmp/before && git archive BASE | tar -x -C /tmp/before && (cd /tmp/before && go build -o /tmp/hotswap-before ./cmd/hotswap)
//	go run ./hack/shimbench -n 50 before=/tmp/hotswap-before after=/tmp/hotswap-after
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type arm struct{ name, bin string }

func main() {
	n := flag.Int("n", 30, "runs per arm and measurement")
	server := flag.String("server", "", "binary whose `serve` is the HTTP server of the answer runs (default: the last arm's)")
	only := flag.String("only", "start,swap,answer", "measurements to run")
	tflip := flag.String("tableflip", "", "hack/tableflip's server binary: the server of the answer runs, and an arm of its own upgraded by tableflip on SIGHUP")
	flag.Parse()
	var arms []arm
	for _, a := range flag.Args() {
		name, bin, ok := strings.Cut(a, "=")
		if !ok {
			fail("arguments are NAME=HOTSWAP_BINARY")
		}
		arms = append(arms, arm{name, bin})
	}
	if len(arms) == 0 {
		fail("usage: shimbench [-n N] NAME=HOTSWAP_BINARY...")
	}
	if *tflip != "" {
		*server = *tflip
	}
	if *server == "" {
		*server = arms[len(arms)-1].bin
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		fail(err.Error())
	}
	tmp, err := os.MkdirTemp("", "shimbench")
	if err != nil {
		fail(err.Error())
	}
	defer os.RemoveAll(tmp)
	child := []string{sh, "-c", "echo g$HOTSWAP_GENERATION; exec sleep 3600"}
	fmt.Printf("shimbench: %d runs per arm, %s\n\n", *n, time.Now().UTC().Format(time.RFC3339))
	fmt.Println("| measurement | arm | p50 ms | p90 ms | max ms | mean ms |")
	fmt.Println("| --- | --- | --- | --- | --- | --- |")

	if strings.Contains(*only, "start") {
		res := map[string][]time.Duration{}
		for i := 0; i < *n; i++ {
			res["direct exec"] = append(res["direct exec"], startOnce(child))
			for _, a := range arms {
				dir := filepath.Join(tmp, fmt.Sprintf("start-%s-%d", a.name, i))
				argv := append([]string{a.bin, "--runtime-dir", dir, "--listen", "http=tcp://127.0.0.1:0", "--ready", "delay=1h", "--"}, child...)
				res[a.name] = append(res[a.name], startOnce(argv))
			}
		}
		row("start → child exec (PID 1)", "direct exec", res["direct exec"])
		for _, a := range arms {
			row("start → child exec (PID 1)", a.name, res[a.name])
		}
	}
	if strings.Contains(*only, "swap") {
		res := map[string][]time.Duration{}
		var hs []*hotswap
		for _, a := range arms {
			hs = append(hs, startHotswap(a.bin, filepath.Join(tmp, "swap-"+a.name), []string{"--listen", "http=tcp://127.0.0.1:0", "--ready", "delay=20ms"}, child, nil))
		}
		for i := 0; i < *n; i++ {
			res["fork+exec by this tool"] = append(res["fork+exec by this tool"], execOnce(child))
			for j, a := range arms {
				res[a.name] = append(res[a.name], hs[j].swapToLine(i+2))
			}
		}
		for _, h := range hs {
			h.stop()
		}
		row("trigger → new generation's exec", "fork+exec by this tool", res["fork+exec by this tool"])
		for _, a := range arms {
			row("trigger → new generation's exec", a.name, res[a.name])
		}
	}
	if strings.Contains(*only, "answer") {
		res := map[string][]time.Duration{}
		var hs []*hotswap
		var addrs []string
		for _, a := range arms {
			addr := freeAddr()
			addrs = append(addrs, addr)
			hs = append(hs, startHotswap(a.bin, filepath.Join(tmp, "answer-"+a.name), []string{"--listen", "http=tcp://" + addr}, []string{*server, "serve", "--grace", "20ms", "--log-level", "warn"}, nil))
		}
		for j := range arms {
			waitGen(addrs[j], "1", 10*time.Second)
		}
		var tf *tableflipServer
		if *tflip != "" {
			tf = startTableflip(*tflip)
		}
		for i := 0; i < *n; i++ {
			res["server alone: exec → answer"] = append(res["server alone: exec → answer"], serverAlone(*server))
			if tf != nil {
				res["tableflip"] = append(res["tableflip"], tf.upgrade())
			}
			for j, a := range arms {
				time.Sleep(300 * time.Millisecond)
				t0 := time.Now()
				hs[j].signal(syscall.SIGUSR2)
				waitGen(addrs[j], strconv.Itoa(i+2), 10*time.Second)
				res[a.name] = append(res[a.name], time.Since(t0))
			}
		}
		for _, h := range hs {
			h.stop()
		}
		if tf != nil {
			tf.stop()
			row("trigger → first answer from the new generation", "tableflip (SIGHUP)", res["tableflip"])
		}
		row("trigger → first answer from the new generation", "server alone: exec → answer", res["server alone: exec → answer"])
		for _, a := range arms {
			row("trigger → first answer from the new generation", a.name, res[a.name])
		}
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "shimbench:", msg)
	os.Exit(2)
}

func row(what, name string, ds []time.Duration) {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/1e6) }
	fmt.Printf("| %s | %s | %s | %s | %s | %s |\n", what, name, ms(ds[len(ds)/2]), ms(ds[len(ds)*9/10]), ms(ds[len(ds)-1]), ms(sum/time.Duration(len(ds))))
}

// startOnce starts argv as PID 1 of a new PID namespace and times it until
// the first byte on its stdout; then kills the namespace.
func startOnce(argv []string) time.Duration {
	r, w, err := os.Pipe()
	if err != nil {
		fail(err.Error())
	}
	cmd := exec.Command("unshare", append([]string{"--pid", "--fork", "--mount-proc", "--kill-child", "--"}, argv...)...)
	cmd.Stdout = w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		fail(err.Error())
	}
	w.Close()
	_ = r.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 1)
	if _, err := r.Read(b); err != nil {
		fail(fmt.Sprintf("%q: no output: %v", argv, err))
	}
	d := time.Since(t0)
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
	r.Close()
	return d
}

// execOnce forks and execs argv and times it until its first output.
func execOnce(argv []string) time.Duration {
	r, w, err := os.Pipe()
	if err != nil {
		fail(err.Error())
	}
	t0 := time.Now()
	p, err := os.StartProcess(argv[0], argv, &os.ProcAttr{Files: []*os.File{nil, w, nil}, Sys: &syscall.SysProcAttr{Setpgid: true}})
	if err != nil {
		fail(err.Error())
	}
	w.Close()
	b := make([]byte, 1)
	if _, err := r.Read(b); err != nil {
		fail(err.Error())
	}
	d := time.Since(t0)
	_ = p.Kill()
	_, _ = p.Wait()
	r.Close()
	return d
}

type line struct {
	text string
	at   time.Time
}

type hotswap struct {
	cmd   *exec.Cmd
	pid   int // hotswap's own PID (the child of unshare)
	lines chan line
}

// startHotswap runs bin as PID 1 of a new PID namespace with child as its
// command and waits for generation 1's first line (when it prints).
func startHotswap(bin, dir string, flags, child, env []string) *hotswap {
	r, w, err := os.Pipe()
	if err != nil {
		fail(err.Error())
	}
	argv := append([]string{"--pid", "--fork", "--mount-proc", "--kill-child", "--", bin, "--runtime-dir", dir}, flags...)
	argv = append(append(argv, "--"), child...)
	cmd := exec.Command("unshare", argv...)
	cmd.Stdout = w
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		fail(err.Error())
	}
	w.Close()
	h := &hotswap{cmd: cmd, lines: make(chan line, 1024)}
	go func() {
		s := bufio.NewScanner(r)
		for s.Scan() {
			h.lines <- line{s.Text(), time.Now()}
		}
		close(h.lines)
	}()
	for deadline := time.Now().Add(5 * time.Second); h.pid == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			fail("hotswap did not start under unshare")
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
		if f := strings.Fields(string(b)); len(f) > 0 {
			h.pid, _ = strconv.Atoi(f[0])
		}
	}
	if child[0] != "" && strings.HasSuffix(child[0], "sh") {
		h.waitLine("g1", time.Now())
	}
	return h
}

func (h *hotswap) signal(sig syscall.Signal) {
	if err := syscall.Kill(h.pid, sig); err != nil {
		fail(err.Error())
	}
}

// swapToLine waits for the last swap to settle, triggers one and times it
// until generation gen prints.
func (h *hotswap) swapToLine(gen int) time.Duration {
	time.Sleep(250 * time.Millisecond)
	t0 := time.Now()
	h.signal(syscall.SIGUSR2)
	return h.waitLine("g"+strconv.Itoa(gen), t0)
}

func (h *hotswap) waitLine(want string, t0 time.Time) time.Duration {
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-h.lines:
			if !ok {
				fail("hotswap exited")
			}
			if l.text == want {
				return l.at.Sub(t0)
			}
		case <-timeout:
			fail("no " + want + " within 10s")
		}
	}
}

func (h *hotswap) stop() {
	_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
	_ = h.cmd.Wait()
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err.Error())
	}
	defer l.Close()
	return l.Addr().String()
}

// get asks addr for / on a new connection and returns the generation that
// answered ("" when nothing did).
func get(addr string) string {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\nHost: x\r\n\r\n"); err != nil {
		return ""
	}
	b, _ := io.ReadAll(c)
	_, after, ok := bytes.Cut(b, []byte("generation="))
	if !ok {
		return ""
	}
	g, _, _ := bytes.Cut(after, []byte(" "))
	return string(g)
}

func waitGen(addr, gen string, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for get(addr) != gen {
		if time.Now().After(deadline) {
			fail("generation " + gen + " never answered on " + addr)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// serverAlone starts `server serve` on a free address and times it until
// its first answer.
func serverAlone(server string) time.Duration {
	addr := freeAddr()
	cmd := exec.Command(server, "serve", "--addr", addr, "--log-level", "warn")
	cmd.Env = append(os.Environ(), "HOTSWAP_GENERATION=0")
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		fail(err.Error())
	}
	waitGen(addr, "0", 10*time.Second)
	d := time.Since(t0)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return d
}

// tableflipServer is hack/tableflip's server on its own, upgraded by
// cloudflare/tableflip: SIGHUP makes it re-execute itself with the listener.
type tableflipServer struct {
	addr, gen string // gen: the PID that answers now
}

func startTableflip(bin string) *tableflipServer {
	t := &tableflipServer{addr: freeAddr()}
	cmd := exec.Command(bin, "--addr", t.addr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		fail(err.Error())
	}
	go func() { _ = cmd.Wait() }() // the first process exits at its first upgrade
	for deadline := time.Now().Add(10 * time.Second); t.gen == ""; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			fail("tableflip server never answered")
		}
		t.gen = get(t.addr)
	}
	return t
}

// upgrade waits for the last upgrade to settle, sends SIGHUP to the
// serving process and times it until another process answers.
func (t *tableflipServer) upgrade() time.Duration {
	time.Sleep(300 * time.Millisecond)
	pid, _ := strconv.Atoi(t.gen)
	t0 := time.Now()
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		fail(err.Error())
	}
	deadline := t0.Add(10 * time.Second)
	for {
		if g := get(t.addr); g != "" && g != t.gen {
			t.gen = g
			return time.Since(t0)
		}
		if time.Now().After(deadline) {
			fail("no new tableflip process answered")
		}
		time.Sleep(200 * time.Microsecond)
	}
}

func (t *tableflipServer) stop() {
	pid, _ := strconv.Atoi(t.gen)
	_ = syscall.Kill(pid, syscall.SIGKILL)
}
