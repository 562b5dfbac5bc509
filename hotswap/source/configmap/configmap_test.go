package configmap

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/hotswap-dev/hotswap/e2e/kubetest"
	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/hotswap/source"
)

var cluster *kubetest.Cluster

func TestMain(m *testing.M) { kubetest.Main(m, &cluster) }

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

// waitLog waits until the log holds s.
func (l *logBuf) wait(t *testing.T, s string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if strings.Contains(l.String(), s) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("log does not say %q within %s:\n%s", s, within, l)
}

type offers struct{ ch chan hotswap.Release }

func (o offers) Offer(r hotswap.Release) { o.ch <- r }

func (o offers) next(t *testing.T, within time.Duration) hotswap.Release {
	t.Helper()
	select {
	case r := <-o.ch:
		return r
	case <-time.After(within):
		t.Fatalf("no release offered within %s", within)
	}
	return hotswap.Release{}
}

func (o offers) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case r := <-o.ch:
		t.Fatalf("unexpected offer %+v", r)
	case <-time.After(d):
	}
}

func namespace(t *testing.T) string {
	t.Helper()
	ns := strings.ToLower(strings.NewReplacer("_", "-", "/", "-").Replace(t.Name()))
	if len(ns) > 50 {
		ns = ns[:50]
	}
	if err := cluster.CreateNamespace(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns
}

func run(t *testing.T, cfg *rest.Config, ns, name string) (offers, *logBuf) {
	t.Helper()
	return runPod(t, cfg, ns, name, "")
}

// runPod runs the source as pod would (its $POD_NAME).
func runPod(t *testing.T, cfg *rest.Config, ns, name, pod string) (offers, *logBuf) {
	t.Helper()
	lb := &logBuf{}
	src, err := New(Options{Namespace: ns, Name: name, REST: cfg, Root: "/releases", SyncTimeout: 2 * time.Second, PodName: pod,
		Base: hotswap.Release{Path: "/app/server", Args: []string{"serve"}},
		Log:  slog.New(slog.NewTextHandler(lb, nil))})
	if err != nil {
		t.Fatal(err)
	}
	o := offers{ch: make(chan hotswap.Release, 1000)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); src.Run(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("source log:\n%s", lb)
		}
	})
	return o, lb
}

func manifest(v string) map[string]string {
	return map[string]string{DefaultKey: fmt.Sprintf("version: %s\nbinary: %s/server\n", v, v)}
}

func apply(t *testing.T, ns, name string, data map[string]string) time.Time {
	t.Helper()
	cms := cluster.Client().CoreV1().ConfigMaps(ns)
	ctx := context.Background()
	start := time.Now()
	cm, err := cms.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data}, metav1.CreateOptions{})
	} else {
		cm.Data = data
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
	return start
}

// TestConfigMapLifecycle: create, update, unrelated changes, garbage, a
// missing key, delete and re-create — against a real apiserver.
func TestConfigMapLifecycle(t *testing.T) {
	ns := namespace(t)
	// A ConfigMap of the same namespace with another name is never seen.
	apply(t, ns, "other", manifest("v9"))
	o, lb := run(t, cluster.Admin(), ns, "release")
	o.none(t, 500*time.Millisecond)

	apply(t, ns, "release", manifest("v1"))
	r := o.next(t, 5*time.Second)
	if r.Version != "v1" || r.Path != "/releases/v1/server" || r.Source != "configmap:"+ns+"/release" || len(r.Args) != 1 {
		t.Fatalf("offered %+v", r)
	}
	at := apply(t, ns, "release", manifest("v2"))
	if r := o.next(t, 5*time.Second); r.Version != "v2" {
		t.Fatalf("offered %+v", r)
	}
	t.Logf("LATENCY configmap update -> offer: %s", time.Since(at).Round(time.Millisecond))

	// Another key changes: same manifest, nothing offered.
	d := manifest("v2")
	d["other.txt"] = "x"
	apply(t, ns, "release", d)
	o.none(t, 500*time.Millisecond)

	apply(t, ns, "release", map[string]string{DefaultKey: "version: v3\nbinary: /b\nimage: x\n"})
	lb.wait(t, "image: unknown field", 5*time.Second)
	apply(t, ns, "release", map[string]string{"wrong-key.yaml": "version: v3\n"})
	lb.wait(t, "has no release key", 5*time.Second)
	o.none(t, 300*time.Millisecond)

	if err := cluster.Client().CoreV1().ConfigMaps(ns).Delete(context.Background(), "release", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	lb.wait(t, "the ConfigMap was deleted", 5*time.Second)
	o.none(t, 300*time.Millisecond)
	apply(t, ns, "release", manifest("v2"))
	if r := o.next(t, 5*time.Second); r.Version != "v2" {
		t.Fatalf("after re-create offered %+v", r)
	}
}

// TestConfigMapRapidUpdates: 100 updates back to back; the last one wins.
func TestConfigMapRapidUpdates(t *testing.T) {
	ns := namespace(t)
	apply(t, ns, "release", manifest("v0"))
	o, _ := run(t, cluster.Admin(), ns, "release")
	o.next(t, 5*time.Second)
	for i := 1; i <= 100; i++ {
		apply(t, ns, "release", manifest(fmt.Sprintf("v%d", i)))
	}
	var last hotswap.Release
	n := 0
	for quiet := false; !quiet; {
		select {
		case last = <-o.ch:
			n++
		case <-time.After(2 * time.Second):
			quiet = true
		}
	}
	t.Logf("100 updates: %d offers (the engine coalesces them)", n)
	if last.Version != "v100" {
		t.Fatalf("last offer %q, want v100", last.Version)
	}
}

// TestConfigMapForbiddenThenGranted: without RBAC the source says what is
// missing and keeps trying; granting exactly RequiredRules makes it work.
func TestConfigMapForbiddenThenGranted(t *testing.T) {
	ns := namespace(t)
	ctx := context.Background()
	if err := cluster.CreateServiceAccount(ctx, ns, "hotswap"); err != nil {
		t.Fatal(err)
	}
	cfg, err := cluster.SAConfig(ctx, ns, "hotswap")
	if err != nil {
		t.Fatal(err)
	}
	apply(t, ns, "release", manifest("v1"))
	o, lb := run(t, cfg, ns, "release")
	lb.wait(t, "give the pod's service account get, list and watch on configmaps", 10*time.Second)
	lb.wait(t, "cannot read the ConfigMap yet; serving goes on", 10*time.Second)
	o.none(t, 200*time.Millisecond)

	var rules []rbacv1.PolicyRule
	for _, r := range RequiredRules() {
		rules = append(rules, rbacv1.PolicyRule{APIGroups: r.APIGroups, Resources: r.Resources, Verbs: r.Verbs})
	}
	granted := time.Now()
	if err := cluster.ApplyRole(ctx, ns, "hotswap-sources", rules, "hotswap"); err != nil {
		t.Fatal(err)
	}
	// The reflector retries with backoff (up to 30 s between attempts).
	if r := o.next(t, 60*time.Second); r.Version != "v1" {
		t.Fatalf("offered %+v", r)
	}
	t.Logf("offered %s after the grant", time.Since(granted).Round(time.Millisecond))
	apply(t, ns, "release", manifest("v2")) // and the watch works with these rules
	if r := o.next(t, 5*time.Second); r.Version != "v2" {
		t.Fatalf("offered %+v", r)
	}
}

// TestNoAPIServer: nothing listens; the source says so and Run returns
// when its context ends.
func TestNoAPIServer(t *testing.T) {
	cfg := &rest.Config{Host: "https://127.0.0.1:1", TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
	_, lb := run(t, cfg, "default", "release")
	lb.wait(t, "cannot list/watch the ConfigMap", 10*time.Second)
	lb.wait(t, "serving goes on", 10*time.Second)
}

func TestParseRef(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "podns")
	for _, tc := range []struct{ in, ns, name, err string }{
		{"release", "podns", "release", ""},
		{"prod/release", "prod", "release", ""},
		{"Bad", "", "", "not a valid ConfigMap name"},
		{"a/b/c", "", "", "not a valid ConfigMap name"},
		{"NS/x", "", "", "namespace"},
	} {
		ns, name, err := ParseRef(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: want error %q, got %v", tc.in, tc.err, err)
			}
			continue
		}
		if err != nil || ns != tc.ns || name != tc.name {
			t.Errorf("%q: got %s/%s %v", tc.in, ns, name, err)
		}
	}
	if err := CheckKey("bad key"); err == nil {
		t.Error("bad key accepted")
	}
}

var benchRuns int

// BenchmarkConfigMapLatency: from the start of a ConfigMap update to the
// offer of its release, through the real apiserver's watch.
func BenchmarkConfigMapLatency(b *testing.B) {
	// The framework calls a benchmark more than once (b.N = 1, then more):
	// each call gets its own namespace.
	benchRuns++
	ns := fmt.Sprintf("bench-latency-%d", benchRuns)
	if err := cluster.CreateNamespace(context.Background(), ns); err != nil {
		b.Fatal(err)
	}
	cms := cluster.Client().CoreV1().ConfigMaps(ns)
	ctx := context.Background()
	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "release"}, Data: manifest("v0")}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	src, err := New(Options{Namespace: ns, Name: "release", REST: cluster.Admin(), Root: "/r", Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	ch := make(chan hotswap.Release, 16)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go src.Run(rctx, source.OffererFunc(func(r hotswap.Release) { ch <- r }))
	<-ch
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cm.Data = manifest(fmt.Sprintf("v%d", i+1))
		start := time.Now()
		if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
		<-ch
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/offer")
}
