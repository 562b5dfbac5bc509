package source

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/hotswap/source/sourcetest"
)

func startManifest(t *testing.T, opts ManifestOptions) (*recorder, *logBuf) {
	t.Helper()
	log, lb := testLog(t)
	opts.Log = log
	m, err := NewManifestFile(opts)
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx, rec) }()
	t.Cleanup(func() { cancel(); <-done })
	return rec, lb
}

func publish(t *testing.T, dir, manifest string) {
	t.Helper()
	if _, err := sourcetest.WriteAtomic(dir, map[string]sourcetest.File{"release.yaml": {Data: []byte(manifest)}}); err != nil {
		t.Fatal(err)
	}
}

// TestManifestAtomicWriter: a manifest in a ConfigMap volume, updated the
// way the kubelet does it; garbage and unknown fields are refused in the log
// and the next good manifest is offered.
func TestManifestAtomicWriter(t *testing.T) {
	dir := t.TempDir()
	publish(t, dir, "version: v1\nbinary: /releases/v1/server\n")
	base := hotswap.Release{Path: "/app/server", Args: []string{"serve"}}
	rec, lb := startManifest(t, ManifestOptions{Path: filepath.Join(dir, "release.yaml"), Base: base, Root: "/releases"})
	r := rec.next(t, 5*time.Second) // the manifest at start is offered: the engine dedupes
	if r.Version != "v1" || r.Path != "/releases/v1/server" || !slices.Equal(r.Args, base.Args) {
		t.Fatalf("offered %+v", r)
	}

	publish(t, dir, "version: v2\nbinary: v2/server\nsha256: "+goodSum+"\nargs: [serve, --version, v2]\nenv: {A: b}\npreflight: --version\n")
	r = rec.next(t, 5*time.Second)
	want := hotswap.Release{Version: "v2", Path: "/releases/v2/server", SHA256: goodSum, Args: []string{"serve", "--version", "v2"},
		Env: []string{"A=b"}, Preflight: []string{"--version"}, Source: "manifest:" + filepath.Join(dir, "release.yaml")}
	if !r.Same(want) || !slices.Equal(r.Preflight, want.Preflight) || r.Source != want.Source {
		t.Fatalf("offered %+v\nwant %+v", r, want)
	}

	publish(t, dir, "{{{ not yaml")
	rec.none(t, 500*time.Millisecond)
	publish(t, dir, "version: v3\nbinary: /releases/v3/server\nimage: nginx\n")
	rec.none(t, 500*time.Millisecond)
	for _, s := range []string{"not valid YAML", "image: unknown field"} {
		if !strings.Contains(lb.String(), s) {
			t.Fatalf("log does not say %q:\n%s", s, lb)
		}
	}
	// The kubelet removes a deleted key's link; the source says so and waits.
	if _, err := sourcetest.WriteAtomic(dir, map[string]sourcetest.File{"other": {Data: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	rec.none(t, 500*time.Millisecond)
	if !strings.Contains(lb.String(), "release manifest is gone") {
		t.Fatalf("deletion not reported:\n%s", lb)
	}
	publish(t, dir, "version: v3\nbinary: /releases/v3/server\n")
	if r := rec.next(t, 5*time.Second); r.Version != "v3" {
		t.Fatalf("offered %+v", r)
	}
}

// TestManifestEditedInPlace: a plain file rewritten by an editor.
func TestManifestEditedInPlace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "release.yaml")
	rec, _ := startManifest(t, ManifestOptions{Path: path})
	rec.none(t, 300*time.Millisecond)
	for i := 1; i <= 3; i++ {
		if err := os.WriteFile(path, fmt.Appendf(nil, "version: v%d\nbinary: /r/v%d\n", i, i), 0o644); err != nil {
			t.Fatal(err)
		}
		if r := rec.next(t, 5*time.Second); r.Version != fmt.Sprintf("v%d", i) {
			t.Fatalf("offered %+v", r)
		}
	}
}

// BenchmarkManifestLatency measures from the kubelet's ..data rename (the
// atomic writer's last step that readers can see) to the offer.
func BenchmarkManifestLatency(b *testing.B) {
	dir := b.TempDir()
	sourcetest.WriteAtomic(dir, map[string]sourcetest.File{"release.yaml": {Data: []byte("version: v0\nbinary: /r/v0\n")}})
	m, err := NewManifestFile(ManifestOptions{Path: filepath.Join(dir, "release.yaml"), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	ch := make(chan hotswap.Release, 16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Run(ctx, OffererFunc(func(r hotswap.Release) { ch <- r }))
	<-ch
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := sourcetest.WriteAtomic(dir, map[string]sourcetest.File{"release.yaml": {Data: fmt.Appendf(nil, "version: v%d\nbinary: /r/v%d\n", i+1, i+1)}}); err != nil {
			b.Fatal(err)
		}
		<-ch
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/offer")
}
