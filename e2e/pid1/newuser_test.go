package pid1

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNewUserPath is issue 15's measure: the path of a new user, scripted,
// from the README's first command to a swap of their own Go server through
// a watched `current` symlink, `hotswap status`, a refused release and its
// fix in place. Every check is something the user would see; it fails if
// any of them regresses (a clean drain exiting 1, silent ignored changes, a
// status showing stale or missing fields, duplicate log keys).
func TestNewUserPath(t *testing.T) {
	dir := tempDir(t)
	runDir := filepath.Join(dir, "run")
	clientEnv := []string{"HOTSWAP_RUNTIME_DIR=" + runDir, "HOTSWAP_CONTROL_SOCKET="}

	t.Run("README first command: demo, then swap and status through HOTSWAP_RUNTIME_DIR", func(t *testing.T) {
		addr := freeAddr(t)
		demo := exec.Command(hotswapBin, "demo", "--addr", addr)
		demo.Env = append(os.Environ(), clientEnv...)
		out := &syncBuffer{}
		demo.Stdout, demo.Stderr = out, out
		if err := demo.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = demo.Process.Kill(); _ = demo.Wait() })
		waitHTTP(t, addr, 20*time.Second)
		if code, s := runCLI(t, hotswapBin, clientEnv, "swap", "--timeout", "30s"); code != 0 || !strings.Contains(s, "swapped: generation 1 (demo) -> 2 (demo)") {
			t.Fatalf("hotswap swap: exit %d:\n%s\ndemo:\n%s", code, s, out.String())
		}
		_ = demo.Process.Signal(syscall.SIGINT)
		if err := demo.Wait(); err != nil {
			t.Fatalf("demo after Ctrl-C: %v\n%s", err, out.String())
		}
	})

	// The user's server, written as the README says.
	readme := readFile(filepath.Join(repoRoot(t), "README.md"))
	snippet := regexp.MustCompile("(?s)```go\n(func main\\(\\) \\{.*?\n\\})\n```").FindStringSubmatch(readme)
	src := readFile(filepath.Join("testdata", "userserver", "main.go"))
	if snippet == nil || !strings.Contains(src, snippet[1]) {
		t.Fatalf("testdata/userserver/main.go no longer has the README's main:\n%v", snippet)
	}
	rel := filepath.Join(dir, "releases")
	for _, v := range []string{"v1", "v2"} {
		build := exec.Command("go", "build", "-trimpath", "-ldflags", "-X main.release="+v, "-o", filepath.Join(rel, v, "server"), "./testdata/userserver")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", v, err, b)
		}
	}
	current := filepath.Join(rel, "current")
	if err := os.Symlink("v1/server", current); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	r := startHotswap(t, opts{mode: asPID1, runtimeDir: runDir, env: []string{"HOTSWAP_LOG_FORMAT=json"}},
		"--listen", "http=tcp://"+addr, "--watch", current, "--release-root", rel, "--settle", "300ms", "--", current)
	get := func() string {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				_, st := runCLI(t, hotswapBin, clientEnv, "status")
				t.Fatalf("%s: not within 30s\nstatus:\n%s\nhotswap:\n%s", what, st, r.out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	status := func() string {
		t.Helper()
		code, s := runCLI(t, hotswapBin, clientEnv, "status")
		if code != 0 {
			t.Fatalf("hotswap status: exit %d:\n%s", code, s)
		}
		return s
	}
	waitFor("v1 serves", func() bool { return strings.HasPrefix(get(), "v1 ") })
	st := status()
	mustContain(t, "status", st, "phase: Serving", "serving: generation 1, version", current+", up ",
		"swaps: 0 (0 succeeded, 0 failed, 0 rejected, 0 canceled)", "AGE", "BINARY")

	// A release the user forgot to chmod properly: refused, v1 untouched.
	v2 := filepath.Join(rel, "v2", "server")
	if err := os.Chmod(v2, 0o777); err != nil {
		t.Fatal(err)
	}
	flipLink(t, current, "v2/server")
	waitFor("v2 refused", func() bool { return strings.Contains(status(), "last rejected release") })
	st = status()
	mustContain(t, "status after the refusal", st, "writable", "swaps: 1 (0 succeeded, 0 failed, 1 rejected")
	if !strings.HasPrefix(get(), "v1 ") {
		t.Fatalf("a refused release changed what serves: %s", get())
	}

	// Fixed in place: offered again and swapped in.
	if err := os.Chmod(v2, 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor("v2 serves after chmod", func() bool { return strings.HasPrefix(get(), "v2 ") })
	waitFor("generation 1 drained", func() bool { return strings.Contains(r.out.String(), `"msg":"drained"`) })
	st = status()
	mustContain(t, "status after the fix", st, "serving: generation 2", filepath.Join(rel, "v2", "server"), "1 succeeded, 0 failed, 1 rejected", "last swap: #2 succeeded by source:watch:")
	if strings.Contains(st, "last rejected release") {
		t.Errorf("status still shows the rejection a later swap made stale:\n%s", st)
	}
	// The same content published again under another name: not a new
	// release, and the log says so.
	b, err := os.ReadFile(v2)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(rel, "v2b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rel, "v2b", "server"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	flipLink(t, current, "v2b/server")
	waitFor("the same content is explained, not offered", func() bool {
		return strings.Contains(r.out.String(), "not offered: same content as the release last offered")
	})
	_, js := runCLI(t, hotswapBin, clientEnv, "status", "-o", "json")
	var sj struct {
		Counts      map[string]int `json:"counts"`
		Generations []struct {
			Path string `json:"path"`
		} `json:"generations"`
		LastSwap struct {
			Duration string `json:"duration"`
		} `json:"lastSwap"`
	}
	if err := json.Unmarshal([]byte(js), &sj); err != nil || sj.Counts["succeeded"] != 1 || sj.Counts["rejected"] != 1 ||
		len(sj.Generations) == 0 || sj.Generations[len(sj.Generations)-1].Path != v2 {
		t.Errorf("status -o json: %v\n%s", err, js)
	}
	if _, err := time.ParseDuration(sj.LastSwap.Duration); err != nil {
		t.Errorf("status -o json: lastSwap.duration %q is not a Go duration: %v", sj.LastSwap.Duration, err)
	}

	// The pod is deleted: the README's server drains and exits 0.
	r.signal(syscall.SIGTERM)
	if code := r.wait(30 * time.Second); code != 0 {
		t.Errorf("hotswap exit code %d after SIGTERM, want 0 (the README server's clean drain):\n%s", code, r.out.String())
	}
	logs := r.out.String()
	for _, line := range strings.Split(logs, "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		if n := strings.Count(line, `"component":`); n != 1 {
			t.Errorf("%d component keys: %s", n, line)
		}
		if strings.Contains(line, `"msg":"drained"`) && !strings.Contains(line, `exit status 0`) {
			t.Errorf("generation 1 did not exit 0 after its drain: %s", line)
		}
	}
	mustContain(t, "hotswap's log", logs, "offered again", "trying it again", `"drain":"`)
}

// flipLink points the symlink at path to target atomically, as a release
// script does (ln -s target .tmp && mv -T .tmp path).
func flipLink(t *testing.T, path, target string) {
	t.Helper()
	tmp := path + ".tmp"
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// repoRoot is the module root: this package lives in e2e/pid1.
func repoRoot(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(filepath.Dir(wd))
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatal(fmt.Errorf("module root: %w", err))
	}
	return root
}
