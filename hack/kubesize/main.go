// Command kubesize is a measuring stick, not part of hotswap: the smallest
// main that links what hotswap links for Kubernetes reporting (hotswap/kube
// and the hotswap/admin endpoint), so the static stripped size and the RSS
// with reporting on can be measured against issue 6's budget (≤ 18 MB,
// ≤ 15 MB RSS). BenchmarkTinyMainFootprint in hotswap/kube builds and runs
// it against the test apiserver; build with -tags typedclient to see what
// linking client-go's typed clientset would cost instead.
//
//	kubesize --kubeconfig FILE --namespace NS --pod NAME
//
// It reports one swap, waits until the pod shows it, and prints one JSON
// line: {"rssKB":..., "rssAnonKB":..., "rssFileKB":..., "patches":...}.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/hotswap/admin"
	"github.com/hotswap-dev/hotswap/hotswap/kube"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file")
	ns := flag.String("namespace", "", "pod namespace")
	pod := flag.String("pod", "", "pod name")
	flag.Parse()
	if err := run(*kubeconfig, *ns, *pod); err != nil {
		fmt.Fprintln(os.Stderr, "kubesize:", err)
		os.Exit(1)
	}
}

func run(kubeconfig, ns, pod string) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r, err := kube.New(kube.Config{Mode: kube.ModeOn, Kubeconfig: kubeconfig, PodNamespace: ns, PodName: pod}, log)
	if err != nil {
		return err
	}
	adm := admin.New(admin.Options{Addr: "127.0.0.1:0", ReportErrors: r.Errors}, log)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = r.Run(ctx) }()
	go func() { _ = adm.Run(ctx) }()
	typedClientset() // no-op unless built with -tags typedclient

	st := hotswap.Status{Phase: hotswap.PhaseServing, Generation: 2, Version: "v2",
		LastSwap: &hotswap.SwapResult{ID: 1, Result: hotswap.ResultSucceeded, Started: time.Now(), Duration: time.Second}}
	ev := hotswap.Event{Type: hotswap.SwapSucceeded, Time: time.Now(), Message: "swap 1: generation 2 (v2) serving", Status: st}
	r.Observe(ev)
	adm.Observe(ev)
	deadline := time.Now().Add(20 * time.Second)
	for r.Stats().Patches < 2 || r.Stats().EventsSent < 1 {
		if time.Now().After(deadline) {
			return fmt.Errorf("not reported after 20 s: %+v", r.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // let the steady state settle
	mem, err := memKB("VmRSS", "RssAnon", "RssFile")
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"rssKB": mem["VmRSS"], "rssAnonKB": mem["RssAnon"], "rssFileKB": mem["RssFile"], "patches": r.Stats().Patches,
	})
}

// memKB reads the named kB fields of /proc/self/status.
func memKB(names ...string) (map[string]int, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, fmt.Errorf("read /proc/self/status: %w", err)
	}
	out := map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok || !slices.Contains(names, name) {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		if err != nil {
			return nil, fmt.Errorf("parse %s in /proc/self/status: %w", name, err)
		}
		out[name] = n
	}
	if len(out) != len(names) {
		return nil, fmt.Errorf("/proc/self/status lacks some of %v", names)
	}
	return out, nil
}
