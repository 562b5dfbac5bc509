package container

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/e2e/load"
	"github.com/hotswap-dev/hotswap/internal/tinyshim"
)

// image is the tag built for this test run; skipReason is set when podman
// cannot work here.
var (
	image      string
	skipReason string
)

func TestMain(m *testing.M) {
	code := func() int {
		if os.Getenv("HOTSWAP_SKIP_CONTAINER") == "1" {
			skipReason = "HOTSWAP_SKIP_CONTAINER=1"
			return m.Run()
		}
		if err := setupPodman(); err != nil {
			skipReason = err.Error()
			return m.Run()
		}
		image = fmt.Sprintf("localhost/hotswap:e2e-%d", os.Getpid())
		out, err := run(context.Background(), filepath.Join(repoRoot(), "hack", "image.sh"), "-t", image)
		if err != nil {
			fmt.Fprintf(os.Stderr, "hack/image.sh failed: %v\n", err)
			return 1
		}
		_ = out
		defer podman(context.Background(), "rmi", "-f", image)
		return m.Run()
	}()
	os.Exit(code)
}

// setupPodman installs podman if needed and checks it can run a container at
// all (a FROM-scratch image with a static binary); an error here means the
// machine cannot run containers, not that hotswap is broken.
func setupPodman() error {
	if runtime.GOOS != "linux" {
		return errors.New("podman tests need Linux")
	}
	if os.Getenv("CONTAINERS_CONF") == "" {
		conf, err := run(context.Background(), filepath.Join(repoRoot(), "hack", "podman-setup.sh"))
		if err != nil {
			return fmt.Errorf("podman cannot be installed here (hack/podman-setup.sh): %v", err)
		}
		os.Setenv("CONTAINERS_CONF", strings.TrimSpace(lastLine(conf)))
	}
	if _, err := podman(context.Background(), "info", "--format", "{{.Host.OCIRuntime.Name}}"); err != nil {
		return fmt.Errorf("podman does not run here: %v", err)
	}
	return nil
}

func needPodman(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skipf("no container runtime: %s (the same binary as PID 1 in fresh namespaces is tested by the system e2e)", skipReason)
	}
}

// The Dockerfile (for users with a registry) and hack/Containerfile.prebuilt
// (for machines without one) must produce the same final image.
func TestFinalStageIdentical(t *testing.T) {
	const marker = "# --- final stage: keep identical to hack/Containerfile.prebuilt ---"
	final := func(name string) string {
		b, err := os.ReadFile(filepath.Join(repoRoot(), name))
		if err != nil {
			t.Fatal(err)
		}
		_, after, ok := strings.Cut(string(b), marker)
		if !ok {
			t.Fatalf("%s: marker line %q not found", name, marker)
		}
		return after
	}
	d, p := final("Dockerfile"), final("hack/Containerfile.prebuilt")
	if d != p {
		t.Errorf("final stages differ:\n--- Dockerfile\n%s\n--- hack/Containerfile.prebuilt\n%s", d, p)
	}
	for _, want := range []string{
		`ENTRYPOINT ["/hotswap", "--listen", "http=tcp://:8080", "--"]`,
		`CMD ["/hotswap", "serve"]`,
		"USER 65532:65532",
		"FROM scratch",
	} {
		if !strings.Contains(d, want) {
			t.Errorf("final stage lacks %q", want)
		}
	}
	df, _ := os.ReadFile(filepath.Join(repoRoot(), "Dockerfile"))
	for _, want := range []string{"CGO_ENABLED=0", `-ldflags "-s -w`, "-trimpath", "ln -s /hotswap /rootfs/bin/kill"} {
		if !bytes.Contains(df, []byte(want)) {
			t.Errorf("Dockerfile build stage lacks %q", want)
		}
	}
}

// Every package cmd/hotswap is built from must reach the builder: a
// .dockerignore pattern that drops one breaks `docker build .` for users
// even though hack/image.sh (which builds on the host) still works.
func TestDockerignoreKeepsBuildInputs(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(), ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, "!") {
			patterns = append(patterns, strings.TrimPrefix(l, "/"))
		}
	}
	out, err := run(context.Background(), "go", "list", "-deps", "-f", "{{if not .Standard}}{{.Module.Path}} {{.Dir}} {{join .GoFiles \" \"}}{{end}}", "./cmd/hotswap")
	if err != nil {
		t.Fatal(err)
	}
	root := repoRoot()
	inputs := []string{"go.mod", "go.sum"}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != "github.com/hotswap-dev/hotswap" {
			continue
		}
		rel, _ := filepath.Rel(root, f[1])
		for _, g := range f[2:] {
			inputs = append(inputs, filepath.Join(rel, g))
		}
	}
	for _, in := range inputs {
		for _, p := range patterns {
			if ignored(p, in) {
				t.Errorf(".dockerignore pattern %q drops %s, which the build needs", p, in)
			}
		}
	}
}

// ignored reports whether a .dockerignore pattern matches path or one of its
// parent directories (the subset of the syntax this repository uses).
func ignored(pattern, path string) bool {
	parts := strings.Split(path, "/")
	for i := 1; i <= len(parts); i++ {
		p := strings.Join(parts[:i], "/")
		if ok, _ := filepath.Match(pattern, p); ok {
			return true
		}
		if rest, found := strings.CutPrefix(pattern, "**/"); found {
			if ok, _ := filepath.Match(rest, parts[i-1]); ok {
				return true
			}
		}
	}
	return false
}

type imageInfo struct {
	Size   int64 `json:"Size"`
	Config struct {
		User       string   `json:"User"`
		Entrypoint []string `json:"Entrypoint"`
		Cmd        []string `json:"Cmd"`
	} `json:"Config"`
}

// The image is what the Dockerfile promises: non-root, exec-form
// entrypoint, a static stripped binary, /bin/kill -> /hotswap, nothing else.
func TestImageContents(t *testing.T) {
	needPodman(t)
	ctx := context.Background()
	out, err := podman(ctx, "image", "inspect", image)
	if err != nil {
		t.Fatal(err)
	}
	var infos []imageInfo
	if err := json.Unmarshal([]byte(out), &infos); err != nil || len(infos) != 1 {
		t.Fatalf("podman image inspect: %v\n%s", err, out)
	}
	info := infos[0]
	t.Logf("image size: %.1f MB", float64(info.Size)/1e6)
	if info.Config.User != "65532:65532" {
		t.Errorf("User = %q, want 65532:65532", info.Config.User)
	}
	if got, want := strings.Join(info.Config.Entrypoint, " "), "/hotswap --listen http=tcp://:8080 --"; got != want {
		t.Errorf("Entrypoint = %q, want %q", got, want)
	}
	if got, want := strings.Join(info.Config.Cmd, " "), "/hotswap serve"; got != want {
		t.Errorf("Cmd = %q, want %q", got, want)
	}

	// Export the file system and look at every entry.
	ctr := strings.TrimSpace(mustPodman(t, "create", image))
	defer podman(ctx, "rm", "-f", ctr)
	dir := t.TempDir()
	tarPath := filepath.Join(dir, "fs.tar")
	mustPodman(t, "export", "-o", tarPath, ctr)
	list, err := run(ctx, "tar", "--numeric-owner", "-tvf", tarPath)
	if err != nil {
		t.Fatal(err)
	}
	entries := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(list), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 {
			continue
		}
		name := strings.TrimSuffix(strings.TrimPrefix(f[5], "./"), "/")
		if name == "" || name == "." {
			continue
		}
		entries[name] = f[0] + " " + f[1] + " " + strings.Join(f[5:], " ")
	}
	for name, want := range map[string]string{
		"hotswap":     "-rwxr-xr-x 0/0",
		"bin/kill":    "-> /hotswap",
		"etc/passwd":  "0/0",
		"run/hotswap": "drwxr-xr-x 65532/65532",
		"tmp":         "drwxrwxrwt 0/0",
		"run":         "drwxr-xr-x 0/0",
	} {
		if !strings.Contains(entries[name], want) {
			t.Errorf("%s: got %q, want it to contain %q", name, entries[name], want)
		}
	}
	allowed := map[string]bool{"hotswap": true, "bin": true, "bin/kill": true, "etc": true, "etc/passwd": true,
		"etc/group": true, "run": true, "run/hotswap": true, "tmp": true,
		// created by the runtime in every container
		"dev": true, "proc": true, "sys": true, "etc/hosts": true, "etc/resolv.conf": true, "etc/hostname": true, "run/.containerenv": true}
	for name := range entries {
		if !allowed[name] {
			t.Errorf("unexpected file in the image: %s", entries[name])
		}
	}

	if _, err := run(ctx, "tar", "-xf", tarPath, "-C", dir, "./hotswap"); err != nil {
		if _, err2 := run(ctx, "tar", "-xf", tarPath, "-C", dir, "hotswap"); err2 != nil {
			t.Fatal(err)
		}
	}
	f, err := elf.Open(filepath.Join(dir, "hotswap"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("/hotswap has an ELF interpreter: not static (CGO_ENABLED=0?)")
		}
	}
	if f.Section(".symtab") != nil {
		t.Error("/hotswap has a symbol table: not stripped (-ldflags \"-s -w\")")
	}
	st, _ := os.Stat(filepath.Join(dir, "hotswap"))
	t.Logf("hotswap binary: %.1f MB", float64(st.Size())/1e6)
}

// The three documented ways to swap reach the container's PID 1, under load
// with zero failed requests; `podman stop` ends it with exit code 0. Run
// twice: as `docker run IMAGE` would, and locked down as the Helm chart runs
// it (read-only root, no capabilities, no new privileges, a tmpfs for the
// control socket; podman's U option makes it the user's, as fsGroup does
// for an emptyDir).
func TestRunSwapStop(t *testing.T) {
	needPodman(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"default", nil},
		{"restricted", []string{"--read-only", "--read-only-tmpfs=false", "--cap-drop=ALL",
			"--security-opt=no-new-privileges", "--tmpfs=/run/hotswap:rw,size=1m,U"}},
	} {
		t.Run(tc.name, func(t *testing.T) { runSwapStop(t, tc.args) })
	}
}

func runSwapStop(t *testing.T, extra []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	name := fmt.Sprintf("hotswap-e2e-%d-%d", os.Getpid(), port)
	args := append([]string{"run", "-d", "--name", name, "-p", addr + ":8080"}, extra...)
	args = append(args, image)
	start := time.Now()
	if _, err := podman(ctx, args...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logs := podmanLogs(context.Background(), name)
			t.Logf("container logs:\n%s", logs)
		}
		podman(context.Background(), "rm", "-f", "-t", "0", name)
	})
	first := waitServing(t, ctx, addr, "")
	t.Logf("start to first answer: %s (podman run + hotswap + example server ready)", time.Since(start).Round(time.Millisecond))
	if logs := podmanLogs(ctx, name); logs != "" {
		if d, ok := startToReady(logs); ok {
			t.Logf("in the container, hotswap start to generation 1 ready: %s", d.Round(time.Millisecond))
		}
	}
	if first.pid == "1" {
		t.Fatalf("the server is PID 1; hotswap should be: %+v", first)
	}

	r, err := load.Start(ctx, load.Config{Addr: addr, Duration: time.Minute, KeepAlive: 4, NewConn: 2,
		SlowFraction: 0.1, Rate: 400, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	prev := first
	for _, sw := range []struct {
		how  string
		args []string
		want string
	}{
		{"podman kill --signal USR2", []string{"kill", "--signal", "USR2", name}, ""},
		{"podman exec /hotswap swap", []string{"exec", name, "/hotswap", "swap"}, "swapped: generation"},
		{"podman exec kill -USR2 1", []string{"exec", name, "kill", "-USR2", "1"}, ""},
	} {
		r.MarkSwap(time.Now())
		out, err := podman(ctx, sw.args...)
		if err != nil {
			t.Fatalf("%s: %v", sw.how, err)
		}
		if !strings.Contains(out, sw.want) {
			t.Fatalf("%s printed %q, want %q", sw.how, out, sw.want)
		}
		next := waitServing(t, ctx, addr, prev.gen)
		t.Logf("%s: generation %s (pid %s) -> %s (pid %s)", sw.how, prev.gen, prev.pid, next.gen, next.pid)
		if next.pid == prev.pid {
			t.Fatalf("%s: pid unchanged (%s)", sw.how, next.pid)
		}
		prev = next
	}
	status, err := podman(ctx, "exec", name, "/hotswap", "status")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(status, "swaps: 3") {
		t.Errorf("hotswap status after three swaps:\n%s", status)
	}
	checkExecShim(t, ctx, name)
	time.Sleep(500 * time.Millisecond) // some load after the last swap
	r.Stop()
	rep := r.Wait()
	t.Logf("load: %d attempts, %d ok, generations seen %d", rep.Attempts, rep.OK, len(rep.Generations))
	if err := rep.Err(); err != nil {
		t.Errorf("requests failed across the swaps: %v", err)
	}

	stopStart := time.Now()
	if _, err := podman(ctx, "stop", "-t", "30", name); err != nil {
		t.Fatal(err)
	}
	t.Logf("podman stop took %s", time.Since(stopStart).Round(time.Millisecond))
	code, err := podman(ctx, "inspect", name, "--format", "{{.State.ExitCode}}")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(code) != "0" {
		t.Errorf("exit code after podman stop = %s, want 0", strings.TrimSpace(code))
	}
}

// checkExecShim: the four generations started through the tiny exec shim
// (internal/tinyshim: a memfd executed by its /proc/self/fd path) here too
// — FROM scratch, a non-root user, and, restricted, a read-only root
// without capabilities — under the runtime's default seccomp profile, and
// never fell back to hotswap's own binary.
func checkExecShim(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	pid, err := podman(ctx, "inspect", name, "--format", "{{.State.Pid}}")
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.ReadFile("/proc/" + strings.TrimSpace(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^Seccomp:\s+2$`).Match(st) {
		t.Errorf("hotswap (host pid %s) runs without a seccomp filter; the default profile was expected", strings.TrimSpace(pid))
	}
	if !tinyshim.Built() {
		t.Logf("no tiny exec shim for %s: generations start through hotswap's own binary", runtime.GOARCH)
		return
	}
	logs := podmanLogs(ctx, name)
	if !strings.Contains(logs, "exec_shim=tiny") || strings.Contains(logs, "tiny exec shim cannot run") {
		t.Errorf("generations did not start through the tiny exec shim; log:\n%s", logs)
		return
	}
	t.Logf("seccomp filter on (/proc/%s/status); every generation started through the tiny exec shim", strings.TrimSpace(pid))
}

// startToReady reads hotswap's text log: the time from its first line to
// "generation 1 ready".
func startToReady(logs string) (time.Duration, bool) {
	var first time.Time
	for _, l := range strings.Split(logs, "\n") {
		ts, _, ok := strings.Cut(strings.TrimPrefix(l, "time="), " ")
		if !ok || !strings.HasPrefix(l, "time=") {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			continue
		}
		if first.IsZero() {
			first = at
		}
		if strings.Contains(l, "generation 1 ready") {
			return at.Sub(first), true
		}
	}
	return 0, false
}

type answer struct{ gen, pid, version string }

// waitServing polls addr until a generation other than notGen answers.
func waitServing(t *testing.T, ctx context.Context, addr, notGen string) answer {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var last error
	for {
		resp, err := hc.Get("http://" + addr + "/")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			a := answer{resp.Header.Get("X-Hotswap-Generation"), resp.Header.Get("X-Hotswap-Pid"), resp.Header.Get("X-Hotswap-Version")}
			if resp.StatusCode == 200 && a.gen != "" && a.gen != notGen {
				return a
			}
			last = fmt.Errorf("status %d, generation %q", resp.StatusCode, a.gen)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no new generation on %s (not %q): %v", addr, notGen, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func podman(ctx context.Context, args ...string) (string, error) {
	return run(ctx, "podman", args...)
}

// podmanLogs returns the container's stdout and stderr (hotswap logs to
// stderr, which `podman logs` keeps on its own stderr).
func podmanLogs(ctx context.Context, name string) string {
	out, _ := exec.CommandContext(ctx, "podman", "logs", name).CombinedOutput()
	return string(out)
}

func mustPodman(t *testing.T, args ...string) string {
	t.Helper()
	out, err := podman(context.Background(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// runError keeps a failed command, its output and the cause together.
type runError struct {
	cmd    []string
	output string
	err    error
}

func (e *runError) Error() string {
	return fmt.Sprintf("%s: %v\n%s", strings.Join(e.cmd, " "), e.err, e.output)
}

func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = repoRoot()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &runError{cmd: append([]string{name}, args...), output: stdout.String() + stderr.String(), err: err}
	}
	return stdout.String(), nil
}

func lastLine(s string) string {
	var last string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			last = l
		}
	}
	return last
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return strings.TrimSuffix(filepath.Dir(file), filepath.FromSlash("/e2e/container"))
}
