package source

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/hotswap/source/sourcetest"
)

// recorder is an Offerer that keeps what it was offered, with the time.
type recorder struct {
	mu     sync.Mutex
	offers []hotswap.Release
	times  []time.Time
	ch     chan hotswap.Release
}

func newRecorder() *recorder { return &recorder{ch: make(chan hotswap.Release, 1000)} }

func (r *recorder) Offer(rel hotswap.Release) {
	r.mu.Lock()
	r.offers = append(r.offers, rel)
	r.times = append(r.times, time.Now())
	r.mu.Unlock()
	r.ch <- rel
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.offers)
}

// next waits for the next offer.
func (r *recorder) next(t *testing.T, within time.Duration) hotswap.Release {
	t.Helper()
	select {
	case rel := <-r.ch:
		return rel
	case <-time.After(within):
		t.Fatalf("no release offered within %s", within)
	}
	return hotswap.Release{}
}

// none checks that nothing is offered for d.
func (r *recorder) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case rel := <-r.ch:
		t.Fatalf("unexpected offer: %+v", rel)
	case <-time.After(d):
	}
}

// logBuf is a concurrency-safe log sink.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testLog(t *testing.T) (*slog.Logger, *logBuf) {
	lb := &logBuf{}
	w := io.MultiWriter(lb, testWriter{t})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	if testing.Verbose() {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// blob is random content and its sha256.
func blob(t *testing.T, n int) ([]byte, string) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return b, hex.EncodeToString(s[:])
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// replace writes b beside path and renames it into place.
func replace(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, b)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// flip points the symlink at path to target the way ln -sfn does: a new
// link beside it renamed over it.
func flip(t *testing.T, path, target string) {
	t.Helper()
	tmp := path + ".new"
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

const testSettle = 150 * time.Millisecond

func startWatch(t *testing.T, opts WatchOptions) (*recorder, *logBuf) {
	t.Helper()
	log, lb := testLog(t)
	opts.Log = log
	if opts.Settle == 0 {
		opts.Settle = testSettle
	}
	w, err := NewWatch(opts)
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx, rec) }()
	t.Cleanup(func() { cancel(); <-done })
	return rec, lb
}

func TestWatchSymlinkFlip(t *testing.T) {
	dir := t.TempDir()
	v1, sum1 := blob(t, 1<<20)
	v2, sum2 := blob(t, 1<<20)
	writeFile(t, filepath.Join(dir, "v1", "server"), v1)
	writeFile(t, filepath.Join(dir, "v2", "server"), v2)
	current := filepath.Join(dir, "current")
	if err := os.Symlink("v1/server", current); err != nil {
		t.Fatal(err)
	}
	// The command line runs the watched path: nothing to offer at start.
	base := hotswap.Release{Path: current, Args: []string{"serve"}, Source: "command line"}
	rec, _ := startWatch(t, WatchOptions{Path: current, Base: base})
	rec.none(t, 3*testSettle)

	flip(t, current, "v2/server")
	r := rec.next(t, 5*time.Second)
	realDir, _ := filepath.EvalSymlinks(dir)
	if r.Path != filepath.Join(realDir, "v2", "server") || r.SHA256 != sum2 || r.Version != "sha256:"+sum2[:12] ||
		r.Source != "watch:"+current || len(r.Args) != 1 || r.Args[0] != "serve" {
		t.Fatalf("offered %+v", r)
	}
	flip(t, current, "v1/server") // rollback by hand
	if r := rec.next(t, 5*time.Second); r.SHA256 != sum1 {
		t.Fatalf("offered %+v, want v1", r)
	}
	// A flip to the same content is not a new release.
	writeFile(t, filepath.Join(dir, "v1copy", "server"), v1)
	flip(t, current, "v1copy/server")
	rec.none(t, 3*testSettle)
}

func TestWatchOffersAtStartWhenDifferent(t *testing.T) {
	dir := t.TempDir()
	img, _ := blob(t, 1000)
	vol, sum := blob(t, 1000)
	writeFile(t, filepath.Join(dir, "image", "server"), img)
	writeFile(t, filepath.Join(dir, "vol", "server"), vol)
	rec, _ := startWatch(t, WatchOptions{Path: filepath.Join(dir, "vol", "server"), Base: hotswap.Release{Path: filepath.Join(dir, "image", "server")}})
	if r := rec.next(t, 5*time.Second); r.SHA256 != sum {
		t.Fatalf("offered %+v", r)
	}
}

// TestWatchCopyInProgress writes a binary in place, slowly, with pauses
// shorter than the settle interval: it is offered once, complete.
func TestWatchCopyInProgress(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "server")
	rec, _ := startWatch(t, WatchOptions{Path: path, Settle: 400 * time.Millisecond})
	rec.none(t, 500*time.Millisecond) // nothing there yet

	content, sum := blob(t, 4<<20)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	const chunks = 16
	step := len(content) / chunks
	for i := 0; i < chunks; i++ {
		if _, err := f.Write(content[i*step : (i+1)*step]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.Close()
	r := rec.next(t, 5*time.Second)
	if r.SHA256 != sum {
		t.Fatalf("offered a partial file: %+v", r)
	}
	rec.none(t, time.Second)
}

// TestWatchTruncatedCopyStalls: a copy that stalls longer than the settle
// interval is offered as it is (the verifier refuses a truncated binary);
// when the copy completes, the complete file is offered.
func TestWatchTruncatedCopyStalls(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "server")
	rec, _ := startWatch(t, WatchOptions{Path: path})
	content, sum := blob(t, 1<<20)
	writeFile(t, path, content[:len(content)/2])
	half := sha256.Sum256(content[:len(content)/2])
	if r := rec.next(t, 5*time.Second); r.SHA256 != hex.EncodeToString(half[:]) {
		t.Fatalf("offered %+v", r)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(content[len(content)/2:])
	f.Close()
	if r := rec.next(t, 5*time.Second); r.SHA256 != sum {
		t.Fatalf("offered %+v", r)
	}
}

func TestWatchRenameIntoPlaceAndDelete(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "server")
	v1, sum1 := blob(t, 1000)
	writeFile(t, path, v1)
	rec, lb := startWatch(t, WatchOptions{Path: path, Base: hotswap.Release{Path: path}})
	rec.none(t, 3*testSettle)

	v2, sum2 := blob(t, 1000)
	replace(t, path, v2)
	if r := rec.next(t, 5*time.Second); r.SHA256 != sum2 {
		t.Fatalf("offered %+v", r)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	rec.none(t, 4*testSettle)
	if !strings.Contains(lb.String(), "watched release is gone") {
		t.Fatalf("deletion not reported:\n%s", lb)
	}
	replace(t, path, v1) // back: a release different from the last offered
	if r := rec.next(t, 5*time.Second); r.SHA256 != sum1 {
		t.Fatalf("offered %+v", r)
	}
}

// TestWatchInPlaceRewriteOfTarget: current -> v2/server, and v2/server is
// rewritten in place: the target's directory is watched too.
func TestWatchInPlaceRewriteOfTarget(t *testing.T) {
	dir := t.TempDir()
	v1, _ := blob(t, 1000)
	writeFile(t, filepath.Join(dir, "releases", "v2", "server"), v1)
	current := filepath.Join(dir, "current")
	if err := os.Symlink(filepath.Join(dir, "releases", "v2", "server"), current); err != nil {
		t.Fatal(err)
	}
	rec, _ := startWatch(t, WatchOptions{Path: current, Base: hotswap.Release{Path: current}})
	rec.none(t, 3*testSettle)
	v2, sum2 := blob(t, 2000)
	writeFile(t, filepath.Join(dir, "releases", "v2", "server"), v2)
	if r := rec.next(t, 5*time.Second); r.SHA256 != sum2 {
		t.Fatalf("offered %+v", r)
	}
}

// TestWatchAtomicWriter: a binary delivered in a ConfigMap/Secret volume,
// updated by the kubelet's atomic writer.
func TestWatchAtomicWriter(t *testing.T) {
	dir := t.TempDir()
	v1, _ := blob(t, 1000)
	if _, err := sourcetest.WriteAtomic(dir, map[string]sourcetest.File{"server": {Data: v1, Mode: 0o755}}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "server")
	rec, _ := startWatch(t, WatchOptions{Path: path, Base: hotswap.Release{Path: path}})
	rec.none(t, 3*testSettle)
	for i := 0; i < 3; i++ {
		v, sum := blob(t, 1000)
		ts, err := sourcetest.WriteAtomic(dir, map[string]sourcetest.File{"server": {Data: v, Mode: 0o755}, "other": {Data: []byte("x")}})
		if err != nil {
			t.Fatal(err)
		}
		r := rec.next(t, 5*time.Second)
		realTs, _ := filepath.EvalSymlinks(ts)
		if r.SHA256 != sum || r.Path != filepath.Join(realTs, "server") {
			t.Fatalf("update %d: offered %+v, want the file in %s", i, r, ts)
		}
	}
	// Same payload again: the kubelet writes nothing, nothing is offered.
	ents, _ := os.ReadDir(dir)
	if n := countTs(ents); n != 1 {
		t.Fatalf("%d timestamped directories left; the writer must remove the old one", n)
	}
	rec.none(t, 3*testSettle)
}

func countTs(ents []os.DirEntry) int {
	n := 0
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), "..2") {
			n++
		}
	}
	return n
}

// TestWatchRapidUpdates: 100 releases renamed into place back to back are
// coalesced into a few offers, and the last one wins.
func TestWatchRapidUpdates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "server")
	v0, _ := blob(t, 4096)
	writeFile(t, path, v0)
	rec, _ := startWatch(t, WatchOptions{Path: path, Base: hotswap.Release{Path: path}})
	rec.none(t, 3*testSettle)
	var last string
	for i := 0; i < 100; i++ {
		b, sum := blob(t, 4096)
		replace(t, path, b)
		last = sum
		time.Sleep(time.Millisecond)
	}
	// Offers come only when the file stood still for the settle interval:
	// one, unless the writer itself paused that long (a loaded machine).
	r := rec.next(t, 5*time.Second)
	for quiet := false; !quiet; {
		select {
		case r = <-rec.ch:
		case <-time.After(4 * testSettle):
			quiet = true
		}
	}
	if r.SHA256 != last {
		t.Fatalf("last offer %s, want the last release %s", r.SHA256, last)
	}
	n := rec.count()
	t.Logf("%d offers for 100 updates", n)
	if n > 5 {
		t.Fatalf("%d offers for 100 updates: not coalesced", n)
	}
}

func TestNewWatchErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		opts WatchOptions
		want string
	}{
		{WatchOptions{}, "no path"},
		{WatchOptions{Path: "/nonexistent/dir/server"}, "mount the volume"},
		{WatchOptions{Path: dir}, "is a directory"},
		{WatchOptions{Path: filepath.Join(dir, "x"), Settle: -time.Second}, "negative"},
	} {
		_, err := NewWatch(tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: want %q, got %v", tc.opts, tc.want, err)
		}
	}
}

// BenchmarkWatchLatency measures from a rename into place to the offer, for
// the default settle interval and a short one. The settle interval is the
// floor; the rest is inotify, stat and sha256 of the file.
func BenchmarkWatchLatency(b *testing.B) {
	for _, settle := range []time.Duration{DefaultSettle, 100 * time.Millisecond, 10 * time.Millisecond} {
		for _, size := range []int{1 << 20, 32 << 20} {
			b.Run(fmt.Sprintf("settle=%s/size=%dMiB", settle, size>>20), func(b *testing.B) {
				dir := b.TempDir()
				path := filepath.Join(dir, "server")
				w, err := NewWatch(WatchOptions{Path: path, Settle: settle, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
				if err != nil {
					b.Fatal(err)
				}
				ch := make(chan hotswap.Release, 16)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				go w.Run(ctx, OffererFunc(func(r hotswap.Release) { ch <- r }))
				buf := make([]byte, size)
				var total time.Duration
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					rand.Read(buf[:64])
					tmp := path + ".tmp"
					if err := os.WriteFile(tmp, buf, 0o755); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					start := time.Now()
					if err := os.Rename(tmp, path); err != nil {
						b.Fatal(err)
					}
					<-ch
					total += time.Since(start)
				}
				b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/offer")
			})
		}
	}
}
