package rollout

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/hotswap/fleet"
)

// apiserverCounters reads the apiserver's own counters of what the fleet
// costs it: requests by verb and resource, and the watch events (and their
// bytes) it sent to watchers of configmaps.
func apiserverCounters(tb testing.TB) map[string]float64 {
	tb.Helper()
	raw, err := cluster.Client().CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, rest, ok := strings.Cut(line, "{")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		labels, val, _ := strings.Cut(rest, "} ")
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			continue
		}
		lab := func(k string) string {
			_, after, ok := strings.Cut(labels, k+`="`)
			if !ok {
				return ""
			}
			s, _, _ := strings.Cut(after, `"`)
			return s
		}
		switch name {
		case "apiserver_request_total":
			if r := lab("resource"); r == "pods" || r == "configmaps" || r == "events" {
				k := lab("verb") + " " + r
				if s := lab("subresource"); s != "" {
					k += "/" + s
				}
				out[k] += v
			}
		case "apiserver_watch_events_total":
			if lab("kind") == "ConfigMap" || lab("resource") == "configmaps" {
				out["watch events configmaps"] += v
			}
		case "apiserver_watch_events_sizes_sum":
			if lab("kind") == "ConfigMap" || lab("resource") == "configmaps" {
				out["watch bytes configmaps"] += v
			}
		}
	}
	return out
}

// BenchmarkRolloutFleet measures what one rollout costs the apiserver, with
// HOTSWAP_ROLLOUT_PODS simulated pods (default 50; docs/rollout.md has
// 1,000): each pod runs the real ConfigMap informer and the real reporter.
// Run it alone: go test -run '^$' -bench RolloutFleet -benchtime 1x ./hotswap/rollout/
func BenchmarkRolloutFleet(b *testing.B) {
	n := 50
	if s := os.Getenv("HOTSWAP_ROLLOUT_PODS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	f := newFleet(b, "v1", n)
	maxSwapping := max(1, n/20)
	i := 1
	for b.Loop() {
		i++
		to := "v" + strconv.Itoa(i)
		d := f.driver(b, func(o *Options) { o.Interval = 250 * time.Millisecond })
		before := apiserverCounters(b)
		start := time.Now()
		spec := Spec{Manifest: []byte(manifest(to)), Selector: f.selector, Steps: mustSteps("1,25%,50%,100%"), Bake: time.Second,
			MaxSwapping: maxSwapping, SwapTimeout: 5 * time.Minute, AutoPromote: true}
		if _, err := d.Start(b.Context(), spec); err != nil {
			b.Fatal(err)
		}
		if _, err := d.Drive(b.Context()); err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		after := apiserverCounters(b)
		f.waitAll(b, to, 5*time.Minute)
		delta := func(k string) float64 { return after[k] - before[k] }
		m := d.Metrics()
		b.ReportMetric(float64(n), "pods")
		b.ReportMetric(float64(m.Writes.Load()), "configmap-writes")
		b.ReportMetric(delta("watch events configmaps"), "configmap-watch-events")
		b.ReportMetric(delta("watch events configmaps")/float64(m.Writes.Load()), "watch-events/write")
		b.ReportMetric(delta("watch bytes configmaps")/1e6, "configmap-watch-MB")
		b.ReportMetric(delta("PATCH pods")/float64(n), "pod-patches/pod")
		b.ReportMetric(delta("PATCH pods/status")/float64(n), "status-patches/pod")
		b.ReportMetric(delta("LIST pods"), "pod-lists")
		b.ReportMetric(delta("POST events"), "events-created")
		b.ReportMetric(took.Seconds(), "s-to-100%")
		for k, v := range after {
			if dv := v - before[k]; dv != 0 {
				b.Logf("apiserver %s: +%.0f", k, dv)
			}
		}
	}
}

func mustSteps(s string) []fleet.Step {
	st, err := fleet.ParseSteps(s)
	if err != nil {
		panic(err)
	}
	return st
}
