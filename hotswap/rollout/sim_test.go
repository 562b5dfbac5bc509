package rollout

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/hotswap-dev/hotswap/e2e/kubetest"
	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/hotswap/bake"
	"github.com/hotswap-dev/hotswap/hotswap/kube"
	"github.com/hotswap-dev/hotswap/hotswap/kube/core"
	"github.com/hotswap-dev/hotswap/hotswap/source/configmap"
)

var cluster *kubetest.Cluster

func TestMain(m *testing.M) { kubetest.Main(m, &cluster) }

// The simulated fleet. No kubelet runs in kubetest, so each pod is played
// by this test: the pod object is real, its release comes from the real
// ConfigMap source (the informer and canary choice every hotswap pod runs)
// and it reports through the real kube.Reporter (the very annotations,
// condition and events a pod patches). Only the swap itself and the
// kubelet's part (Ready, restarts) are simulated, by behaviour per version.

// behaviour is what a simulated pod does with a release of one version.
type behaviour struct {
	reject     string        // verification refuses it with this reason
	unreadyIn  time.Duration // the kubelet's readiness probe fails this long after takeover
	crashIn    time.Duration // the container restarts this long after takeover
	rollbackIn time.Duration // the pod's own bake rolls back this long after takeover
}

type fleetSim struct {
	t         testing.TB
	ns, cm    string
	selector  string
	behaviour map[string]behaviour
	swapTime  time.Duration

	mu    sync.Mutex
	pods  map[string]*simPod
	seq   int
	inFly atomic.Int64 // pods between offer and reporting the new version
	maxIn atomic.Int64
}

type simPod struct {
	f      *fleetSim
	name   string
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	gen     int
	version string
	served  []string // every version this pod served, in order
	swaps   int
	rep     *kube.Reporter
	swapID  uint64
	timers  []*time.Timer
}

func newFleet(t testing.TB, stable string, n int) *fleetSim {
	t.Helper()
	ns := strings.ToLower(regexp.MustCompile(`[^a-zA-Z0-9]+`).ReplaceAllString(t.Name(), "-"))
	if len(ns) > 50 {
		ns = ns[:50]
	}
	ns = strings.Trim(ns, "-")
	if err := cluster.CreateNamespace(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	f := &fleetSim{t: t, ns: ns, cm: "web-release", selector: "app=web", behaviour: map[string]behaviour{},
		swapTime: 100 * time.Millisecond, pods: map[string]*simPod{}}
	_, err := cluster.Client().CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: f.cm},
		Data:       map[string]string{DefaultKey: manifest(stable)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		f.addPod()
	}
	t.Cleanup(func() {
		f.mu.Lock()
		pods := f.pods
		f.pods = map[string]*simPod{}
		f.mu.Unlock()
		for _, p := range pods {
			p.stop()
		}
	})
	f.waitAll(t, stable, 30*time.Second+time.Duration(n)*100*time.Millisecond)
	return f
}

func manifest(v string) string {
	return fmt.Sprintf("version: %s\nbinary: /releases/%s/server\n", v, v)
}

// addPod creates a pod as a ReplicaSet would and starts playing it.
func (f *fleetSim) addPod() string {
	f.mu.Lock()
	f.seq++
	name := fmt.Sprintf("web-%03d", f.seq)
	f.mu.Unlock()
	ctx := context.Background()
	pods := cluster.Client().CoreV1().Pods(f.ns)
	_, err := pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "hotswap.invalid/app:test"}},
			ReadinessGates: []corev1.PodReadinessGate{{ConditionType: kube.ConditionReady}}},
	}, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	// The kubelet's part: running, Ready, one container, no restart.
	f.kubelet(name, true, 0, nil)
	p := &simPod{f: f, name: name, done: make(chan struct{})}
	rep, err := kube.New(kube.Config{Mode: kube.ModeOn, REST: cluster.Admin(), PodName: name, PodNamespace: f.ns,
		RetryBase: 50 * time.Millisecond, RetryMax: time.Second}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		f.t.Fatal(err)
	}
	p.rep = rep
	src, err := configmap.New(configmap.Options{Namespace: f.ns, Name: f.cm, REST: cluster.Admin(), PodName: name,
		Root: "/releases", Base: hotswap.Release{Path: "/app/server"}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	var wg sync.WaitGroup
	wg.Go(func() { _ = rep.Run(rctx) })
	wg.Go(func() { src.Run(rctx, p) })
	go func() { wg.Wait(); close(p.done) }()
	f.mu.Lock()
	f.pods[name] = p
	f.mu.Unlock()
	return name
}

// kubelet sets what the kubelet reports: Ready, restarts, the last exit.
func (f *fleetSim) kubelet(name string, ready bool, restarts int32, lastExit *time.Time) {
	st := "False"
	if ready {
		st = "True"
	}
	cs := map[string]any{"name": "app", "ready": ready, "restartCount": restarts, "image": "x", "imageID": "", "state": map[string]any{"running": map[string]any{}}}
	if lastExit != nil {
		cs["lastState"] = map[string]any{"terminated": map[string]any{"exitCode": 2, "reason": "Error", "finishedAt": lastExit.UTC().Format(time.RFC3339)}}
	}
	body := mustJSON(map[string]any{"status": map[string]any{
		"phase":             "Running",
		"conditions":        []map[string]any{{"type": "Ready", "status": st}},
		"containerStatuses": []any{cs},
	}})
	_, err := cluster.Client().CoreV1().Pods(f.ns).Patch(context.Background(), name, types.StrategicMergePatchType, body, metav1.PatchOptions{}, "status")
	if err != nil && f.t.Context().Err() == nil {
		f.t.Errorf("kubelet patch %s: %v", name, err)
	}
}

func (f *fleetSim) deletePod(name string) {
	f.mu.Lock()
	p := f.pods[name]
	delete(f.pods, name)
	f.mu.Unlock()
	p.stop()
	if err := cluster.Client().CoreV1().Pods(f.ns).Delete(context.Background(), name, *metav1.NewDeleteOptions(0)); err != nil {
		f.t.Fatal(err)
	}
}

func (p *simPod) stop() {
	p.cancel()
	<-p.done
	p.mu.Lock()
	for _, t := range p.timers {
		t.Stop()
	}
	p.mu.Unlock()
}

// Offer is the engine's side: swap to r, as the behaviour of its version says.
func (p *simPod) Offer(r hotswap.Release) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.Version == p.version {
		return
	}
	b := p.f.behaviour[r.Version]
	p.swapID++
	now := time.Now()
	res := &hotswap.SwapResult{ID: p.swapID, Trigger: "source:" + r.Source, Started: now, FromVersion: p.version, ToVersion: r.Version, FromGen: p.gen}
	if p.gen == 0 { // the first release from the ConfigMap at start
		p.gen, p.version = 1, r.Version
		p.served = append(p.served, r.Version)
		p.rep.Observe(hotswap.Event{Type: hotswap.StatusChanged, Time: now, Status: p.status(nil, nil)})
		return
	}
	if b.reject != "" {
		res.Result, res.Reason = hotswap.ResultRejected, b.reject
		p.rep.Observe(hotswap.Event{Type: hotswap.ReleaseRejected, Time: now, Warning: true, Message: b.reject, Status: p.status(nil, res)})
		return
	}
	n := p.f.inFly.Add(1)
	for m := p.f.maxIn.Load(); n > m && !p.f.maxIn.CompareAndSwap(m, n); m = p.f.maxIn.Load() {
	}
	p.rep.Observe(hotswap.Event{Type: hotswap.SwapStarted, Time: now, Status: hotswap.Status{Phase: hotswap.PhaseSwapping, Generation: p.gen, Version: p.version}})
	time.Sleep(p.f.swapTime) // the new generation starts and becomes ready
	from := p.version
	p.gen++
	p.version = r.Version
	p.swaps++
	p.served = append(p.served, r.Version)
	res.Result, res.ToGen, res.Duration = hotswap.ResultSucceeded, p.gen, p.f.swapTime
	p.rep.Observe(hotswap.Event{Type: hotswap.SwapSucceeded, Time: time.Now(), Status: p.status(res, nil)})
	p.f.inFly.Add(-1)
	gen := p.gen
	after := func(d time.Duration, f func()) {
		if d > 0 {
			p.timers = append(p.timers, time.AfterFunc(d, func() {
				p.mu.Lock()
				still := p.gen == gen
				p.mu.Unlock()
				if still {
					f()
				}
			}))
		}
	}
	after(b.unreadyIn, func() { p.f.kubelet(p.name, false, 0, nil) })
	after(b.crashIn, func() { t := time.Now(); p.f.kubelet(p.name, true, 1, &t) })
	after(b.rollbackIn, func() {
		p.mu.Lock()
		p.gen++
		p.version = from
		p.served = append(p.served, from)
		p.rep.Observe(hotswap.Event{Type: hotswap.SwapFailed, Time: time.Now(), Warning: true, Status: p.status(res, nil)})
		p.rep.ReportBake(bake.Result{Version: r.Version, Generation: gen, Result: bake.RolledBack, Reason: "health check failed", Since: now})
		p.mu.Unlock()
	})
}

func (p *simPod) status(last, rejected *hotswap.SwapResult) hotswap.Status {
	return hotswap.Status{Phase: hotswap.PhaseServing, Generation: p.gen, Version: p.version, LastSwap: last, LastRejected: rejected, Swaps: uint64(p.swaps)}
}

// waitAll waits until every pod reports version v in its annotation, Ready.
func (f *fleetSim) waitAll(t testing.TB, v string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		list, err := cluster.Client().CoreV1().Pods(f.ns).List(context.Background(), metav1.ListOptions{LabelSelector: f.selector})
		if err != nil {
			t.Fatal(err)
		}
		last = ""
		for i := range list.Items {
			p := ReadPod(corePod(t, &list.Items[i]))
			if !p.Terminating && (p.Version != v || !p.HotswapReady) {
				last += fmt.Sprintf(" %s=%s/%v", p.Name, p.Version, p.HotswapReady)
			}
		}
		if last == "" {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("pods not all on %s within %s:%s", v, within, last)
}

// served returns, per pod, the versions it served.
func (f *fleetSim) served() map[string][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]string{}
	for n, p := range f.pods {
		p.mu.Lock()
		out[n] = append([]string(nil), p.served...)
		p.mu.Unlock()
	}
	return out
}

func (f *fleetSim) driver(t testing.TB, mod func(*Options)) *Driver {
	t.Helper()
	o := Options{REST: cluster.Admin(), Namespace: f.ns, ConfigMap: f.cm, Interval: 100 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))}
	if mod != nil {
		mod(&o)
	}
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// events returns the reasons of the events on the ConfigMap, oldest first.
func (f *fleetSim) events(t *testing.T) []string {
	t.Helper()
	list, err := cluster.Client().CoreV1().Events(f.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range list.Items {
		if e.InvolvedObject.Kind == "ConfigMap" {
			out = append(out, e.Reason)
		}
	}
	return out
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// corePod converts a clientset pod into the subset the driver reads, as the
// apiserver's JSON would decode into it.
func corePod(t testing.TB, p *corev1.Pod) *core.Pod {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	out := &core.Pod{}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	return out
}
