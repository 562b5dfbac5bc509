package kube_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/hotswap-dev/hotswap/e2e/testbin"
	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/hotswap/kube"
)

// BenchmarkObserveToAnnotationVisible measures one swap's time from the
// SwapSucceeded Observe to a watcher on the apiserver seeing the new
// version annotation, and the patches each swap costs.
func BenchmarkObserveToAnnotationVisible(b *testing.B) {
	e := newEnv(b, kube.RequiredRules())
	r := e.start(b)
	g := &engine{obs: r}
	g.serveFirst("v0")
	if err := waitFor(10*time.Second, func() error { return e.reported(1, "v0", hotswap.PhaseServing, corev1.ConditionTrue) }); err != nil {
		b.Fatal(err)
	}
	w, err := cluster.Client().CoreV1().Pods(e.ns).Watch(context.Background(), metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", e.pod).String(),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	before := r.Stats().Patches
	var total time.Duration
	i := 0
	for b.Loop() {
		i++
		version := fmt.Sprintf("v%d", i)
		g.st.Swaps++
		g.st.Phase = hotswap.PhaseSwapping
		g.emit(hotswap.SwapStarted, false, "swap to "+version)
		g.st.Phase, g.st.Generation, g.st.Version = hotswap.PhaseServing, g.st.Generation+1, version
		t0 := time.Now()
		g.emit(hotswap.SwapSucceeded, false, "serving "+version)
		waitWatch(b, w, version)
		total += time.Since(t0)
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(i), "ms-to-visible/swap")
	b.ReportMetric(float64(r.Stats().Patches-before)/float64(i), "patches/swap")
}

func waitWatch(b *testing.B, w watch.Interface, version string) {
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-w.ResultChan():
			if p, ok := ev.Object.(*corev1.Pod); ok && p.Annotations[kube.AnnotationVersion] == version &&
				p.Annotations[kube.AnnotationPhase] == string(hotswap.PhaseServing) {
				return
			}
		case <-timeout:
			b.Fatalf("version %s not seen by the watch after 10 s", version)
		}
	}
}

// BenchmarkReporterObserve is the cost of Observe on the engine's goroutine.
func BenchmarkReporterObserve(b *testing.B) {
	e := newEnv(b, kube.RequiredRules())
	r, err := kube.New(kube.Config{Mode: kube.ModeOn, REST: e.sa, PodName: e.pod, PodNamespace: e.ns}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ev := hotswap.Event{Type: hotswap.SwapSucceeded, Time: time.Now(), Status: hotswap.Status{
		Phase: hotswap.PhaseServing, Generation: 2, Version: "v2",
		LastSwap: &hotswap.SwapResult{ID: 1, Result: hotswap.ResultSucceeded}}}
	for b.Loop() {
		ev.Status.Generation++
		r.Observe(ev)
	}
}

// BenchmarkTinyMainFootprint builds hack/kubesize (reporter + admin, static,
// stripped) and runs it against the test apiserver, reporting its size and
// its RSS once it has reported a swap; then the same with client-go's typed
// clientset linked, for comparison.
func BenchmarkTinyMainFootprint(b *testing.B) {
	e := newEnv(b, kube.RequiredRules())
	kc, err := cluster.WriteKubeconfig("kubesize", e.sa)
	if err != nil {
		b.Fatal(err)
	}
	for _, variant := range []struct{ name, tags string }{{"corev1-only", ""}, {"typed-clientset", "typedclient"}} {
		b.Run(variant.name, func(b *testing.B) {
			bin := filepath.Join(b.TempDir(), "kubesize")
			if err := testbin.Static(bin, "./hack/kubesize", "-tags="+variant.tags); err != nil {
				b.Fatal(err)
			}
			st, err := os.Stat(bin)
			if err != nil {
				b.Fatal(err)
			}
			var rss, anon, file []float64
			for b.Loop() {
				out, err := exec.Command(bin, "--kubeconfig", kc, "--namespace", e.ns, "--pod", e.pod).Output()
				if err != nil {
					b.Fatalf("kubesize: %v", err)
				}
				var res struct{ RssKB, RssAnonKB, RssFileKB int }
				if err := json.Unmarshal(out, &res); err != nil {
					b.Fatalf("kubesize output %q: %v", strings.TrimSpace(string(out)), err)
				}
				rss, anon, file = append(rss, float64(res.RssKB)/1024), append(anon, float64(res.RssAnonKB)/1024), append(file, float64(res.RssFileKB)/1024)
			}
			b.ReportMetric(float64(st.Size())/1e6, "MB-binary")
			b.ReportMetric(median(rss), "MiB-RSS")
			b.ReportMetric(median(anon), "MiB-RssAnon")
			b.ReportMetric(median(file), "MiB-RssFile")
		})
	}
}

func median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}

// BenchmarkHotswapFootprint builds the shipped binary (static, stripped, as
// the Dockerfile does) and runs it as hotswap runs in a pod: reporting on
// against the test apiserver as the pod's service account, supervising the
// example server on a passed listener. Once the pod shows the first
// generation it reports hotswap's own memory (not the server's): VmRSS 3 s
// later, and 10 s after that (once hotswap gave back its start-up pages)
// VmRSS, its anonymous and file-backed parts, and Pss.
//
//	go test -run '^$' -bench BenchmarkHotswapFootprint -benchtime 3x ./hotswap/kube
func BenchmarkHotswapFootprint(b *testing.B) {
	e := newEnv(b, kube.RequiredRules())
	kc, err := cluster.WriteKubeconfig("footprint", e.sa)
	if err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(b.TempDir(), "hotswap")
	if err := testbin.Static(bin, "./cmd/hotswap"); err != nil {
		b.Fatal(err)
	}
	st, err := os.Stat(bin)
	if err != nil {
		b.Fatal(err)
	}
	var early, rss, anon, file, pss []float64
	i := 0
	for b.Loop() {
		i++
		version := fmt.Sprintf("footprint-%d", i)
		run := b.TempDir()
		cmd := exec.Command(bin, "--log-level", "warn", "--kube", "on", "--kubeconfig", kc, "--runtime-dir", run,
			"--release-version", version, "--listen", "http=tcp://127.0.0.1:0", "--", bin, "serve", "--log-level", "warn")
		cmd.Env = append(os.Environ(), kube.EnvPodName+"="+e.pod, kube.EnvPodNamespace+"="+e.ns, kube.EnvPodUID+"="+string(e.uid))
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		err := waitFor(20*time.Second, func() error {
			p := e.getPod(b)
			if v := p.Annotations[kube.AnnotationVersion]; v != version || p.Annotations[kube.AnnotationPhase] != string(hotswap.PhaseServing) {
				return fmt.Errorf("pod shows version %q, phase %q; want %s serving", v, p.Annotations[kube.AnnotationPhase], version)
			}
			return nil
		})
		if err == nil {
			// At 3 s the start-up is over; at 13 s hotswap has also given
			// back its binary's start-up pages (10 s after start).
			time.Sleep(3 * time.Second)
			var m map[string]int
			if m, err = procMemKB(cmd.Process.Pid); err == nil {
				early = append(early, float64(m["VmRSS"])/1024)
				time.Sleep(10 * time.Second)
				m, err = procMemKB(cmd.Process.Pid)
			}
			if err == nil {
				rss, anon, file, pss = append(rss, float64(m["VmRSS"])/1024), append(anon, float64(m["RssAnon"])/1024),
					append(file, float64(m["RssFile"])/1024), append(pss, float64(m["Pss"])/1024)
			}
		}
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		if err != nil {
			b.Fatalf("%v\nhotswap output:\n%s", err, out.String())
		}
	}
	b.ReportMetric(float64(st.Size())/1e6, "MB-binary")
	b.ReportMetric(median(early), "MiB-RSS-3s")
	b.ReportMetric(median(rss), "MiB-RSS")
	b.ReportMetric(median(anon), "MiB-RssAnon")
	b.ReportMetric(median(file), "MiB-RssFile")
	b.ReportMetric(median(pss), "MiB-Pss")
}

// procMemKB reads pid's VmRSS, RssAnon, RssFile (status) and Pss
// (smaps_rollup), in kB.
func procMemKB(pid int) (map[string]int, error) {
	m := map[string]int{}
	for _, f := range []string{"status", "smaps_rollup"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f))
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(data), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			if fs := strings.Fields(v); len(fs) == 2 && fs[1] == "kB" {
				if n, err := strconv.Atoi(fs[0]); err == nil {
					m[k] = n
				}
			}
		}
	}
	for _, k := range []string{"VmRSS", "RssAnon", "RssFile", "Pss"} {
		if _, ok := m[k]; !ok {
			return nil, fmt.Errorf("no %s in /proc/%d", k, pid)
		}
	}
	return m, nil
}
