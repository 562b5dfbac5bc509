package sources

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/hotswap/source/sourcetest"
)

var (
	foreignOnce sync.Once
	foreignPath string
	foreignErr  error
)

// foreignBin builds a tiny program for another architecture.
func foreignBin(t *testing.T) string {
	t.Helper()
	foreignOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hotswap-foreign-")
		if err != nil {
			foreignErr = err
			return
		}
		_ = os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\nfunc main() {}\n"), 0o644)
		arch := "arm64"
		if runtime.GOARCH == "arm64" {
			arch = "amd64"
		}
		foreignPath = filepath.Join(dir, "server-"+arch)
		cmd := exec.Command("go", "build", "-o", foreignPath, "main.go")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOARCH="+arch, "CGO_ENABLED=0", "GOFLAGS=", "GO111MODULE=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			foreignErr = errors.New(string(out))
		}
	})
	if foreignErr != nil {
		t.Fatalf("build foreign binary: %v", foreignErr)
	}
	return foreignPath
}

// serving asserts the serving generation is still gen, and serving.
func serving(t *testing.T, p *pod, gen int) hotswap.Status {
	t.Helper()
	s, err := p.status()
	if err != nil {
		t.Fatal(err)
	}
	if s.Phase != hotswap.PhaseServing || s.Generation != gen {
		t.Fatalf("serving generation changed: phase %s generation %d, want %d", s.Phase, s.Generation, gen)
	}
	return s
}

// TestWatchedPath: a "current" symlink on a release volume, flipped to new
// releases under load; every bad release is refused with its reason in
// `hotswap status` while the serving generation serves on, and no request
// fails.
func TestWatchedPath(t *testing.T) {
	rel := filepath.Join(t.TempDir(), "releases")
	release(t, rel, "v1/hotswap", "v1", 0o755)
	current := filepath.Join(rel, "current")
	if err := os.Symlink("v1/hotswap", current); err != nil {
		t.Fatal(err)
	}
	p := startPod(t, []string{"--watch", current, "--settle", "200ms", "--release-root", rel, "--preflight", "version"}, current, "serve")
	ld, stopLoad := startLoad(t, p.Addr)

	// A good release: swapped in.
	_, sum2 := release(t, rel, "v2/hotswap", "v2", 0o755)
	mark := p.logLen()
	at := flip(t, current, "v2/hotswap")
	ld.MarkSwap(at)
	s := p.waitStatus(20*time.Second, "v2 serving", func(s hotswap.Status) bool {
		return s.Version == "sha256:"+sum2[:12] && s.Phase == hotswap.PhaseServing
	})
	started := p.waitLog(mark, time.Second, "SwapStarted", eventIs("SwapStarted"))
	t.Logf("LATENCY watch (settle 200ms): symlink flip -> swap start %s, -> serving %s", started.Time.Sub(at).Round(time.Millisecond), s.LastSwap.Duration.Round(time.Millisecond))

	gen := s.Generation
	for _, tc := range []struct {
		name   string
		make   func() string // returns the symlink target
		reason string
	}{
		{"truncated mid-copy", func() string {
			b, _ := os.ReadFile(hotswapBin(t))
			os.MkdirAll(filepath.Join(rel, "v3"), 0o755)
			os.WriteFile(filepath.Join(rel, "v3", "hotswap"), b[:len(b)/2], 0o755)
			return "v3/hotswap"
		}, "truncated"},
		{"wrong architecture", func() string {
			b, _ := os.ReadFile(foreignBin(t))
			os.MkdirAll(filepath.Join(rel, "arm"), 0o755)
			os.WriteFile(filepath.Join(rel, "arm", "hotswap"), b, 0o755)
			return "arm/hotswap"
		}, "build it with GOARCH=" + runtime.GOARCH},
		{"not executable", func() string { release(t, rel, "v4/hotswap", "v4", 0o644); return "v4/hotswap" }, "not executable"},
		{"world-writable", func() string { release(t, rel, "v5/hotswap", "v5", 0o757); return "v5/hotswap" }, "world-writable"},
		{"symlink escaping the root", func() string {
			p, _ := release(t, t.TempDir(), "hotswap", "outside", 0o755)
			return p
		}, "outside the release root"},
		{"script", func() string {
			os.MkdirAll(filepath.Join(rel, "v6"), 0o755)
			os.WriteFile(filepath.Join(rel, "v6", "hotswap"), []byte("#!/bin/sh\nexit 1\n"), 0o755)
			return "v6/hotswap"
		}, "script"},
	} {
		before := serving(t, p, gen)
		at := flip(t, current, tc.make())
		s := p.rejectedAfter(before.LastRejected, tc.reason)
		t.Logf("%s: rejected after %s: %s", tc.name, time.Since(at).Round(time.Millisecond), s.LastRejected.Reason)
		serving(t, p, gen)
	}

	// The truncated copy completes: now it is a good release.
	_, sum3 := release(t, rel, "v3/hotswap", "v3", 0o755)
	flip(t, current, "v3/hotswap")
	s = p.waitStatus(20*time.Second, "v3 serving", func(s hotswap.Status) bool { return s.Version == "sha256:"+sum3[:12] })
	gen = s.Generation

	// The release disappears: nothing happens but a log line.
	mark = p.logLen()
	if err := os.Remove(current); err != nil {
		t.Fatal(err)
	}
	p.waitLog(mark, 5*time.Second, "release gone", msgHas("watched release is gone"))
	time.Sleep(500 * time.Millisecond)
	serving(t, p, gen)
	stopLoad()
}

// TestManifestVolume: a manifest in a ConfigMap volume updated by the
// kubelet's atomic writer.
func TestManifestVolume(t *testing.T) {
	rel := filepath.Join(t.TempDir(), "releases")
	v1, _ := release(t, rel, "v1/hotswap", "v1", 0o755)
	_, sum2 := release(t, rel, "v2/hotswap", "v2", 0o755)
	vol := filepath.Join(t.TempDir(), "config")
	os.MkdirAll(vol, 0o755)
	write := func(manifest string) time.Time {
		t.Helper()
		start := time.Now()
		if _, err := sourcetest.WriteAtomic(vol, map[string]sourcetest.File{"release.yaml": {Data: []byte(manifest)}}); err != nil {
			t.Fatal(err)
		}
		return start
	}
	write("version: v1\nbinary: v1/hotswap\nargs: [serve]\n")
	p := startPod(t, []string{"--manifest", filepath.Join(vol, "release.yaml"), "--release-root", rel, "--release-version", "v1"}, v1, "serve")
	ld, stopLoad := startLoad(t, p.Addr)
	time.Sleep(500 * time.Millisecond)
	s := serving(t, p, 1) // the manifest at start names what already serves: no swap
	if s.Swaps != 0 {
		t.Fatalf("%d swaps at start for the release already serving", s.Swaps)
	}

	mark := p.logLen()
	at := write(fmt.Sprintf("version: v2\nbinary: %s/v2/hotswap\nsha256: %s\nargs: [serve]\nenv: {GREETING: hi}\npreflight: [version]\n", rel, sum2))
	ld.MarkSwap(at)
	s = p.waitStatus(20*time.Second, "v2 serving", func(s hotswap.Status) bool { return s.Version == "v2" && s.Phase == hotswap.PhaseServing })
	started := p.waitLog(mark, time.Second, "SwapStarted", eventIs("SwapStarted"))
	t.Logf("LATENCY manifest on an atomic-writer volume: ..data rename -> swap start %s, -> serving %s", started.Time.Sub(at).Round(time.Millisecond), s.LastSwap.Duration.Round(time.Millisecond))
	gen := s.Generation

	for _, tc := range []struct {
		name, manifest, reason string
	}{
		{"sha256 mismatch", "version: v3\nbinary: v2/hotswap\nsha256: " + sum2[:60] + "0000\nargs: [serve]\n", "sha256"},
		{"manifest naming a missing file", "version: v4\nbinary: v9/hotswap\nargs: [serve]\n", "no such file"},
		{"binary outside the root", "version: v5\nbinary: /bin/true\n", "outside the release root"},
		{"failing preflight", "version: v7\nbinary: v2/hotswap\nargs: [serve]\npreflight: [no-such-subcommand]\n", "`hotswap no-such-subcommand` failed"},
	} {
		before := serving(t, p, gen)
		write(tc.manifest)
		s := p.rejectedAfter(before.LastRejected, tc.reason)
		t.Logf("%s: %s", tc.name, s.LastRejected.Reason)
		serving(t, p, gen)
	}
	for _, tc := range []struct{ name, manifest, log string }{
		{"garbage manifest", "\x00\x01{{{", "not valid YAML"},
		{"unknown field", "version: v6\nbinary: v2/hotswap\nimage: nginx\n", "image: unknown field"},
	} {
		before := serving(t, p, gen)
		mark := p.logLen()
		write(tc.manifest)
		r := p.waitLog(mark, 5*time.Second, tc.name, msgHas(tc.log))
		t.Logf("%s: %s: %s", tc.name, r.Msg, r.Err)
		if s := serving(t, p, gen); s.Swaps != before.Swaps {
			t.Fatalf("%s started a swap", tc.name)
		}
	}

	// 100 rapid updates: coalesced, and the last one wins.
	before := serving(t, p, gen)
	for i := 1; i <= 100; i++ {
		write(fmt.Sprintf("version: rapid-%d\nbinary: v2/hotswap\nargs: [serve]\n", i))
	}
	s = p.waitStatus(30*time.Second, "rapid-100 serving", func(s hotswap.Status) bool {
		return s.Version == "rapid-100" && s.Phase == hotswap.PhaseServing
	})
	time.Sleep(time.Second)
	s = serving(t, p, s.Generation)
	t.Logf("100 rapid manifest updates: %d swaps, rapid-100 serves", s.Swaps-before.Swaps)
	if s.Swaps-before.Swaps > 10 {
		t.Fatalf("100 updates made %d swaps: not coalesced", s.Swaps-before.Swaps)
	}
	stopLoad()
}
