package chart

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/hotswap-dev/hotswap/e2e/kubetest"
	"github.com/hotswap-dev/hotswap/hotswap"
	"github.com/hotswap-dev/hotswap/hotswap/kube"
)

// The admission policy renders with reporting on (one per release, named
// after release and namespace), and not when rbac.ownPodPolicy=false or
// reporting is off.
func TestOwnPodPolicyRendered(t *testing.T) {
	for _, c := range []struct {
		name, values string
		want         bool
	}{
		{"default", "", true},
		{"policy off", "rbac:\n  ownPodPolicy: false\n", false},
		{"reporting off", "kube: {reporting: \"off\", readinessGate: false}\n", false},
		{"informer only", "kube: {reporting: \"off\", readinessGate: false}\nrelease:\n  configMap:\n    enabled: true\n", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			manifest := render(t, c.values)
			policy := typed[admissionv1.ValidatingAdmissionPolicy](t, manifest, "ValidatingAdmissionPolicy")
			binding := typed[admissionv1.ValidatingAdmissionPolicyBinding](t, manifest, "ValidatingAdmissionPolicyBinding")
			if (policy != nil) != c.want || (binding != nil) != c.want {
				t.Fatalf("policy rendered = %v, binding = %v, want %v", policy != nil, binding != nil, c.want)
			}
			if !c.want {
				return
			}
			const name = releaseName + "-hotswap." + namespace + ".hotswap.dev"
			if policy.Name != name || binding.Name != name || binding.Spec.PolicyName != name {
				t.Errorf("policy %q, binding %q -> %q, want all %q", policy.Name, binding.Name, binding.Spec.PolicyName, name)
			}
			want := "request.userInfo.username == 'system:serviceaccount:" + namespace + ":" + releaseName + "-hotswap'"
			if len(policy.Spec.MatchConditions) != 1 || policy.Spec.MatchConditions[0].Expression != want {
				t.Errorf("matchConditions = %+v, want only %s", policy.Spec.MatchConditions, want)
			}
		})
	}
}

// On a real apiserver, with the chart applied, the token of pod A (bound to
// it, as the kubelet mounts it) can do what hotswap does to pod A and
// nothing else to pods: not pod B, not A's spec, labels, other annotations,
// other conditions or status fields; events only about A. hotswap's own
// reporter, with that token, reports without an error.
func TestOwnPodPolicyOnAPIServer(t *testing.T) {
	c := apiserver(t)
	ctx := context.Background()
	const ns = "policy-check"
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	manifest := renderIn(t, ns, "")
	if out, err := c.Kubectl(ctx, "apply", "-n", ns, "-f", writeTemp(t, manifest)); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("kubectl apply:\n%s", out)
	}
	sa := releaseName + "-hotswap"
	withAnnotation := func(p *corev1.Pod) { p.Annotations = map[string]string{"team": "shop"} }
	podA, err := c.CreatePod(ctx, ns, "a", kubetest.PodServiceAccount(sa), kubetest.PodReadinessGate(), withAnnotation)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreatePod(ctx, ns, "b", kubetest.PodServiceAccount(sa), kubetest.PodReadinessGate(), withAnnotation); err != nil {
		t.Fatal(err)
	}
	admin := c.Client().CoreV1()
	// Status the kubelet would have set, which A's token must not touch.
	if _, err := admin.Pods(ns).Patch(ctx, "a", types.StrategicMergePatchType,
		[]byte(`{"status":{"podIP":"10.1.0.5","podIPs":[{"ip":"10.1.0.5"}],"conditions":[{"type":"Ready","status":"False"}]}}`),
		metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	cfgA, err := c.PodTokenConfig(ctx, ns, sa, "a")
	if err != nil {
		t.Fatal(err)
	}
	asA := kubernetes.NewForConfigOrDie(cfgA).CoreV1()
	unbound, err := c.SAConfig(ctx, ns, sa)
	if err != nil {
		t.Fatal(err)
	}
	asUnbound := kubernetes.NewForConfigOrDie(unbound).CoreV1()

	mergePod := func(cs typedcorev1.CoreV1Interface, pod, body string) func() error {
		return func() error {
			_, err := cs.Pods(ns).Patch(ctx, pod, types.MergePatchType, []byte(body), metav1.PatchOptions{})
			return err
		}
	}
	// JSON patches replace one list element: a merge patch would replace the
	// whole list (or add to it), which validation refuses before admission.
	jsonPatch := func(cs typedcorev1.CoreV1Interface, pod, body string, sub ...string) func() error {
		return func() error {
			_, err := cs.Pods(ns).Patch(ctx, pod, types.JSONPatchType, []byte(body), metav1.PatchOptions{}, sub...)
			return err
		}
	}
	patchStatus := func(cs typedcorev1.CoreV1Interface, pod, body string) func() error {
		return func() error {
			_, err := cs.Pods(ns).Patch(ctx, pod, types.StrategicMergePatchType, []byte(body), metav1.PatchOptions{}, "status")
			return err
		}
	}
	eventAbout := func(name, kind, obj string, uid types.UID) func() error {
		return func() error {
			_, err := asA.Events(ns).Create(ctx, &corev1.Event{
				ObjectMeta:     metav1.ObjectMeta{Name: name},
				InvolvedObject: corev1.ObjectReference{Kind: kind, APIVersion: "v1", Namespace: ns, Name: obj, UID: uid},
				Reason:         "SwapSucceeded", Message: "test", Type: corev1.EventTypeNormal,
			}, metav1.CreateOptions{})
			return err
		}
	}
	event := func(name, pod string, uid types.UID) func() error { return eventAbout(name, "Pod", pod, uid) }

	// The policy is enforced from a cache a moment behind the API: wait
	// until the first attack is refused by it.
	attack := mergePod(asA, "b", `{"metadata":{"annotations":{"hotswap.dev/version":"evil"}}}`)
	deadline := time.Now().Add(30 * time.Second)
	for err := attack(); !deniedByPolicy(err); err = attack() {
		if time.Now().After(deadline) {
			t.Fatalf("patching pod b with pod a's token: %v; want it denied by the admission policy", err)
		}
		if err == nil { // undo, so the check below sees b untouched
			_, _ = admin.Pods(ns).Patch(ctx, "b", types.JSONPatchType, []byte(`[{"op":"remove","path":"/metadata/annotations/hotswap.dev~1version"}]`), metav1.PatchOptions{})
		}
		time.Sleep(100 * time.Millisecond)
	}

	var allowed, denied int
	for _, x := range []struct {
		what    string
		allowed bool
		do      func() error
	}{
		// what hotswap does
		{"A: patch its hotswap.dev annotations", true, mergePod(asA, "a", `{"metadata":{"annotations":{"hotswap.dev/version":"v1","hotswap.dev/phase":"Serving"}}}`)},
		{"A: remove a hotswap.dev annotation", true, mergePod(asA, "a", `{"metadata":{"annotations":{"hotswap.dev/phase":null}}}`)},
		{"A: set its hotswap.dev/ready condition", true, patchStatus(asA, "a", `{"status":{"conditions":[{"type":"hotswap.dev/ready","status":"True","reason":"Serving"}]}}`)},
		{"A: create an event about itself", true, event("a.1", "a", podA.UID)},
		{"A: create an event about itself without UID", true, event("a.2", "a", "")},
		{"A: patch the count of its event", true, func() error {
			_, err := asA.Events(ns).Patch(ctx, "a.1", types.StrategicMergePatchType, []byte(`{"count":2}`), metav1.PatchOptions{})
			return err
		}},
		// another pod
		{"A: patch pod b's hotswap.dev annotations", false, mergePod(asA, "b", `{"metadata":{"annotations":{"hotswap.dev/version":"evil"}}}`)},
		{"A: patch pod b's labels", false, mergePod(asA, "b", `{"metadata":{"labels":{"app":"evil"}}}`)},
		{"A: patch pod b's readiness condition", false, patchStatus(asA, "b", `{"status":{"conditions":[{"type":"hotswap.dev/ready","status":"True"}]}}`)},
		{"A: create an event about pod b", false, event("b.1", "b", "")},
		{"A: create an event about another kind named a", false, eventAbout("a.3", "ConfigMap", "a", "")},
		{"A: patch pod b's event", false, func() error {
			if err := event("b.2", "b", "")(); !deniedByPolicy(err) {
				return errors.New("creating it was not denied")
			}
			if _, err := admin.Events(ns).Create(ctx, &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "b.3"},
				InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: "b"}, Reason: "x", Message: "x"}, metav1.CreateOptions{}); err != nil {
				return err
			}
			_, err := asA.Events(ns).Patch(ctx, "b.3", types.MergePatchType, []byte(`{"involvedObject":{"name":"a"}}`), metav1.PatchOptions{})
			return err
		}},
		// its own pod, beyond what hotswap does
		{"A: change its image", false, jsonPatch(asA, "a", `[{"op":"replace","path":"/spec/containers/0/image","value":"evil.invalid/app:1"}]`)},
		{"A: change its labels", false, mergePod(asA, "a", `{"metadata":{"labels":{"app":"other-service"}}}`)},
		{"A: set its activeDeadlineSeconds", false, mergePod(asA, "a", `{"spec":{"activeDeadlineSeconds":5}}`)},
		{"A: add a finalizer", false, mergePod(asA, "a", `{"metadata":{"finalizers":["example.com/hold"]}}`)},
		{"A: set an owner reference", false, mergePod(asA, "a", `{"metadata":{"ownerReferences":[{"apiVersion":"v1","kind":"ConfigMap","name":"x","uid":"6f1d4a4e-0000-4000-8000-000000000001"}]}}`)},
		{"A: set another annotation", false, mergePod(asA, "a", `{"metadata":{"annotations":{"prometheus.io/scrape":"false"}}}`)},
		{"A: remove another annotation", false, mergePod(asA, "a", `{"metadata":{"annotations":{"team":null}}}`)},
		{"A: set its Ready condition", false, patchStatus(asA, "a", `{"status":{"conditions":[{"type":"Ready","status":"True"}]}}`)},
		{"A: add another condition", false, patchStatus(asA, "a", `{"status":{"conditions":[{"type":"example.com/gate","status":"True"}]}}`)},
		{"A: remove its Ready condition", false, patchStatus(asA, "a", `{"status":{"conditions":[{"type":"Ready","$patch":"delete"}]}}`)},
		{"A: forge its podIP", false, jsonPatch(asA, "a", `[{"op":"replace","path":"/status/podIP","value":"10.1.0.99"},{"op":"replace","path":"/status/podIPs","value":[{"ip":"10.1.0.99"}]}]`, "status")},
		{"A: set its phase", false, patchStatus(asA, "a", `{"status":{"phase":"Failed"}}`)},
		{"A: set its status message", false, patchStatus(asA, "a", `{"status":{"message":"all good"}}`)},
		// a field the policy does not name: the status rule compares them all
		{"A: set its status observedGeneration", false, patchStatus(asA, "a", `{"status":{"observedGeneration":1}}`)},
		{"A: change labels through pods/status", false, patchStatus(asA, "a", `{"metadata":{"labels":{"app":"evil"}}}`)},
		{"A: change annotations through pods/status", false, patchStatus(asA, "a", `{"metadata":{"annotations":{"team":"evil"}}}`)},
		// a token of the service account not bound to a pod
		{"unbound token: patch pod a's hotswap.dev annotations", false, mergePod(asUnbound, "a", `{"metadata":{"annotations":{"hotswap.dev/version":"v9"}}}`)},
	} {
		err := x.do()
		switch {
		case x.allowed && err != nil:
			t.Errorf("%s: %v, want allowed", x.what, err)
		case !x.allowed && !deniedByPolicy(err):
			t.Errorf("%s: err = %v, want denied by the admission policy", x.what, err)
		case x.allowed:
			allowed++
		default:
			denied++
			t.Logf("%s: %v", x.what, err)
		}
	}
	t.Logf("with pod a's token: %d requests allowed and %d denied by the policy, as they should be", allowed, denied)

	// Nobody else is held by it: the admin can still change pod b.
	if err := mergePod(admin, "b", `{"metadata":{"labels":{"tier":"web"}}}`)(); err != nil {
		t.Errorf("admin patching pod b: %v; the policy must only bind hotswap's service account", err)
	}
	a, err := admin.Pods(ns).Get(ctx, "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Status.PodIP != "10.1.0.5" || a.Labels["app"] != "hotswap-test" || a.Annotations["team"] != "shop" || a.Spec.Containers[0].Image != "hotswap.invalid/app:test" {
		t.Errorf("pod a changed by denied requests: ip %s labels %v annotations %v image %s", a.Status.PodIP, a.Labels, a.Annotations, a.Spec.Containers[0].Image)
	}

	// hotswap's own reporter with pod a's token, configured as the chart
	// does ($POD_UID from the downward API): its patches and events pass.
	r, err := kube.New(kube.Config{Mode: kube.ModeOn, REST: cfgA, PodName: "a", PodNamespace: ns, PodUID: string(podA.UID),
		RetryBase: 50 * time.Millisecond, RetryMax: time.Second}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	now := time.Now()
	serving := hotswap.Status{Phase: hotswap.PhaseServing, Generation: 1, Version: "v1", PID: 7,
		LastSwap: &hotswap.SwapResult{ID: 1, Result: hotswap.ResultSucceeded, Started: now, ToGen: 1, ToVersion: "v1"}}
	for range 2 { // the same event twice: the second is a count patch
		r.Observe(hotswap.Event{Type: hotswap.SwapSucceeded, Time: now, Status: serving, Message: "swapped to v1"})
	}
	err = waitUntil(15*time.Second, func() bool {
		s := r.Stats()
		return s.Patches >= 2 && s.EventsSent >= 2
	})
	cancel()
	<-done
	if s := r.Stats(); err != nil || r.Errors() != 0 {
		t.Errorf("reporter with pod a's token: %+v, %d errors (%v); want its patches and events admitted", s, r.Errors(), err)
	}
	a, err = admin.Pods(ns).Get(ctx, "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Annotations[kube.AnnotationGeneration] != "1" || a.Annotations[kube.AnnotationLastSwap] == "" {
		t.Errorf("reporter's annotations missing on pod a: %v", a.Annotations)
	}

	// hotswap drains and reports while its pod terminates: the apiserver
	// keeps the deletion timestamp on every update, so the metadata rule
	// still passes. A finalizer holds the pod (no kubelet here to end it).
	if err := mergePod(admin, "a", `{"metadata":{"finalizers":["hotswap.dev/test-hold"]}}`)(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Pods(ns).Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		what string
		do   func() error
	}{
		{"A, terminating: patch its hotswap.dev annotations", mergePod(asA, "a", `{"metadata":{"annotations":{"hotswap.dev/phase":"Draining"}}}`)},
		{"A, terminating: set its hotswap.dev/ready condition", patchStatus(asA, "a", `{"status":{"conditions":[{"type":"hotswap.dev/ready","status":"False","reason":"Draining"}]}}`)},
	} {
		if err := x.do(); err != nil {
			t.Errorf("%s: %v, want allowed", x.what, err)
		}
	}
	if err := mergePod(asA, "a", `{"metadata":{"finalizers":null}}`)(); !deniedByPolicy(err) {
		t.Errorf("A, terminating: remove its finalizers: err = %v, want denied by the admission policy", err)
	}
	if err := mergePod(admin, "a", `{"metadata":{"finalizers":null}}`)(); err != nil {
		t.Error(err)
	}
}

// deniedByPolicy reports whether err is the admission policy's refusal
// (not RBAC's, which would mean the check tested the wrong layer).
func deniedByPolicy(err error) bool {
	return apierrors.IsForbidden(err) && strings.Contains(err.Error(), "ValidatingAdmissionPolicy")
}

func waitUntil(d time.Duration, f func() bool) error {
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
