package kube_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/hotswap-dev/hotswap/e2e/kubetest"
	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/hotswap/admin"
	"github.com/hotswap-dev/hotswap/hotswap/kube"
)

var cluster *kubetest.Cluster

func TestMain(m *testing.M) { kubetest.Main(m, &cluster) }

// policyRules converts the reporter's rules for the RBAC API.
func policyRules(rules []kube.Rule) []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	for _, r := range rules {
		out = append(out, rbacv1.PolicyRule{APIGroups: r.APIGroups, Resources: r.Resources, Verbs: r.Verbs})
	}
	return out
}

var nsSeq struct {
	sync.Mutex
	n int
}

// env is one test's namespace, pod and service account bound to rules.
type env struct {
	ns, pod string
	uid     types.UID
	sa      *rest.Config
}

func newEnv(t testing.TB, rules []kube.Rule) *env {
	t.Helper()
	ctx := context.Background()
	nsSeq.Lock()
	nsSeq.n++
	name := strings.ToLower(regexp.MustCompile(`[^a-zA-Z0-9]+`).ReplaceAllString(t.Name(), "-"))
	if len(name) > 40 {
		name = name[:40]
	}
	e := &env{ns: fmt.Sprintf("%s-%d", strings.Trim(name, "-"), nsSeq.n), pod: "app-0"}
	nsSeq.Unlock()
	if err := cluster.CreateNamespace(ctx, e.ns); err != nil {
		t.Fatal(err)
	}
	if err := cluster.CreateServiceAccount(ctx, e.ns, "hotswap"); err != nil {
		t.Fatal(err)
	}
	pod, err := cluster.CreatePod(ctx, e.ns, e.pod, kubetest.PodReadinessGate(), kubetest.PodServiceAccount("hotswap"))
	if err != nil {
		t.Fatal(err)
	}
	e.uid = pod.UID
	if len(rules) > 0 {
		if err := cluster.ApplyRole(ctx, e.ns, "hotswap", policyRules(rules), "hotswap"); err != nil {
			t.Fatal(err)
		}
	}
	if e.sa, err = cluster.SAConfig(ctx, e.ns, "hotswap"); err != nil {
		t.Fatal(err)
	}
	return e
}

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// start runs a Reporter for e as its service account until the test ends,
// knowing its pod's UID as the chart's $POD_UID tells it.
func (e *env) start(t testing.TB, mutate ...func(*kube.Config)) *kube.Reporter {
	t.Helper()
	cfg := kube.Config{
		Mode: kube.ModeOn, REST: e.sa, PodName: e.pod, PodNamespace: e.ns, PodUID: string(e.uid),
		RetryBase: 20 * time.Millisecond, RetryMax: 500 * time.Millisecond, RequestTimeout: 2 * time.Second,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	r, err := kube.New(cfg, slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

// engine makes the events a real engine would, for one pod.
type engine struct {
	st  hotswap.Status
	obs hotswap.Observer
}

func (g *engine) emit(t hotswap.EventType, warn bool, msg string) {
	g.obs.Observe(hotswap.Event{Type: t, Time: time.Now(), Message: msg, Warning: warn, Status: g.st})
}

func (g *engine) serveFirst(version string) {
	g.st = hotswap.Status{Phase: hotswap.PhaseServing, Generation: 1, Version: version}
	g.emit(hotswap.StatusChanged, false, "generation 1 ("+version+") serving")
}

func (g *engine) swap(version string, ok bool) {
	g.st.Swaps++
	id := g.st.Swaps
	g.st.Phase = hotswap.PhaseSwapping
	g.emit(hotswap.SwapStarted, false, fmt.Sprintf("swap %d: starting %s", id, version))
	res := &hotswap.SwapResult{ID: id, Trigger: "signal", Started: time.Now().Add(-120 * time.Millisecond),
		Duration: 120 * time.Millisecond, FromVersion: g.st.Version, ToVersion: version, FromGen: g.st.Generation}
	g.st.Phase = hotswap.PhaseServing
	if ok {
		res.Result, res.ToGen = hotswap.ResultSucceeded, g.st.Generation+1
		g.st.Generation, g.st.Version, g.st.LastSwap = res.ToGen, version, res
		g.emit(hotswap.SwapSucceeded, false, fmt.Sprintf("swap %d: generation %d (%s) serving", id, res.ToGen, version))
		return
	}
	res.Result, res.Reason = hotswap.ResultFailed, "exited with status 1 before ready"
	g.st.LastSwap = res
	g.emit(hotswap.SwapFailed, true, fmt.Sprintf("swap %d failed, rolled back: %s", id, res.Reason))
}

func (e *env) getPod(t testing.TB) *corev1.Pod {
	t.Helper()
	p, err := cluster.Client().CoreV1().Pods(e.ns).Get(context.Background(), e.pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitFor polls until check returns nil or timeout passes, returning the
// last error.
func waitFor(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func condition(p *corev1.Pod, typ corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == typ {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// reported checks that the pod shows generation gen, version and phase.
func (e *env) reported(gen int, version string, phase hotswap.Phase, ready corev1.ConditionStatus) error {
	p, err := cluster.Client().CoreV1().Pods(e.ns).Get(context.Background(), e.pod, metav1.GetOptions{})
	if err != nil {
		return err
	}
	a := p.Annotations
	if a[kube.AnnotationGeneration] != fmt.Sprint(gen) || a[kube.AnnotationVersion] != version || a[kube.AnnotationPhase] != string(phase) {
		return fmt.Errorf("annotations = %v, want generation %d version %s phase %s", a, gen, version, phase)
	}
	c := condition(p, kube.ConditionReady)
	if c == nil || c.Status != ready {
		return fmt.Errorf("condition %s = %+v, want status %s", kube.ConditionReady, c, ready)
	}
	return nil
}

// podEvents lists the events attached to the pod by UID, as kubectl describe does.
func (e *env) podEvents() ([]corev1.Event, error) {
	l, err := cluster.Client().CoreV1().Events(e.ns).List(context.Background(), metav1.ListOptions{
		FieldSelector: fields.Set{"involvedObject.uid": string(e.uid), "involvedObject.name": e.pod}.String(),
	})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

func TestReportsSwap(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, kube.RequiredRules())
	// A condition someone else owns (the kubelet's, here set by the test):
	// the reporter's patches must leave it alone.
	_, err := cluster.Client().CoreV1().Pods(e.ns).Patch(ctx, e.pod, types.StrategicMergePatchType,
		[]byte(`{"status":{"conditions":[{"type":"PodScheduled","status":"True"}]}}`), metav1.PatchOptions{}, "status")
	if err != nil {
		t.Fatal(err)
	}
	r := e.start(t)
	g := &engine{obs: r}
	g.serveFirst("v1.0")
	if err := waitFor(10*time.Second, func() error { return e.reported(1, "v1.0", hotswap.PhaseServing, corev1.ConditionTrue) }); err != nil {
		t.Fatal(err)
	}
	g.swap("v1.1", true)
	if err := waitFor(10*time.Second, func() error { return e.reported(2, "v1.1", hotswap.PhaseServing, corev1.ConditionTrue) }); err != nil {
		t.Fatal(err)
	}

	p := e.getPod(t)
	var last kube.LastSwap
	if err := json.Unmarshal([]byte(p.Annotations[kube.AnnotationLastSwap]), &last); err != nil {
		t.Fatalf("last-swap annotation %q: %v", p.Annotations[kube.AnnotationLastSwap], err)
	}
	if last.Result != "succeeded" || last.ToVersion != "v1.1" || last.Duration != "120ms" || last.Time.IsZero() {
		t.Errorf("last-swap = %+v", last)
	}
	if c := condition(p, "PodScheduled"); c == nil || c.Status != corev1.ConditionTrue {
		t.Errorf("PodScheduled condition clobbered: %+v", p.Status.Conditions)
	}

	// The same, through kubectl.
	out, err := cluster.Kubectl(ctx, "get", "pod", "-n", e.ns, e.pod, "-o",
		`jsonpath={.metadata.annotations.hotswap\.dev/version} {.status.conditions[?(@.type=="hotswap.dev/ready")].status}`)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "v1.1 True" {
		t.Errorf("kubectl: version and ready = %q, want %q", out, "v1.1 True")
	}

	// Events, by UID (what kubectl describe does) and in kubectl describe.
	if err := waitFor(10*time.Second, func() error {
		evs, err := e.podEvents()
		if err != nil {
			return err
		}
		var reasons []string
		for _, ev := range evs {
			reasons = append(reasons, ev.Reason)
		}
		if !slices.Contains(reasons, "SwapStarted") || !slices.Contains(reasons, "SwapSucceeded") {
			return fmt.Errorf("pod events %v, want SwapStarted and SwapSucceeded", reasons)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	out, err = cluster.Kubectl(ctx, "describe", "pod", "-n", e.ns, e.pod)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`Normal\s+SwapSucceeded\s+.*hotswap\s+swap 1: generation 2 \(v1.1\) serving`).Match(out) {
		t.Errorf("kubectl describe pod lacks the SwapSucceeded event:\n%s", out)
	}

	// A failed swap: a Warning event, annotations keep the serving version.
	g.swap("v1.2-bad", false)
	if err := waitFor(10*time.Second, func() error {
		p := e.getPod(t)
		if !strings.Contains(p.Annotations[kube.AnnotationLastSwap], `"result":"failed"`) {
			return fmt.Errorf("last-swap = %s", p.Annotations[kube.AnnotationLastSwap])
		}
		return e.reported(2, "v1.1", hotswap.PhaseServing, corev1.ConditionTrue)
	}); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(10*time.Second, func() error {
		out, err := cluster.Kubectl(ctx, "get", "events", "-n", e.ns, "--field-selector", "reason=SwapFailed", "-o", "jsonpath={.items[*].type}")
		if err != nil || string(out) != "Warning" {
			return fmt.Errorf("SwapFailed event types %q, err %v", out, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if s := r.Stats(); s.PatchErrors != 0 || s.EventErrors != 0 || s.LookupErrors != 0 {
		t.Errorf("errors with the required rules: %+v", s)
	}
}

func TestUnreadyDuringSwap(t *testing.T) {
	e := newEnv(t, kube.RequiredRules())
	r := e.start(t, func(c *kube.Config) { c.UnreadyDuringSwap = true })
	g := &engine{obs: r}
	g.serveFirst("v1")
	if err := waitFor(10*time.Second, func() error { return e.reported(1, "v1", hotswap.PhaseServing, corev1.ConditionTrue) }); err != nil {
		t.Fatal(err)
	}
	g.st.Phase = hotswap.PhaseSwapping
	g.emit(hotswap.SwapStarted, false, "swap 1: starting v2")
	if err := waitFor(10*time.Second, func() error { return e.reported(1, "v1", hotswap.PhaseSwapping, corev1.ConditionFalse) }); err != nil {
		t.Fatal(err)
	}
	g.st.Phase, g.st.Generation, g.st.Version = hotswap.PhaseServing, 2, "v2"
	g.emit(hotswap.SwapSucceeded, false, "swap 1: generation 2 (v2) serving")
	if err := waitFor(10*time.Second, func() error { return e.reported(2, "v2", hotswap.PhaseServing, corev1.ConditionTrue) }); err != nil {
		t.Fatal(err)
	}
}

// With no permission at all, Observe stays instant, errors are counted and
// exported by the admin endpoint, and nothing reaches the pod.
func TestForbiddenNeverBlocks(t *testing.T) {
	e := newEnv(t, nil)
	r := e.start(t, func(c *kube.Config) { c.PodUID = "" }) // so it tries to read it
	adm := admin.New(admin.Options{Addr: "127.0.0.1:0", ReportErrors: r.Errors}, nil)
	l, err := adm.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = adm.Serve(ctx, l) }()

	g := &engine{obs: hotswap.ObserverFunc(func(ev hotswap.Event) { r.Observe(ev); adm.Observe(ev) })}
	var slowest time.Duration
	g.serveFirst("v1")
	for i := range 200 {
		t0 := time.Now()
		g.swap(fmt.Sprintf("v1.%d", i), true)
		slowest = max(slowest, time.Since(t0))
	}
	t.Logf("slowest swap's two Observe calls with a forbidding apiserver: %s", slowest)
	if slowest > time.Second {
		t.Errorf("Observe blocked for %s", slowest)
	}
	if err := waitFor(10*time.Second, func() error {
		if s := r.Stats(); s.PatchErrors == 0 || s.LookupErrors == 0 || s.EventErrors == 0 {
			return fmt.Errorf("stats %+v: want patch, lookup and event errors counted", s)
		}
		resp, err := http.Get("http://" + l.Addr().String() + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		m := regexp.MustCompile(`(?m)^hotswap_report_errors_total (\d+)`).FindSubmatch(b)
		if m == nil || string(m[1]) == "0" {
			return fmt.Errorf("hotswap_report_errors_total = %q", m)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if p := e.getPod(t); p.Annotations[kube.AnnotationVersion] != "" {
		t.Errorf("a forbidden reporter changed the pod: %v", p.Annotations)
	}
	t.Logf("stats: %+v", r.Stats())
}

// The apiserver goes away mid-run and comes back: the pod catches up with
// the latest state, not with each intermediate one.
func TestAPIServerRestartCatchesUp(t *testing.T) {
	e := newEnv(t, kube.RequiredRules())
	r := e.start(t)
	g := &engine{obs: r}
	g.serveFirst("v1")
	if err := waitFor(10*time.Second, func() error { return e.reported(1, "v1", hotswap.PhaseServing, corev1.ConditionTrue) }); err != nil {
		t.Fatal(err)
	}
	if err := cluster.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	before := r.Stats()
	for i := 2; i <= 6; i++ {
		g.swap(fmt.Sprintf("v%d", i), true)
	}
	if err := waitFor(10*time.Second, func() error {
		if r.Stats().PatchErrors == before.PatchErrors {
			return fmt.Errorf("no patch failed while the apiserver was down")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := cluster.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	if err := waitFor(30*time.Second, func() error { return e.reported(6, "v6", hotswap.PhaseServing, corev1.ConditionTrue) }); err != nil {
		t.Fatal(err)
	}
	after := r.Stats()
	t.Logf("apiserver restart took %s; pod caught up %s after /readyz (retry max 500ms); patch errors while down %d, patches after %d",
		up.Sub(t0).Round(time.Millisecond), time.Since(up).Round(time.Millisecond),
		after.PatchErrors-before.PatchErrors, after.Patches-before.Patches)
}

// A storm of events becomes a handful of patches: latest state wins.
func TestBurstCoalesces(t *testing.T) {
	e := newEnv(t, kube.RequiredRules())
	r := e.start(t)
	g := &engine{obs: r}
	g.serveFirst("v0")
	const swaps = 500 // two events each: 1,000 events
	t0 := time.Now()
	for i := 1; i <= swaps; i++ {
		g.swap(fmt.Sprintf("v%d", i), true)
	}
	burst := time.Since(t0)
	if err := waitFor(20*time.Second, func() error {
		return e.reported(swaps+1, fmt.Sprintf("v%d", swaps), hotswap.PhaseServing, corev1.ConditionTrue)
	}); err != nil {
		t.Fatal(err)
	}
	s := r.Stats()
	events := s.Observed - 1
	t.Logf("%d events observed in %s (%.1f µs each); %d patches (%.3f patches/event, %.3f per swap); %d events dropped by the queue, %d event requests",
		events, burst.Round(time.Microsecond), float64(burst.Microseconds())/float64(events),
		s.Patches, float64(s.Patches)/float64(events), float64(s.Patches)/swaps, s.EventsDropped, s.EventsSent)
	if s.Patches*10 > events {
		t.Errorf("%d patches for %d events: coalescing does not work", s.Patches, events)
	}
}

// The chart's Role is exactly enough: RequiredRules makes every check pass,
// and removing any single verb makes one fail.
func TestRequiredRulesExactlyEnough(t *testing.T) {
	type variant struct {
		name  string
		rules []kube.Rule
	}
	variants := []variant{{"all", kube.RequiredRules()}}
	for i, r := range kube.RequiredRules() {
		for j, v := range r.Verbs {
			rules := kube.RequiredRules()
			rules[i].Verbs = slices.Delete(slices.Clone(r.Verbs), j, j+1)
			if len(rules[i].Verbs) == 0 {
				rules = slices.Delete(rules, i, i+1)
			}
			variants = append(variants, variant{"without " + v + " " + strings.Join(r.Resources, ","), rules})
		}
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, v.rules)
			r := e.start(t)
			err := e.reportEverything(r, 5*time.Second)
			switch {
			case v.name == "all" && err != nil:
				t.Fatalf("with the required rules: %v", err)
			case v.name != "all" && err == nil:
				t.Fatalf("reporting still fully works %s: the rule is not needed", v.name)
			case v.name != "all":
				t.Logf("fails as it should: %v (errors counted: %d)", err, r.Errors())
			}
		})
	}
}

// Without $POD_UID the reporter reads its pod's UID (pods get, beyond
// RequiredRules), and events still attach to the pod; without get they lose
// the UID and the failed read is counted.
func TestWithoutPodUIDReadsPod(t *testing.T) {
	get := kube.Rule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}}
	for _, c := range []struct {
		name  string
		rules []kube.Rule
		works bool
	}{
		{"with pods get", append(kube.RequiredRules(), get), true},
		{"RequiredRules only", kube.RequiredRules(), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, c.rules)
			r := e.start(t, func(cfg *kube.Config) { cfg.PodUID = "" })
			err := e.reportEverything(r, 5*time.Second)
			lookupErrs := r.Stats().LookupErrors
			switch {
			case c.works && (err != nil || lookupErrs != 0):
				t.Fatalf("%v; %d failed reads of the UID", err, lookupErrs)
			case !c.works && (err == nil || lookupErrs == 0):
				t.Fatalf("reporting fully works without $POD_UID and pods get (%v, %d failed reads)", err, lookupErrs)
			case !c.works:
				t.Logf("fails as it should: %v (failed reads of the UID: %d)", err, lookupErrs)
			}
		})
	}
}

// reportEverything drives every kind of report and checks it arrived:
// annotations (pods patch), the condition (pods/status patch), events
// attached to the pod by UID (events create) and a repeated event counted
// twice (events patch).
func (e *env) reportEverything(r *kube.Reporter, timeout time.Duration) error {
	g := &engine{obs: r}
	g.serveFirst("v1")
	g.swap("v2", true)
	g.emit(hotswap.ChildExited, true, "generation 2 exited with status 3") // twice, same message:
	g.emit(hotswap.ChildExited, true, "generation 2 exited with status 3") // the recorder patches the count
	var errs []string
	if err := waitFor(timeout, func() error { return e.reported(2, "v2", hotswap.PhaseServing, corev1.ConditionTrue) }); err != nil {
		errs = append(errs, err.Error())
	}
	if err := waitFor(timeout, func() error {
		evs, err := e.podEvents()
		if err != nil {
			return err
		}
		seen := map[string]int32{}
		for _, ev := range evs {
			seen[ev.Reason] += ev.Count
		}
		if seen["SwapSucceeded"] < 1 || seen["ChildExited"] < 2 {
			return fmt.Errorf("events on pod %s (by UID): %v, want SwapSucceeded and ChildExited counted twice", e.pod, seen)
		}
		return nil
	}); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}
