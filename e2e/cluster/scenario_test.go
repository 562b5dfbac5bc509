package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/hotswap-dev/hotswap/e2e/load"
)

const (
	ns          = "hotswap-e2e"
	release     = "hotswap" // helm release; the chart's full name is then "hotswap"
	configMap   = "hotswap-release"
	toolsImage  = "localhost/hotswap-tools:e2e-cluster"
	annVersion  = "hotswap.dev/version"
	annGen      = "hotswap.dev/generation"
	condReady   = corev1.PodConditionType("hotswap.dev/ready")
	releasesDir = "/releases"
)

// swapRecord is one row of the measured table.
type swapRecord struct {
	Name       string
	Trigger    time.Time
	TriggerCmd time.Duration // how long the trigger command itself took
	Answering  time.Duration // trigger → first response from the new generation (load generator)
	Annotated  time.Duration // trigger → pod annotation hotswap.dev/generation shows it
	Requests   int64         // attempts during the step
	Failed     int64         // failed attempts during the step
	Generation string
	Version    string
	Note       string
}

// TestHotswapInCluster is the whole scenario of issue 8, in order, under one
// load run: install the chart, swap four ways, refuse a broken release,
// delete the pod; then the same version change as a rolling update.
func TestHotswapInCluster(t *testing.T) {
	needCluster(t)
	ctx := ctxFor(t, 5*time.Minute)
	c := client(t)
	s := &scenario{t: t, ctx: ctx}

	// ---- preparation: namespace, binaries for the new releases, the tools image
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_, _ = helm(ctx, "uninstall", release, "-n", ns, "--wait", "--timeout=45s")
		_ = c.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	})
	waitFor(ctx, t, "service account default in "+ns, func() bool {
		_, err := c.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	})
	dir := t.TempDir()
	binV3 := buildHotswap(t, dir, "v3")
	binV4 := buildHotswap(t, dir, "v4")
	buildToolsImage(t, dir)

	// ---- 1. helm install, Ready with the readiness gate
	values := filepath.Join(dir, "values.yaml")
	writeFile(t, values, fmt.Sprintf(`image: {repository: %s, tag: %s, pullPolicy: Never}
release:
  version: v1
  volume: {enabled: true, mountPath: %s}
  watch: %s/current
  configMap: {enabled: true, via: informer, name: %s}
timeouts: {startSeconds: 10, drainSeconds: 10, graceSeconds: 10}
env:
  # No kube-proxy in the test cluster: the apiserver is on the node's bridge address.
  - {name: KUBERNETES_SERVICE_HOST, value: "%s"}
  - {name: KUBERNETES_SERVICE_PORT, value: "%s"}
`, repoOf(env.image), tagOf(env.image), releasesDir, releasesDir, configMap, env.gateway, env.apiPort))
	t0 := time.Now()
	if out, err := helm(ctx, "install", release, filepath.Join(repoRoot(), "charts", "hotswap"), "-n", ns, "-f", values); err != nil {
		t.Fatalf("helm install: %v", err)
	} else {
		t.Logf("helm install:\n%s", firstLines(out, 3))
	}
	pod := s.waitReadyPod(time.Minute)
	t.Logf("helm install → pod %s Ready (readiness gate %s True): %v", pod.Name, condReady, time.Since(t0).Round(time.Millisecond))
	s.pod, s.uid, s.ip = pod.Name, pod.UID, pod.Status.PodIP
	if !conditionTrue(pod, condReady) {
		t.Fatalf("pod Ready without %s True:\n%s", condReady, describe(pod))
	}
	if v := pod.Annotations[annVersion]; v != "v1" {
		t.Fatalf("annotation %s=%q, want v1:\n%s", annVersion, v, describe(pod))
	}

	// A tools container in the pod (the image is FROM scratch: no tar for
	// kubectl cp, no shell), sharing the releases volume: what an operator
	// does with `kubectl debug`. Then the v3 binary is staged for the
	// ConfigMap release (not a swap: nothing watches that name).
	s.attachTools(dir)
	s.kubectlCp(binV3, releasesDir+"/hotswap-v3")
	s.sumV3 = fileSHA(t, binV3)

	// ---- the load: for the whole scenario, on the pod's address
	addr := net.JoinHostPort(s.ip, "8080")
	r, err := load.Start(ctx, loadConfig(addr))
	if err != nil {
		t.Fatal(err)
	}
	s.load = r
	defer r.Stop()
	time.Sleep(time.Second) // a baseline before the first swap

	// ---- 2-5. four swaps
	s.swap("kubectl exec POD -- kill -USR2 1", "", func() (string, error) {
		return kubectl(ctx, "-n", ns, "exec", s.pod, "-c", "server", "--", "kill", "-USR2", "1")
	})
	s.swap("kubectl exec POD -- /hotswap swap", "", func() (string, error) {
		return kubectl(ctx, "-n", ns, "exec", s.pod, "-c", "server", "--", "/hotswap", "swap")
	})
	s.swap("ConfigMap update (informer)", "v3", func() (string, error) {
		return kubectlIn(ctx, []byte(releaseConfigMap("v3", releasesDir+"/hotswap-v3", s.sumV3)), "-n", ns, "apply", "-f", "-")
	})
	sumV4 := fileSHA(t, binV4)
	s.swap("kubectl cp binary to watched volume", "sha256:"+sumV4[:12], func() (string, error) {
		return s.kubectlCpErr(binV4, releasesDir+"/current")
	})

	// ---- 6. hotswap itself upgraded in place (issue 18), then a swap by
	// the new PID 1
	s.upgradeHotswap(releasesDir+"/hotswap-v3", s.sumV3, "v3")
	s.swap("kill -USR2 1 after the upgrade", "", func() (string, error) {
		return kubectl(ctx, "-n", ns, "exec", s.pod, "-c", "server", "--", "kill", "-USR2", "1")
	})

	// ---- 7. a broken release: refused, the old one keeps serving, pod stays Ready
	s.broken()

	r.Stop()
	rep := r.Wait()
	t.Logf("load over the whole swap scenario:\n%s", rep)
	s.fillFromReport(rep)
	if err := rep.Err(); err != nil {
		t.Errorf("requests failed during the swaps: %v", err)
	}

	// The pods that follow start without a release in the ConfigMap.
	if _, err := kubectl(ctx, "-n", ns, "delete", "configmap", configMap); err != nil {
		t.Fatal(err)
	}

	// ---- 8. delete the pod: hotswap drains and exits 0 within the grace period
	s.deletePod()

	// ---- 9. the comparison: the same kind of version change as a rolling update
	roll := s.rollingUpdate()

	s.writeTable(roll)
}

// loadConfig is the load of both halves of the comparison, the mix the other
// e2e suites use: keep-alive and new-connection clients, 10% slow requests,
// paced to leave CPU to the cluster on two cores. Pools of long-idle
// connections are left out: a pooled connection that the draining server
// closes just as the client reuses it fails (EOF), with a swap and with a
// rolling update alike, until idle connections are handed over (issue 9).
func loadConfig(addr string) load.Config {
	return load.Config{Addr: addr, Duration: 4 * time.Minute, KeepAlive: 4, NewConn: 2,
		SlowFraction: 0.1, Rate: 400, Timeout: 5 * time.Second}
}

// scenario carries the state of TestHotswapInCluster between its steps.
type scenario struct {
	t *testing.T
	// sumV3 pins the v3 release: the releases volume is an emptyDir (mode
	// 0777), where hotswap refuses an unpinned release (docs/security.md).
	sumV3   string
	ctx     context.Context
	pod     string
	uid     types.UID
	ip      string
	load    *load.Runner
	records []*swapRecord
	deleted struct {
		grace, took time.Duration
		exitCode    int32
	}
}

func (s *scenario) podSelector() string { return "app.kubernetes.io/instance=" + release }

// waitReadyPod waits for the release's one pod to be Ready and returns it.
func (s *scenario) waitReadyPod(d time.Duration) *corev1.Pod {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, d)
	defer cancel()
	c := client(s.t)
	for {
		pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: s.podSelector()})
		if err == nil {
			for i := range pods.Items {
				p := &pods.Items[i]
				if p.DeletionTimestamp == nil && podReady(p) {
					return p
				}
			}
		}
		select {
		case <-ctx.Done():
			if pods != nil {
				for _, p := range pods.Items {
					s.t.Logf("pod %s:\n%s", p.Name, describe(&p))
					dumpPod(s.t, ns, p.Name)
				}
			}
			s.t.Fatalf("no Ready pod of release %s within %v (last error %v)", release, d, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *scenario) getPod() *corev1.Pod {
	s.t.Helper()
	p, err := client(s.t).CoreV1().Pods(ns).Get(s.ctx, s.pod, metav1.GetOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	return p
}

// swap runs one swap step: trigger, then wait until the pod's annotation and
// the serving generation show the new generation (and version, if given),
// and check that the pod is the same, never restarted, Ready, and that a
// SwapSucceeded event was recorded.
func (s *scenario) swap(name, wantVersion string, trigger func() (string, error)) {
	t := s.t
	t.Helper()
	before := s.getPod()
	prevGen := atoi(before.Annotations[annGen])
	prevVersion := before.Annotations[annVersion]
	prevEvents := s.eventCount("SwapSucceeded")
	prog := s.load.Progress()
	rec := &swapRecord{Name: name}
	s.records = append(s.records, rec)

	rec.Trigger = time.Now()
	s.load.MarkSwap(rec.Trigger)
	out, err := trigger()
	rec.TriggerCmd = time.Since(rec.Trigger)
	if err != nil {
		dumpPod(t, ns, s.pod)
		t.Fatalf("%s: %v", name, err)
	}
	if o := strings.TrimSpace(out); o != "" {
		t.Logf("%s: %s", name, firstLines(o, 2))
	}
	// The annotation: polled, so its time is the first read that shows it.
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	p := waitPod(ctx, t, ns, s.pod, name+": annotation "+annGen+" > "+strconv.Itoa(prevGen), func(p *corev1.Pod) bool {
		return atoi(p.Annotations[annGen]) > prevGen && p.Annotations[annVersion] != "" &&
			(wantVersion == "" || p.Annotations[annVersion] == wantVersion)
	})
	gen := p.Annotations[annGen]
	// The condition stays True and names the generation that now serves.
	waitPod(ctx, t, ns, s.pod, name+": condition "+string(condReady)+" names generation "+gen, func(p *corev1.Pod) bool {
		for _, c := range p.Status.Conditions {
			if c.Type == condReady {
				return c.Status == corev1.ConditionTrue && strings.Contains(c.Message, "generation "+gen+" ")
			}
		}
		return false
	})
	rec.Annotated = time.Since(rec.Trigger)
	rec.Generation, rec.Version = p.Annotations[annGen], p.Annotations[annVersion]
	if wantVersion == "" && rec.Version != prevVersion {
		t.Errorf("%s: version changed from %s to %s; a swap by signal restarts the current release", name, prevVersion, rec.Version)
	}
	// The new generation answering on the pod's address (the load's own
	// first-seen time replaces this poll's in the table, see fillFromReport).
	waitFor(ctx, t, name+": generation "+rec.Generation+" answering", func() bool {
		return getHeader(ctx, t, net.JoinHostPort(s.ip, "8080"), "X-Hotswap-Generation") == rec.Generation
	})
	rec.Answering = time.Since(rec.Trigger)
	s.checkSamePod(name, p)
	waitFor(ctx, t, name+": SwapSucceeded event", func() bool { return s.eventCount("SwapSucceeded") > prevEvents })
	// Let the old generation finish draining under load before the next step.
	time.Sleep(1500 * time.Millisecond)
	now := s.load.Progress()
	rec.Requests, rec.Failed = now.Attempts-prog.Attempts, now.Failed-prog.Failed
	t.Logf("%-40s gen %s version %-20s answering %6v annotated %6v (trigger command %v), %d requests, %d failed",
		name, rec.Generation, rec.Version, rec.Answering.Round(time.Millisecond), rec.Annotated.Round(time.Millisecond),
		rec.TriggerCmd.Round(time.Millisecond), rec.Requests, rec.Failed)
	if rec.Failed > 0 {
		t.Errorf("%s: %d requests failed", name, rec.Failed)
	}
}

// checkSamePod: same UID, no restart, Ready, hotswap.dev/ready True.
func (s *scenario) checkSamePod(step string, p *corev1.Pod) {
	s.t.Helper()
	switch {
	case p.UID != s.uid:
		s.t.Fatalf("%s: pod UID %s, want %s (a new pod)", step, p.UID, s.uid)
	case restarts(p) != 0:
		s.t.Fatalf("%s: container restarted %d times:\n%s", step, restarts(p), describe(p))
	case !podReady(p) || !conditionTrue(p, condReady):
		s.t.Fatalf("%s: pod not Ready:\n%s", step, describe(p))
	}
}

// eventCount sums the count of the pod's events with reason.
func (s *scenario) eventCount(reason string) int32 {
	evs, err := client(s.t).CoreV1().Events(ns).List(s.ctx, metav1.ListOptions{FieldSelector: fields.AndSelectors(
		fields.OneTermEqualSelector("involvedObject.uid", string(s.uid)),
		fields.OneTermEqualSelector("reason", reason)).String()})
	if err != nil {
		s.t.Fatalf("list events: %v", err)
	}
	var n int32
	for _, e := range evs.Items {
		n += max(e.Count, 1)
	}
	return n
}

// broken publishes a release whose binary exits at start: the swap fails,
// the serving generation stays, the pod stays Ready throughout, and a
// SwapFailed event is recorded.
func (s *scenario) broken() {
	t := s.t
	before := s.getPod()
	prevFailed := s.eventCount("SwapFailed")
	prog := s.load.Progress()
	rec := &swapRecord{Name: "broken release (exits at start): refused"}
	s.records = append(s.records, rec)
	rec.Trigger = time.Now()
	s.load.MarkSwap(rec.Trigger)
	cm := releaseConfigMap("v5-broken", releasesDir+"/hotswap-v3", s.sumV3, "--exit-at-start=3")
	if _, err := kubectlIn(s.ctx, []byte(cm), "-n", ns, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	rec.TriggerCmd = time.Since(rec.Trigger)
	ctx, cancel := context.WithTimeout(s.ctx, 40*time.Second)
	defer cancel()
	// Ready all along: watch the pod until the SwapFailed event is there.
	notReady := ""
	for s.eventCount("SwapFailed") <= prevFailed {
		p := s.getPod()
		if !podReady(p) || !conditionTrue(p, condReady) {
			notReady = describe(p)
		}
		select {
		case <-ctx.Done():
			dumpPod(t, ns, s.pod)
			t.Fatal("no SwapFailed event for the broken release")
		case <-time.After(20 * time.Millisecond):
		}
	}
	rec.Annotated = time.Since(rec.Trigger)
	if notReady != "" {
		t.Errorf("pod not Ready during the failed swap:\n%s", notReady)
	}
	time.Sleep(time.Second)
	p := s.getPod()
	s.checkSamePod(rec.Name, p)
	rec.Generation, rec.Version = p.Annotations[annGen], p.Annotations[annVersion]
	if rec.Version != before.Annotations[annVersion] {
		t.Errorf("after the broken release the version is %q, want the old %q", rec.Version, before.Annotations[annVersion])
	}
	if v := getHeader(ctx, t, net.JoinHostPort(s.ip, "8080"), "X-Hotswap-Version"); v != before.Annotations[annVersion] {
		t.Errorf("after the broken release %q answers, want the old %q", v, before.Annotations[annVersion])
	}
	now := s.load.Progress()
	rec.Requests, rec.Failed = now.Attempts-prog.Attempts, now.Failed-prog.Failed
	rec.Note = "SwapFailed event after " + rec.Annotated.Round(time.Millisecond).String() + "; old version kept serving"
	t.Logf("broken release: SwapFailed after %v, still serving %s (generation %s), %d requests, %d failed",
		rec.Annotated.Round(time.Millisecond), rec.Version, rec.Generation, rec.Requests, rec.Failed)
	if rec.Failed > 0 {
		t.Errorf("broken release: %d requests failed", rec.Failed)
	}
}

// fillFromReport replaces each swap's polled "answering" time with the load
// generator's: when its first response from the new generation arrived.
func (s *scenario) fillFromReport(rep *load.Report) {
	for _, rec := range s.records {
		if rec.Generation == "" || strings.HasPrefix(rec.Name, "broken") {
			continue
		}
		for _, g := range rep.Generations {
			if g.Generation == rec.Generation && g.First.After(rec.Trigger) {
				rec.Answering = g.First.Sub(rec.Trigger)
				break
			}
		}
	}
}

// deletePod deletes the pod and watches it: the container must end with
// exit code 0 within terminationGracePeriodSeconds.
func (s *scenario) deletePod() {
	t := s.t
	p := s.getPod()
	grace := time.Duration(*p.Spec.TerminationGracePeriodSeconds) * time.Second
	w, err := client(t).CoreV1().Pods(ns).Watch(s.ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + s.pod, ResourceVersion: p.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	t0 := time.Now()
	if err := client(t).CoreV1().Pods(ns).Delete(s.ctx, s.pod, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var term *corev1.ContainerStateTerminated
	timeout := time.After(grace + 15*time.Second)
	for gone := false; !gone; {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("pod watch ended")
			}
			if ev.Type == watch.Deleted {
				gone = true
			}
			if pp, ok := ev.Object.(*corev1.Pod); ok {
				for _, cs := range pp.Status.ContainerStatuses {
					if cs.Name == "server" && cs.State.Terminated != nil && term == nil {
						term = cs.State.Terminated
						s.deleted.took = time.Since(t0)
					}
				}
			}
		case <-timeout:
			t.Fatalf("pod %s not gone %v after delete", s.pod, grace+15*time.Second)
		}
	}
	if term == nil {
		t.Fatal("pod deleted without a terminated container status")
	}
	s.deleted.grace, s.deleted.exitCode = grace, term.ExitCode
	t.Logf("pod delete: hotswap exited %d (%s) %v after delete (grace %v)", term.ExitCode, term.Reason, s.deleted.took.Round(time.Millisecond), grace)
	if term.ExitCode != 0 {
		t.Errorf("hotswap exited %d on pod deletion, want 0 (%s: %s)", term.ExitCode, term.Reason, term.Message)
	}
	if s.deleted.took >= grace {
		t.Errorf("hotswap took %v to stop, not within terminationGracePeriodSeconds %v", s.deleted.took, grace)
	}
}

// rolloutResult is the comparison row.
type rolloutResult struct {
	Answering, Complete time.Duration
	Requests, Failed    int64
	Failures            string
	Endpoints           []string
}

// rollingUpdate changes the version the Kubernetes way: a new pod template
// (helm upgrade), so the Deployment rolls a new pod in and the old one out.
// The load goes through a stand-in for kube-proxy that follows the
// Service's EndpointSlices, as clients of a Service do.
func (s *scenario) rollingUpdate() rolloutResult {
	t := s.t
	// The Deployment replaced the deleted pod: wait for the replacement.
	pod := s.waitReadyPod(time.Minute)
	old := pod.Name
	proxy := startServiceProxy(t, ns, release, "http")
	waitFor(s.ctx, t, "the service proxy to know the pod", func() bool { return proxy.pick() != "" })
	r, err := load.Start(s.ctx, loadConfig(proxy.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	time.Sleep(time.Second)
	t0 := time.Now()
	r.MarkSwap(t0)
	if _, err := helm(s.ctx, "upgrade", release, filepath.Join(repoRoot(), "charts", "hotswap"), "-n", ns,
		"--reuse-values", "--set", "release.version=v2"); err != nil {
		t.Fatalf("helm upgrade: %v", err)
	}
	var res rolloutResult
	at, err := r.WaitVersion(s.ctx, "v2")
	if err != nil {
		t.Fatalf("rolling update: %v", err)
	}
	res.Answering = at.Sub(t0)
	// Complete: the new pod Ready and the old pod gone from the API.
	waitFor(s.ctx, t, "old pod "+old+" gone", func() bool {
		_, err := client(t).CoreV1().Pods(ns).Get(s.ctx, old, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	res.Complete = time.Since(t0)
	time.Sleep(2 * time.Second)
	r.Stop()
	rep := r.Wait()
	res.Requests, res.Failed = rep.Attempts, int64(rep.Failed())
	res.Failures = rep.Failures.String()
	proxy.mu.Lock()
	res.Endpoints = append([]string(nil), proxy.changes...)
	proxy.mu.Unlock()
	t.Logf("rolling update: v2 answering after %v, complete after %v; %d requests, %d failed (%s)\nendpoint changes seen by the proxy: %s",
		res.Answering.Round(time.Millisecond), res.Complete.Round(time.Millisecond), res.Requests, res.Failed, res.Failures,
		strings.Join(res.Endpoints, "; "))
	t.Logf("load during the rolling update:\n%s", rep)
	return res
}

// attachTools adds an ephemeral container with a static busybox to the pod,
// mounting the releases volume, and waits for it to run. It stays until the
// pod goes (ephemeral containers cannot be removed) and stops at once on
// SIGTERM.
func (s *scenario) attachTools(dir string) {
	t := s.t
	custom := filepath.Join(dir, "tools.json")
	writeFile(t, custom, `{"volumeMounts": [{"name": "releases", "mountPath": "`+releasesDir+`"}],
 "securityContext": {"runAsUser": 65532, "runAsGroup": 65532, "runAsNonRoot": true,
   "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}`)
	if _, err := kubectl(s.ctx, "-n", ns, "debug", s.pod, "--image="+toolsImage, "--image-pull-policy=Never",
		"-c", "tools", "--profile=restricted", "--custom="+custom,
		// PID 1 of its container: without a trap, SIGTERM would be ignored
		// and the pod's deletion would wait the whole grace period for it.
		"--", "sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"); err != nil {
		t.Fatalf("kubectl debug: %v", err)
	}
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	waitPod(ctx, t, ns, s.pod, "tools container running", func(p *corev1.Pod) bool {
		for _, cs := range p.Status.EphemeralContainerStatuses {
			if cs.Name == "tools" && cs.State.Running != nil {
				return true
			}
		}
		return false
	})
}

func (s *scenario) kubectlCp(local, remote string) {
	s.t.Helper()
	t0 := time.Now()
	if _, err := s.kubectlCpErr(local, remote); err != nil {
		s.t.Fatal(err)
	}
	s.t.Logf("kubectl cp %s → %s: %v", filepath.Base(local), remote, time.Since(t0).Round(time.Millisecond))
}

func (s *scenario) kubectlCpErr(local, remote string) (string, error) {
	return kubectl(s.ctx, "-n", ns, "cp", local, s.pod+":"+remote, "-c", "tools")
}

// releaseConfigMap is the release ConfigMap the informer source reads.
func releaseConfigMap(version, binary, sum string, extraArgs ...string) string {
	args := `["serve"`
	for _, a := range extraArgs {
		args += `, "` + a + `"`
	}
	args += "]"
	return fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata: {name: %s}
data:
  release.yaml: |
    version: %s
    binary: %s
    sha256: %s
    args: %s
`, configMap, version, binary, sum, args)
}

// buildHotswap builds a hotswap binary that differs from the image's (its
// version string), so it is a new release with its own sha256.
func buildHotswap(t *testing.T, dir, version string) string {
	t.Helper()
	out := filepath.Join(dir, "hotswap-"+version)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", out, "./cmd/hotswap")
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build hotswap %s: %v\n%s", version, err, b)
	}
	return out
}

// buildToolsImage builds a FROM-scratch image with a static busybox (what
// `kubectl cp` needs in a container: tar) and imports it into the cluster.
func buildToolsImage(t *testing.T, dir string) {
	t.Helper()
	ctx := filepath.Join(dir, "tools")
	if err := os.MkdirAll(filepath.Join(ctx, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("static busybox (hack/cluster-deps.sh installs busybox-static): %v", err)
	}
	writeFileMode(t, filepath.Join(ctx, "bin", "busybox"), string(bb), 0o755)
	for _, n := range []string{"sh", "tar", "sleep", "ls", "mv", "ln", "mkdir", "cat", "chmod", "rm", "sha256sum"} {
		if err := os.Symlink("busybox", filepath.Join(ctx, "bin", n)); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(ctx, "Containerfile"), "FROM scratch\nCOPY bin /bin\nENV PATH=/bin\nUSER 65532:65532\n")
	cmd := exec.Command("podman", "build", "-q", "-t", toolsImage, ctx)
	cmd.Env = os.Environ()
	if conf, err := scriptOutput("podman-setup.sh"); err == nil {
		cmd.Env = append(cmd.Env, "CONTAINERS_CONF="+lastLine(conf))
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("podman build tools image: %v\n%s", err, b)
	}
	if err := script("cluster-import.sh", env.workDir, toolsImage); err != nil {
		t.Fatalf("import tools image: %v", err)
	}
}

func writeFile(t *testing.T, path, content string) { writeFileMode(t, path, content, 0o644) }

func writeFileMode(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func fileSHA(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func repoOf(image string) string { i := strings.LastIndex(image, ":"); return image[:i] }
func tagOf(image string) string  { i := strings.LastIndex(image, ":"); return image[i+1:] }

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, " | ")
}
