package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/hotswap-dev/hotswap/e2e/load"
	"github.com/hotswap-dev/hotswap/hotswap/fleet"
)

// The fleet of TestFleetRollout: one chart release, one Deployment, reused
// by every scenario.
const (
	fleetNS      = "fleet"
	fleetRelease = "fleet" // the chart's full name is then "fleet-hotswap"
	fleetName    = "fleet-hotswap"
	fleetCM      = "fleet-release"
	// podBake is the pods' own post-swap bake, from the third part on: a
	// release that goes bad after its takeover is caught on the pod.
	podBakeArgs = `["--bake-time=4s", "--bake-url=http://127.0.0.1:8080/healthz", "--bake-interval=500ms", "--bake-failures=2"]`
)

// fleetRow is one row of the measured table.
type fleetRow struct {
	Name      string
	Took      time.Duration // start → 100 % (in place: the driver's exit; rolling update: the Deployment complete)
	AllOn     time.Duration // start → every pod serving the new version (in place) / every old pod gone (rolling update)
	Outcome   string
	Requests  int64
	Failed    int64
	Failures  string
	Restarts  int32
	SameUIDs  string
	CanaryRan string // pods that ever served the release
	Note      string
}

// TestFleetRollout is issue 14 on the real cluster: a Deployment of 8 pods
// (HOTSWAP_FLEET_PODS), load through the Service the whole time (every
// attempt counted, new connections and keep-alive), and `hotswap rollout`
// — the real CLI, built from this tree — taking releases through it:
//
//  1. a good release 1 → 25 % → 50 % → 100 %, no bake: 0 failed requests, 0
//     restarts, the same pod UIDs; then the same Deployment replaced by a
//     rolling update with minReadySeconds 0; then both again with a bake of
//     5 s (HOTSWAP_FLEET_BAKE) and minReadySeconds 5 — time to 100 % of each;
//  2. a release that is ready but fails its health check: halted at the
//     first step, only the canary pod served it, rolled back;
//  3. a release that crashes 5 s after its takeover; a release whose binary
//     is missing on one pod's volume (refused by verification there); the
//     driver killed mid-rollout and run again, a pod deleted and the
//     Deployment scaled up mid-rollout; two drivers racing.
//
// HOTSWAP_FLEET_OUT=FILE writes the table (docs/rollout.md holds one).
func TestFleetRollout(t *testing.T) {
	needCluster(t)
	ctx := ctxFor(t, 20*time.Minute)
	f := newFleetEnv(t, ctx)

	// ---- 1. the good release, and the rolling update of the same Deployment
	bake := envDuration(t, "HOTSWAP_FLEET_BAKE", 5*time.Second)
	f.inPlace("in place, no bake", "v2", 0)
	f.setStable("v1")
	f.rollingUpdate("rolling update, minReadySeconds 0", 0, "")
	f.inPlace(fmt.Sprintf("in place, bake %v per step", bake), "v2", bake)
	f.setStable("v1")
	// The second rolling update also gives the pods their own bake (the
	// template change that rolls them), for the faults below.
	f.rollingUpdate(fmt.Sprintf("rolling update, minReadySeconds %d", int(bake.Seconds())), int32(bake.Seconds()), podBakeArgs)

	// ---- 2. ready, then unhealthy: caught by the canary pod's own bake
	f.fault("unhealthy 1 s after ready (pod bake)", "v5-unhealthy", []string{"--unhealthy-after=1s"}, 3*time.Second, 0, "")
	// ---- 3. crashes 5 s after its takeover, during the step's bake
	f.fault("crashes 5 s after takeover", "v6-crash", []string{"--exit-after-ready=5s"}, 8*time.Second, 0, "")
	// ---- 3. refused by verification on the third pod only (step 3, 50 %)
	f.refusedOnOnePod()
	// ---- 3. the driver killed and run again; a pod deleted; a scale-up
	f.interrupted()
	// ---- 3. two drivers at once
	f.racingDrivers()
	// ---- 4. the chart's in-cluster driver takes a detached rollout
	f.inClusterDriver()

	f.writeFleetTable()
}

// fleetEnv is the state TestFleetRollout carries between scenarios.
type fleetEnv struct {
	t       *testing.T
	ctx     context.Context
	dir     string
	hotswap string // the CLI, built from this tree
	proxy   *serviceProxy
	watch   *podWatch
	pods    int
	rows    []*fleetRow
	stable  string
	uids    map[string]types.UID // the pods' UIDs since the last rolling update
}

func newFleetEnv(t *testing.T, ctx context.Context) *fleetEnv {
	c := client(t)
	f := &fleetEnv{t: t, ctx: ctx, dir: t.TempDir(), pods: envInt(t, "HOTSWAP_FLEET_PODS", 8), stable: "v1"}
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleetNS}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		_, _ = helm(ctx, "uninstall", fleetRelease, "-n", fleetNS, "--wait", "--timeout=60s")
		_ = c.CoreV1().Namespaces().Delete(ctx, fleetNS, metav1.DeleteOptions{})
	})
	waitFor(ctx, t, "service account default in "+fleetNS, func() bool {
		_, err := c.CoreV1().ServiceAccounts(fleetNS).Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	})
	f.hotswap = buildHotswap(t, f.dir, "driver")
	buildToolsImage(t, f.dir)
	// The stable release before the chart: the pods start on it (it is
	// the command line's release, so they do not swap at start).
	f.applyStable("v1")
	values := filepath.Join(f.dir, "values.yaml")
	writeFile(t, values, fmt.Sprintf(`image: {repository: %s, tag: %s, pullPolicy: Never}
# hotswap copied to an emptyDir per pod: a release from there can be missing on one pod.
hotswapBinary: {from: initContainer, image: {repository: %s, tag: %s, pullPolicy: Never}}
replicaCount: %d
release:
  version: v1
  configMap: {enabled: true, via: informer, name: %s}
timeouts: {startSeconds: 10, drainSeconds: 10, graceSeconds: 5}
# Probed every second: the rolling update is not slowed by a 5 s probe period.
probes: {readiness: {periodSeconds: 1}}
env:
  # No kube-proxy in the test cluster: the apiserver is on the node's bridge address.
  - {name: KUBERNETES_SERVICE_HOST, value: "%s"}
  - {name: KUBERNETES_SERVICE_PORT, value: "%s"}
`, repoOf(env.image), tagOf(env.image), repoOf(env.image), tagOf(env.image), f.pods, fleetCM, env.gateway, env.apiPort))
	t0 := time.Now()
	if _, err := helm(ctx, "install", fleetRelease, filepath.Join(repoRoot(), "charts", "hotswap"), "-n", fleetNS, "-f", values); err != nil {
		t.Fatalf("helm install: %v", err)
	}
	f.waitFleet(f.pods, "v1", 3*time.Minute)
	t.Logf("helm install → %d pods Ready on v1: %v", f.pods, time.Since(t0).Round(time.Millisecond))
	f.watch = startPodWatch(t, ctx)
	f.uids = f.currentUIDs()
	f.proxy = startServiceProxy(t, fleetNS, fleetName, "http")
	waitFor(ctx, t, "the service proxy to know every pod", func() bool {
		f.proxy.mu.Lock()
		defer f.proxy.mu.Unlock()
		return len(f.proxy.eps) == f.pods
	})
	return f
}

// ---- scenarios

// inPlace rolls version out with `hotswap rollout start` and checks the
// result: promoted, every pod on it, no failed request, no restart, the same
// pods.
func (f *fleetEnv) inPlace(name, version string, bake time.Duration) {
	t := f.t
	t.Helper()
	row := &fleetRow{Name: name}
	f.rows = append(f.rows, row)
	ph := f.startPhase()
	before := f.restarts()
	t0 := time.Now()
	out, code := f.run("rollout", "start", fleetCM, "-f", f.manifestFile(version, ""), "--deployment", fleetName,
		"--steps", "1,25%,50%,100%", "--bake", bake.String(), "--max-swapping", "2")
	row.Took = time.Since(t0)
	if code != 0 {
		t.Fatalf("%s: hotswap rollout start exited %d:\n%s", name, code, out)
	}
	last := f.waitFleet(f.pods, version, time.Minute)
	row.AllOn = last.Sub(t0)
	if row.AllOn < 0 || row.AllOn > row.Took {
		row.AllOn = row.Took
	}
	r := f.record()
	row.Outcome = string(r.Phase)
	f.stable = version
	f.endPhase(ph, row, before)
	t.Logf("%s: %s after %v (every pod on %s after %v)", name, r.Phase, row.Took.Round(time.Millisecond), version, row.AllOn.Round(time.Millisecond))
	f.checkClean(row, r, fleet.Promoted)
}

// checkClean: the phase wanted, no failed request, no restart, same pods.
func (f *fleetEnv) checkClean(row *fleetRow, r *fleet.Rollout, want fleet.Phase) {
	t := f.t
	t.Helper()
	if r.Phase != want {
		t.Errorf("%s: phase %s, want %s: %s", row.Name, r.Phase, want, r.Reason)
	}
	if row.Failed != 0 {
		t.Errorf("%s: %d of %d requests failed (%s)", row.Name, row.Failed, row.Requests, row.Failures)
	}
	if row.Restarts != 0 {
		t.Errorf("%s: %d container restarts", row.Name, row.Restarts)
	}
	if row.SameUIDs != "yes" {
		t.Errorf("%s: pods replaced: %s", row.Name, row.SameUIDs)
	}
}

// setStable puts version back as the stable release by hand (one ConfigMap
// write, no rollout): every pod swaps to it in place.
func (f *fleetEnv) setStable(version string) {
	f.t.Helper()
	ph := f.startPhase()
	f.applyStable(version)
	f.waitFleet(f.pods, version, time.Minute)
	f.stable = version
	rep := ph.stop()
	if rep.Failed() != 0 {
		f.t.Errorf("back to %s by hand: %d of %d requests failed (%s)", version, rep.Failed(), rep.Attempts, rep.Failures)
	}
}

// rollingUpdate replaces every pod the Kubernetes way, with minReadySeconds
// mrs: a template annotation (or, with extraArgs, a helm upgrade that
// changes the pods' arguments) makes the Deployment roll.
func (f *fleetEnv) rollingUpdate(name string, mrs int32, extraArgs string) {
	t := f.t
	t.Helper()
	row := &fleetRow{Name: name}
	f.rows = append(f.rows, row)
	dep := f.deployment()
	if dep.Spec.MinReadySeconds != mrs {
		if _, err := kubectl(f.ctx, "-n", fleetNS, "patch", "deployment", fleetName, "--type=merge",
			"-p", fmt.Sprintf(`{"spec":{"minReadySeconds":%d}}`, mrs)); err != nil {
			t.Fatal(err)
		}
	}
	oldPods := f.currentUIDs()
	ph := f.startPhase()
	t0 := time.Now()
	if extraArgs != "" {
		if _, err := helm(f.ctx, "upgrade", fleetRelease, filepath.Join(repoRoot(), "charts", "hotswap"), "-n", fleetNS,
			"--reuse-values", "--set-json", "extraArgs="+extraArgs); err != nil {
			t.Fatalf("helm upgrade: %v", err)
		}
	} else if _, err := kubectl(f.ctx, "-n", fleetNS, "patch", "deployment", fleetName, "--type=merge",
		"-p", fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"e2e.hotswap.dev/roll":"%d"}}}}}`, time.Now().UnixNano())); err != nil {
		t.Fatal(err)
	}
	// Complete as `kubectl rollout status` says it: every replica updated
	// and available, no old one left in the count.
	ctx, cancel := context.WithTimeout(f.ctx, 5*time.Minute)
	defer cancel()
	waitFor(ctx, t, name+": Deployment complete", func() bool {
		d := f.deployment()
		s := d.Status
		return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == *d.Spec.Replicas &&
			s.Replicas == *d.Spec.Replicas && s.AvailableReplicas == *d.Spec.Replicas
	})
	row.Took = time.Since(t0)
	waitFor(ctx, t, name+": old pods gone", func() bool {
		pods := f.listPods()
		for _, p := range pods {
			if _, old := oldPods[p.Name]; old {
				return false
			}
		}
		return true
	})
	row.AllOn = time.Since(t0)
	f.waitFleet(f.pods, f.stable, time.Minute)
	row.Outcome = "complete"
	rep := ph.stop()
	row.Requests, row.Failed, row.Failures = rep.Attempts, int64(rep.Failed()), rep.Failures.String()
	row.SameUIDs = fmt.Sprintf("no: %d new pods", len(f.currentUIDs()))
	f.uids = f.currentUIDs()
	t.Logf("%s: complete after %v, old pods gone after %v; %d requests, %d failed (%s)", name,
		row.Took.Round(time.Millisecond), row.AllOn.Round(time.Millisecond), row.Requests, row.Failed, row.Failures)
}

// fault rolls out a release that goes bad and checks that the rollout
// halts at step wantStep (0-based), rolls back, and ends with every pod on
// the stable release; culprit, if set, must be named in the reason.
func (f *fleetEnv) fault(name, version string, args []string, bake time.Duration, wantStep int, culprit string) *fleetRow {
	return f.faultManifest(name, version, f.manifestFile(version, "", args...), bake, wantStep, culprit)
}

func (f *fleetEnv) faultManifest(name, version, file string, bake time.Duration, wantStep int, culprit string) *fleetRow {
	t := f.t
	t.Helper()
	row := &fleetRow{Name: name}
	f.rows = append(f.rows, row)
	ph := f.startPhase()
	before := f.restarts()
	f.watch.reset()
	t0 := time.Now()
	out, code := f.run("rollout", "start", fleetCM, "-f", file, "--deployment", fleetName,
		"--steps", "1,25%,50%,100%", "--bake", bake.String(), "--max-swapping", "2", "--swap-timeout", "1m")
	row.Took = time.Since(t0)
	r := f.record()
	row.Outcome = fmt.Sprintf("%s at step %d/%d", r.Phase, r.Step+1, len(r.Steps))
	if code != 1 || r.Phase != fleet.RolledBack {
		t.Errorf("%s: exit code %d, phase %s (want 1, RolledBack): %s\n%s", name, code, r.Phase, r.Reason, out)
	}
	if r.Step != wantStep {
		t.Errorf("%s: halted at step %d/%d, want %d: %s", name, r.Step+1, len(r.Steps), wantStep+1, r.Reason)
	}
	if culprit != "" && !strings.Contains(r.Reason, culprit) {
		t.Errorf("%s: reason does not name pod %s: %s", name, culprit, r.Reason)
	}
	f.waitFleet(f.pods, f.stable, time.Minute)
	served := f.watch.served(version)
	row.CanaryRan = fmt.Sprintf("%d (%s)", len(served), strings.Join(served, ", "))
	f.endPhase(ph, row, before)
	// The requests that failed on the canary: the load's responses from
	// the bad version, and how many failed.
	for _, v := range ph.report.Versions {
		if v.Version == version {
			row.Note = fmt.Sprintf("%d responses from %s; ", v.Responses, version)
		}
	}
	row.Note += "reason: " + r.Reason
	t.Logf("%s: %s after %v; served by %s; %d requests, %d failed (%s), %d restarts\nreason: %s", name, row.Outcome,
		row.Took.Round(time.Millisecond), row.CanaryRan, row.Requests, row.Failed, row.Failures, row.Restarts, r.Reason)
	if row.SameUIDs != "yes" {
		t.Errorf("%s: pods replaced: %s", name, row.SameUIDs)
	}
	return row
}

// refusedOnOnePod: a release from the per-pod copy of hotswap in
// /opt/hotswap, pinned, whose file is moved away on one pod — by name,
// the first pod step 3 (50 %) adds. That pod refuses it at verification; the
// rollout halts there and the pods already on it go back.
func (f *fleetEnv) refusedOnOnePod() {
	t := f.t
	names := f.podNames()
	// The first pod step 3 adds: steps 1 and 2 (25 %) take the ones before.
	k := fleet.Step{Percent: 25}.Of(len(names))
	victim := names[k]
	f.attachTools(victim, "hotswap-bin", "/opt/hotswap")
	sum, err := kubectl(f.ctx, "-n", fleetNS, "exec", victim, "-c", "tools", "--", "sha256sum", "/opt/hotswap/hotswap")
	if err != nil {
		t.Fatal(err)
	}
	sum = strings.Fields(sum)[0]
	mv := func(from, to string) {
		if _, err := kubectl(f.ctx, "-n", fleetNS, "exec", victim, "-c", "tools", "--", "mv", from, to); err != nil {
			t.Fatal(err)
		}
	}
	mv("/opt/hotswap/hotswap", "/opt/hotswap/hotswap.away")
	// Put it back for what follows (a restart of that container needs it).
	defer mv("/opt/hotswap/hotswap.away", "/opt/hotswap/hotswap")
	file := f.manifestFile("v7-missing", fmt.Sprintf("binary: /opt/hotswap/hotswap\nsha256: %s\n", sum))
	row := f.faultManifest(fmt.Sprintf("binary missing on pod %d of %d (refused)", k+1, f.pods), "v7-missing", file, 2*time.Second, 2, victim)
	// Steps 1 and 2 put the first k pods on it; step 3 tells the next two
	// (--max-swapping 2): the one after the victim may serve it before the halt.
	served := f.watch.served("v7-missing")
	if len(served) < k || slices.Contains(served, victim) || !slices.Equal(served[:k], names[:k]) {
		t.Errorf("served v7-missing: %v; want %v (and perhaps %s), never %s", served, names[:k], names[k+1], victim)
	}
	f.checkNoFailures(row)
}

func (f *fleetEnv) checkNoFailures(row *fleetRow) {
	if row.Failed != 0 {
		f.t.Errorf("%s: %d of %d requests failed (%s)", row.Name, row.Failed, row.Requests, row.Failures)
	}
	if row.Restarts != 0 {
		f.t.Errorf("%s: %d container restarts", row.Name, row.Restarts)
	}
}

// interrupted: a rollout started with --detach; a driver that is killed
// (SIGKILL) at step 2; a second driver that continues from the object;
// during step 3 a canary pod deleted and the Deployment scaled up by 2.
func (f *fleetEnv) interrupted() {
	t := f.t
	version := "v8"
	row := &fleetRow{Name: "driver killed at step 2 and re-run; pod deleted and scale-up at step 3"}
	f.rows = append(f.rows, row)
	ph := f.startPhase()
	before := f.restarts()
	f.watch.reset()
	t0 := time.Now()
	if out, code := f.run("rollout", "start", fleetCM, "-f", f.manifestFile(version, ""), "--deployment", fleetName,
		"--steps", "1,25%,50%,100%", "--bake", "2s", "--max-swapping", "2", "--detach"); code != 0 {
		t.Fatalf("rollout start --detach: exit %d\n%s", code, out)
	}
	d1 := f.startDriver()
	f.waitRecord("step 2", func(r *fleet.Rollout) bool { return r.Step >= 1 })
	_ = d1.cmd.Process.Kill()
	_ = d1.cmd.Wait()
	killedAt := f.record()
	t.Logf("driver 1 killed at step %d/%d: %s", killedAt.Step+1, len(killedAt.Steps), killedAt.Reason)
	d2 := f.startDriver()
	f.waitRecord("step 3", func(r *fleet.Rollout) bool { return r.Step >= 2 })
	// A canary pod deleted: its replacement starts on what its new name
	// gets during a partial step (stable), the driver tops the canary up.
	cm := f.configMap()
	canary := fleet.ParsePods(cm.Data[fleet.KeyCanaryPods])
	if len(canary) == 0 {
		t.Fatalf("no canary pods at step 3: %q", cm.Data[fleet.KeyCanaryPods])
	}
	deleted := canary[0]
	if err := client(t).CoreV1().Pods(fleetNS).Delete(f.ctx, deleted, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kubectl(f.ctx, "-n", fleetNS, "scale", "deployment", fleetName, fmt.Sprintf("--replicas=%d", f.pods+2)); err != nil {
		t.Fatal(err)
	}
	code := d2.wait(3 * time.Minute)
	row.Took = time.Since(t0)
	if code != 0 {
		t.Errorf("driver 2 exited %d:\n%s", code, d2.output())
	}
	r := f.record()
	row.Outcome = string(r.Phase)
	if r.Phase != fleet.Promoted {
		t.Errorf("phase %s: %s", r.Phase, r.Reason)
	}
	last := f.waitFleet(f.pods+2, version, time.Minute)
	row.AllOn = last.Sub(t0)
	f.stable = version
	// The replacement and the new pods: each came up on the release its
	// name got when it started.
	var notes []string
	for _, p := range f.listPods() {
		if _, old := f.uids[p.Name]; old {
			continue
		}
		first := f.watch.first(p.Name)
		notes = append(notes, fmt.Sprintf("%s came up on %s", p.Name, first))
		if first != "" && first != "v1" && first != version {
			t.Errorf("new pod %s came up on %q", p.Name, first)
		}
	}
	row.Note = fmt.Sprintf("killed at step %d; deleted %s; %s", killedAt.Step+1, deleted, strings.Join(notes, ", "))
	f.endPhase(ph, row, before)
	t.Logf("%s: %s after %v; %d requests, %d failed (%s); %s", row.Name, r.Phase, row.Took.Round(time.Millisecond),
		row.Requests, row.Failed, row.Failures, row.Note)
	if row.Restarts != 0 {
		t.Errorf("%d container restarts", row.Restarts)
	}
	// Back to the fleet's size for what follows.
	if _, err := kubectl(f.ctx, "-n", fleetNS, "scale", "deployment", fleetName, fmt.Sprintf("--replicas=%d", f.pods)); err != nil {
		t.Fatal(err)
	}
	f.waitFleet(f.pods, version, 2*time.Minute)
	waitFor(f.ctx, t, "scaled down", func() bool { return len(f.listPods()) == f.pods })
	f.uids = f.currentUIDs()
}

// racingDrivers: two drivers drive one rollout at once. Every write is
// conditioned on the ConfigMap's resourceVersion, so each step is applied
// once: one RolloutStep event per step, one RolloutPromoted; and each
// step's analysis runs once, by the driver whose claim was written.
func (f *fleetEnv) racingDrivers() {
	t := f.t
	version := "v9"
	row := &fleetRow{Name: "two drivers at once"}
	f.rows = append(f.rows, row)
	ph := f.startPhase()
	before := f.restarts()
	since := time.Now().Add(-time.Second)
	t0 := time.Now()
	if out, code := f.run("rollout", "start", fleetCM, "-f", f.manifestFile(version, ""), "--deployment", fleetName,
		"--steps", "1,25%,50%,100%", "--bake", "2s", "--max-swapping", "2", "--detach"); code != 0 {
		t.Fatalf("rollout start --detach: exit %d\n%s", code, out)
	}
	var ds []*driverProc
	for _, n := range []string{"a", "b"} {
		log := filepath.Join(f.dir, "analysis-"+n)
		ds = append(ds, f.startDriver("--analysis", `echo "$HOTSWAP_ROLLOUT_STEP" >> `+log))
	}
	for i, d := range ds {
		if code := d.wait(3 * time.Minute); code != 0 {
			t.Errorf("driver %d exited %d:\n%s", i, code, d.output())
		}
	}
	row.Took = time.Since(t0)
	r := f.record()
	row.Outcome = string(r.Phase)
	last := f.waitFleet(f.pods, version, time.Minute)
	row.AllOn = last.Sub(t0)
	f.stable = version
	f.endPhase(ph, row, before)
	f.checkClean(row, r, fleet.Promoted)
	cm := f.configMap()
	if cm.Data["release.yaml"] != f.manifest(version, "") {
		t.Errorf("stable after the race:\n%s", cm.Data["release.yaml"])
	}
	for _, k := range []string{fleet.CanaryKey("release.yaml"), fleet.KeyCanaryPods} {
		if _, ok := cm.Data[k]; ok {
			t.Errorf("key %s left after promote", k)
		}
	}
	evs := f.rolloutEvents(since, version)
	count := map[string]int{}
	for _, e := range evs {
		count[e]++
	}
	if count["RolloutStep"] != len(r.Steps)-1 || count["RolloutPromoted"] != 1 || count["RolloutStarted"] != 1 {
		t.Errorf("events %v: want one RolloutStarted, %d RolloutStep, one RolloutPromoted", evs, len(r.Steps)-1)
	}
	runs := map[string]int{}
	for _, n := range []string{"a", "b"} {
		b, _ := os.ReadFile(filepath.Join(f.dir, "analysis-"+n))
		for _, s := range strings.Fields(string(b)) {
			runs[s]++
		}
	}
	var steps []string
	for i := range r.Steps {
		s := fmt.Sprint(i + 1)
		steps = append(steps, fmt.Sprintf("step %s: %d", s, runs[s]))
		if runs[s] != 1 {
			t.Errorf("step %s: the analysis ran %d times, want once (the driver whose claim was written)", s, runs[s])
		}
	}
	row.Note = fmt.Sprintf("events %v; analysis runs per step (both drivers): %s", count, strings.Join(steps, ", "))
	t.Logf("%s: %s after %v; %s", row.Name, r.Phase, row.Took.Round(time.Millisecond), row.Note)
}

// inClusterDriver enables the chart's rolloutDriver (its own Deployment,
// service account and Role) and starts a rollout with --detach: the driver
// in the cluster takes it to Promoted, with no driver outside.
func (f *fleetEnv) inClusterDriver() {
	t := f.t
	version := "v10"
	if _, err := helm(f.ctx, "upgrade", fleetRelease, filepath.Join(repoRoot(), "charts", "hotswap"), "-n", fleetNS,
		"--reuse-values", "--set", "rolloutDriver.enabled=true", "--set", "rolloutDriver.interval=250ms",
		"--set-json", fmt.Sprintf(`rolloutDriver.env=[{"name":"KUBERNETES_SERVICE_HOST","value":"%s"},{"name":"KUBERNETES_SERVICE_PORT","value":"%s"}]`,
			env.gateway, env.apiPort)); err != nil {
		t.Fatalf("helm upgrade (rolloutDriver.enabled): %v", err)
	}
	const driver = fleetName + "-rollout"
	ctx, cancel := context.WithTimeout(f.ctx, 2*time.Minute)
	defer cancel()
	waitFor(ctx, t, "the in-cluster driver available", func() bool {
		d, err := client(t).AppsV1().Deployments(fleetNS).Get(ctx, driver, metav1.GetOptions{})
		return err == nil && d.Status.AvailableReplicas == 1
	})
	// The server Deployment was not rolled by enabling the driver.
	if got := f.currentUIDs(); len(got) != f.pods {
		t.Fatalf("%d server pods after enabling the driver, want %d", len(got), f.pods)
	}
	row := &fleetRow{Name: "in-cluster driver (chart rolloutDriver), rollout started with --detach"}
	f.rows = append(f.rows, row)
	ph := f.startPhase()
	before := f.restarts()
	t0 := time.Now()
	if out, code := f.run("rollout", "start", fleetCM, "-f", f.manifestFile(version, ""), "--deployment", fleetName,
		"--steps", "1,25%,50%,100%", "--bake", "0s", "--max-swapping", "2", "--detach"); code != 0 {
		t.Fatalf("rollout start --detach: exit %d\n%s", code, out)
	}
	f.waitRecord("promoted by the in-cluster driver", func(r *fleet.Rollout) bool { return !r.Phase.Live() })
	row.Took = time.Since(t0)
	r := f.record()
	row.Outcome = string(r.Phase)
	last := f.waitFleet(f.pods, version, time.Minute)
	row.AllOn = last.Sub(t0)
	f.stable = version
	row.Note = "driven by " + r.Driver
	f.endPhase(ph, row, before)
	if out, err := kubectl(f.ctx, "-n", fleetNS, "logs", "deployment/"+driver, "--tail=20"); err == nil {
		t.Logf("in-cluster driver log:\n%s", out)
	}
	f.checkClean(row, r, fleet.Promoted)
	if !strings.HasPrefix(r.Driver, driver) {
		t.Errorf("the rollout was driven by %q, want the in-cluster driver's pod %s-...", r.Driver, driver)
	}
	t.Logf("%s: %s after %v, %s", row.Name, r.Phase, row.Took.Round(time.Millisecond), row.Note)
}

// ---- the load, by phase

type phase struct {
	r      *load.Runner
	report *load.Report
}

// startPhase starts the load through the Service (the proxy): keep-alive
// and new-connection clients, 10 % slow requests.
func (f *fleetEnv) startPhase() *phase {
	cfg := loadConfig(f.proxy.Addr())
	cfg.Duration = 10 * time.Minute
	r, err := load.Start(f.ctx, cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	// A scenario that fails mid-phase: stop the load before the proxy,
	// whose keep-alive connections it would hold open.
	f.t.Cleanup(func() { r.Stop(); r.Wait() })
	time.Sleep(500 * time.Millisecond) // a baseline
	return &phase{r: r}
}

func (p *phase) stop() *load.Report {
	if p.report == nil {
		time.Sleep(time.Second) // the last drains finish under load
		p.r.Stop()
		p.report = p.r.Wait()
	}
	return p.report
}

func (f *fleetEnv) endPhase(ph *phase, row *fleetRow, restartsBefore int32) {
	rep := ph.stop()
	row.Requests, row.Failed, row.Failures = rep.Attempts, int64(rep.Failed()), rep.Failures.String()
	row.Restarts = f.restarts() - restartsBefore
	now := f.currentUIDs()
	var replaced []string
	for name, uid := range f.uids {
		if u, ok := now[name]; ok && u != uid {
			replaced = append(replaced, name)
		}
		if _, ok := now[name]; !ok && !strings.Contains(row.Note, name) {
			replaced = append(replaced, name+" (gone)")
		}
	}
	row.SameUIDs = "yes"
	if len(replaced) > 0 {
		row.SameUIDs = "no: " + strings.Join(replaced, ", ")
	}
	if row.Failed > 0 {
		f.t.Logf("load during %s:\n%s", row.Name, rep)
	}
}

// ---- the driver CLI

// run runs the hotswap CLI against the cluster and returns its combined
// output and exit code.
func (f *fleetEnv) run(args ...string) (string, int) {
	cmd := exec.CommandContext(f.ctx, f.hotswap, append(args, "-n", fleetNS, "--kubeconfig", env.kubeconfig, "--interval", "250ms")...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		f.t.Fatalf("hotswap %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), code
}

type driverProc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	code int
}

func (d *driverProc) Write(b []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.out.Write(b)
}

func (d *driverProc) output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.output()
}

// startDriver starts `hotswap rollout drive` in the background.
func (f *fleetEnv) startDriver(extra ...string) *driverProc {
	args := append([]string{"rollout", "drive", fleetCM, "-n", fleetNS, "--kubeconfig", env.kubeconfig, "--interval", "250ms"}, extra...)
	d := &driverProc{cmd: exec.Command(f.hotswap, args...), done: make(chan struct{})}
	d.cmd.Stdout, d.cmd.Stderr = d, d
	if err := d.cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() {
		_ = d.cmd.Process.Kill()
		if f.t.Failed() {
			f.t.Logf("hotswap %s:\n%s", strings.Join(args, " "), d.output())
		}
	})
	return d
}

func (d *driverProc) wait(within time.Duration) int {
	go func() {
		err := d.cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok {
			d.code = ee.ExitCode()
		} else if err != nil {
			d.code = -1
		}
		close(d.done)
	}()
	select {
	case <-d.done:
		return d.code
	case <-time.After(within):
		_ = d.cmd.Process.Kill()
		<-d.done
		return -1
	}
}

// ---- objects

// manifest is a release of the image's own example server: /hotswap serve
// (root's, in the image), version and extra server args; extra replaces
// the binary line.
func (f *fleetEnv) manifest(version, extra string, args ...string) string {
	bin := "binary: /hotswap\n"
	if extra != "" {
		bin = extra
	}
	a := `["serve"`
	for _, x := range args {
		a += `, "` + x + `"`
	}
	return fmt.Sprintf("version: %s\n%sargs: %s]\n", version, bin, a)
}

func (f *fleetEnv) manifestFile(version, extra string, args ...string) string {
	p := filepath.Join(f.dir, version+".yaml")
	writeFile(f.t, p, f.manifest(version, extra, args...))
	return p
}

// applyStable writes version as the stable release (creating the ConfigMap).
func (f *fleetEnv) applyStable(version string) {
	f.t.Helper()
	cms := client(f.t).CoreV1().ConfigMaps(fleetNS)
	for {
		cm, err := cms.Get(f.ctx, fleetCM, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = cms.Create(f.ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fleetCM},
				Data: map[string]string{"release.yaml": f.manifest(version, "")}}, metav1.CreateOptions{})
			if err != nil {
				f.t.Fatal(err)
			}
			return
		}
		if err != nil {
			f.t.Fatal(err)
		}
		cm.Data["release.yaml"] = f.manifest(version, "")
		if _, err = cms.Update(f.ctx, cm, metav1.UpdateOptions{}); err == nil {
			return
		} else if !apierrors.IsConflict(err) {
			f.t.Fatal(err)
		}
	}
}

func (f *fleetEnv) configMap() *corev1.ConfigMap {
	cm, err := client(f.t).CoreV1().ConfigMaps(fleetNS).Get(f.ctx, fleetCM, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return cm
}

func (f *fleetEnv) record() *fleet.Rollout {
	f.t.Helper()
	r, err := fleet.ParseRollout(f.configMap().Data[fleet.KeyRollout])
	if err != nil || r == nil {
		f.t.Fatalf("rollout record: %v %v", r, err)
	}
	return r
}

func (f *fleetEnv) waitRecord(what string, ok func(*fleet.Rollout) bool) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, 2*time.Minute)
	defer cancel()
	waitFor(ctx, f.t, "rollout "+what, func() bool {
		r, err := fleet.ParseRollout(f.configMap().Data[fleet.KeyRollout])
		return err == nil && r != nil && ok(r)
	})
}

// rolloutEvents returns the reasons of the events on the ConfigMap since
// since that mention version, oldest first.
func (f *fleetEnv) rolloutEvents(since time.Time, version string) []string {
	evs, err := client(f.t).CoreV1().Events(fleetNS).List(f.ctx, metav1.ListOptions{FieldSelector: fields.AndSelectors(
		fields.OneTermEqualSelector("involvedObject.kind", "ConfigMap"),
		fields.OneTermEqualSelector("involvedObject.name", fleetCM)).String()})
	if err != nil {
		f.t.Fatal(err)
	}
	type ev struct {
		at     time.Time
		reason string
	}
	var out []ev
	for _, e := range evs.Items {
		at := e.EventTime.Time
		if at.IsZero() {
			at = e.FirstTimestamp.Time
		}
		if at.Before(since) || !strings.Contains(e.Message, version) {
			continue
		}
		for range max(e.Count, 1) {
			out = append(out, ev{at, e.Reason})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].at.Before(out[j].at) })
	var reasons []string
	for _, e := range out {
		reasons = append(reasons, e.reason)
	}
	return reasons
}

func (f *fleetEnv) deployment() *appsv1.Deployment {
	d, err := client(f.t).AppsV1().Deployments(fleetNS).Get(f.ctx, fleetName, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

// listPods lists the fleet's pods that are not terminating.
func (f *fleetEnv) listPods() []corev1.Pod {
	list, err := client(f.t).CoreV1().Pods(fleetNS).List(f.ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + fleetRelease + ",app.kubernetes.io/name=hotswap"})
	if err != nil {
		f.t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

func (f *fleetEnv) podNames() []string {
	var names []string
	for _, p := range f.listPods() {
		names = append(names, p.Name)
	}
	sort.Strings(names)
	return names
}

func (f *fleetEnv) currentUIDs() map[string]types.UID {
	m := map[string]types.UID{}
	for _, p := range f.listPods() {
		m[p.Name] = p.UID
	}
	return m
}

// restarts sums the container restarts of the fleet's pods.
func (f *fleetEnv) restarts() int32 {
	var n int32
	for _, p := range f.listPods() {
		n += restarts(&p)
	}
	return n
}

// waitFleet waits until n pods, none terminating, are Ready and report
// version, and returns when the last of them first reported it (from the
// pod watch, when it runs).
func (f *fleetEnv) waitFleet(n int, version string, within time.Duration) time.Time {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, within)
	defer cancel()
	var pods []corev1.Pod
	for {
		pods = f.listPods()
		ok := len(pods) == n
		for i := range pods {
			p := &pods[i]
			if p.Annotations[annVersion] != version || !podReady(p) || !conditionTrue(p, condReady) {
				ok = false
			}
		}
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			for i := range pods {
				f.t.Logf("pod %s:\n%s", pods[i].Name, describe(&pods[i]))
			}
			f.t.Fatalf("not %d pods Ready on %s within %v", n, version, within)
		case <-time.After(100 * time.Millisecond):
		}
	}
	var last time.Time
	if f.watch != nil {
		for _, p := range pods {
			if at, ok := f.watch.firstOn(p.Name, version); ok && at.After(last) {
				last = at
			}
		}
	}
	if last.IsZero() {
		last = time.Now()
	}
	return last
}

// attachTools adds the busybox tools container to pod, with volume mounted
// at path, and waits for it to run.
func (f *fleetEnv) attachTools(pod, volume, path string) {
	t := f.t
	custom := filepath.Join(f.dir, "tools-"+pod+".json")
	writeFile(t, custom, `{"volumeMounts": [{"name": "`+volume+`", "mountPath": "`+path+`"}],
 "securityContext": {"runAsUser": 65532, "runAsGroup": 65532, "runAsNonRoot": true,
   "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}`)
	if _, err := kubectl(f.ctx, "-n", fleetNS, "debug", pod, "--image="+toolsImage, "--image-pull-policy=Never",
		"-c", "tools", "--profile=restricted", "--custom="+custom,
		"--", "sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"); err != nil {
		t.Fatalf("kubectl debug: %v", err)
	}
	ctx, cancel := context.WithTimeout(f.ctx, 30*time.Second)
	defer cancel()
	waitPod(ctx, t, fleetNS, pod, "tools container running", func(p *corev1.Pod) bool {
		for _, cs := range p.Status.EphemeralContainerStatuses {
			if cs.Name == "tools" && cs.State.Running != nil {
				return true
			}
		}
		return false
	})
}

// ---- watching what every pod reports

// podWatch records, for every pod of the fleet, each version it reported
// in its hotswap.dev/version annotation and when first.
type podWatch struct {
	mu    sync.Mutex
	seen  map[string]map[string]time.Time // pod → version → first seen
	order map[string][]string             // pod → versions in order
	since time.Time                       // served() counts from here
}

func startPodWatch(t *testing.T, ctx context.Context) *podWatch {
	w := &podWatch{seen: map[string]map[string]time.Time{}, order: map[string][]string{}}
	c := client(t)
	sel := "app.kubernetes.io/instance=" + fleetRelease + ",app.kubernetes.io/name=hotswap"
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			list, err := c.CoreV1().Pods(fleetNS).List(ctx, metav1.ListOptions{LabelSelector: sel})
			if err != nil {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			for i := range list.Items {
				w.note(&list.Items[i])
			}
			wi, err := c.CoreV1().Pods(fleetNS).Watch(ctx, metav1.ListOptions{LabelSelector: sel, ResourceVersion: list.ResourceVersion})
			if err != nil {
				continue
			}
			for ev := range wi.ResultChan() {
				if p, ok := ev.Object.(*corev1.Pod); ok && ev.Type != watch.Deleted {
					w.note(p)
				}
			}
		}
	}()
	return w
}

func (w *podWatch) note(p *corev1.Pod) {
	v := p.Annotations[annVersion]
	if v == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen[p.Name] == nil {
		w.seen[p.Name] = map[string]time.Time{}
	}
	if _, ok := w.seen[p.Name][v]; !ok {
		w.seen[p.Name][v] = time.Now()
		w.order[p.Name] = append(w.order[p.Name], v)
	}
}

// reset starts a new count for served.
func (w *podWatch) reset() {
	w.mu.Lock()
	w.since = time.Now()
	w.mu.Unlock()
}

// served returns the pods that reported version since the last reset.
func (w *podWatch) served(version string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for pod, vs := range w.seen {
		if at, ok := vs[version]; ok && !at.Before(w.since) {
			out = append(out, pod)
		}
	}
	sort.Strings(out)
	return out
}

func (w *podWatch) firstOn(pod, version string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	at, ok := w.seen[pod][version]
	return at, ok
}

// first is the first version pod reported.
func (w *podWatch) first(pod string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.order[pod]) == 0 {
		return ""
	}
	return w.order[pod][0]
}

// ---- the table

func (f *fleetEnv) writeFleetTable() {
	ms := func(d time.Duration) string {
		if d == 0 {
			return "—"
		}
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Measured by `go test -count=1 -run TestFleetRollout -v ./e2e/cluster/` on %s, %d pods, load through the Service (%s).\n\n",
		hostKernel(), f.pods, "keep-alive and new connections, 10 % slow, every attempt counted")
	b.WriteString("| scenario | time to 100 % | every pod on it / old pods gone | outcome | requests | failed | restarts | same pod UIDs |\n")
	b.WriteString("|---|---:|---:|---|---:|---:|---:|---|\n")
	for _, r := range f.rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %d%s | %d | %s |\n", r.Name, ms(r.Took), ms(r.AllOn), r.Outcome,
			r.Requests, r.Failed, kinds(r), r.Restarts, r.SameUIDs)
	}
	b.WriteString("\n")
	for _, r := range f.rows {
		if r.CanaryRan != "" || r.Note != "" {
			fmt.Fprintf(&b, "- %s: ", r.Name)
			if r.CanaryRan != "" {
				fmt.Fprintf(&b, "pods that served it: %s. ", r.CanaryRan)
			}
			fmt.Fprintf(&b, "%s\n", r.Note)
		}
	}
	if len(f.rows) >= 4 {
		for _, pair := range [][2]int{{0, 1}, {2, 3}} {
			a, r := f.rows[pair[0]], f.rows[pair[1]]
			if a.Took > 0 {
				fmt.Fprintf(&b, "- %s vs %s: %.1f× faster\n", a.Name, r.Name, r.Took.Seconds()/a.Took.Seconds())
			}
		}
	}
	out := b.String()
	f.t.Logf("measured:\n%s", out)
	if path := os.Getenv("HOTSWAP_FLEET_OUT"); path != "" {
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			f.t.Errorf("HOTSWAP_FLEET_OUT: %v", err)
		}
	}
	b2, _ := json.MarshalIndent(f.rows, "", "  ")
	f.t.Logf("rows: %s", b2)
}

func kinds(r *fleetRow) string {
	if r.Failed == 0 {
		return ""
	}
	return " (" + r.Failures + ")"
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	if s := os.Getenv(name); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return d
	}
	return def
}

func envInt(t *testing.T, name string, def int) int {
	if s := os.Getenv(name); s != "" {
		n := atoi(s)
		if n <= 0 {
			t.Fatalf("%s=%q: want a positive number", name, s)
		}
		return n
	}
	return def
}
