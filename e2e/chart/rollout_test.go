package chart

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/hotswap-dev/hotswap/hotswap/rollout"
)

// namedObject converts the object of kind and name in manifest to T (nil if absent).
func namedObject[T any](t *testing.T, manifest, kind, name string) *T {
	t.Helper()
	for _, o := range objects(t, manifest) {
		if o.GetKind() != kind || o.GetName() != name {
			continue
		}
		b, err := o.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var v T
		if err := yaml.UnmarshalStrict(b, &v); err != nil {
			t.Fatalf("%s %s does not decode strictly into the API type: %v", kind, name, err)
		}
		return &v
	}
	return nil
}

// The in-cluster rollout driver (rolloutDriver.enabled): its own service
// account, a Role equal to rollout.RequiredRules (the ConfigMap by name),
// bound to that account only; the pods' Role unchanged; and its pods
// selected by neither the server Deployment (the rollout's target) nor the
// Service.
func TestRolloutDriver(t *testing.T) {
	const driver = releaseName + "-hotswap-rollout"
	const pods = releaseName + "-hotswap"
	const cm = releaseName + "-hotswap-release"
	m := render(t, "release:\n  configMap: {enabled: true}\nrolloutDriver:\n  enabled: true\n  env: [{name: A, value: b}]\n")

	role := namedObject[rbacv1.Role](t, m, "Role", driver)
	if role == nil {
		t.Fatalf("no Role %s", driver)
	}
	var got, want []string
	for _, r := range role.Rules {
		got = append(got, ruleKey(r.APIGroups, r.Resources, r.Verbs))
		wantNames := []string(nil)
		if slices.Contains(r.Resources, "configmaps") {
			wantNames = []string{cm}
		}
		if !slices.Equal(r.ResourceNames, wantNames) {
			t.Errorf("driver rule %v: resourceNames %v, want %v", r.Resources, r.ResourceNames, wantNames)
		}
	}
	for _, r := range rollout.RequiredRules() {
		want = append(want, ruleKey(r.APIGroups, r.Resources, r.Verbs))
	}
	if !slices.Equal(got, want) {
		t.Errorf("driver Role rules:\n got  %q\n want %q (rollout.RequiredRules)", got, want)
	}

	// The pods' Role is what it is without the driver: no driver rule.
	podRole := namedObject[rbacv1.Role](t, m, "Role", pods)
	if podRole == nil {
		t.Fatalf("no Role %s", pods)
	}
	var podRules []string
	for _, r := range podRole.Rules {
		podRules = append(podRules, ruleKey(r.APIGroups, r.Resources, r.Verbs))
	}
	if w := wantRules(true, true); !slices.Equal(podRules, w) {
		t.Errorf("the pods' Role with the driver enabled:\n got  %q\n want %q", podRules, w)
	}

	for _, c := range []struct{ binding, role, sa string }{{driver, driver, driver}, {pods, pods, pods}} {
		b := namedObject[rbacv1.RoleBinding](t, m, "RoleBinding", c.binding)
		if b == nil {
			t.Fatalf("no RoleBinding %s", c.binding)
		}
		if b.RoleRef.Name != c.role || len(b.Subjects) != 1 || b.Subjects[0].Name != c.sa || b.Subjects[0].Namespace != namespace {
			t.Errorf("RoleBinding %s binds %s to %+v, want only service account %s/%s", c.binding, b.RoleRef.Name, b.Subjects, namespace, c.sa)
		}
	}
	if namedObject[corev1.ServiceAccount](t, m, "ServiceAccount", driver) == nil {
		t.Errorf("no ServiceAccount %s", driver)
	}

	dep := namedObject[appsv1.Deployment](t, m, "Deployment", driver)
	server := namedObject[appsv1.Deployment](t, m, "Deployment", pods)
	svc := namedObject[corev1.Service](t, m, "Service", pods)
	if dep == nil || server == nil || svc == nil {
		t.Fatalf("rendered: driver Deployment %v, server Deployment %v, Service %v", dep != nil, server != nil, svc != nil)
	}
	spec := dep.Spec.Template.Spec
	if spec.ServiceAccountName != driver {
		t.Errorf("driver pods run as %q, want %s", spec.ServiceAccountName, driver)
	}
	// The image's ENTRYPOINT is hotswap supervising a server: the driver
	// must name the binary, or it would run `hotswap --listen ... -- rollout`.
	if c := spec.Containers[0].Command; !slices.Equal(c, []string{"/hotswap"}) {
		t.Errorf("driver command %q, want [/hotswap]", c)
	}
	if args := strings.Join(spec.Containers[0].Args, " "); !strings.HasPrefix(args, "rollout drive "+cm+" --forever --namespace="+namespace) {
		t.Errorf("driver args: %s", args)
	}
	if e := spec.Containers[0].Env; len(e) != 1 || e[0].Name != "A" {
		t.Errorf("rolloutDriver.env not passed: %v", e)
	}
	// Selectors: the driver's own must select its pods; the server's and
	// the Service's must not (the driver would be a rollout target with no
	// hotswap in it, and a Service endpoint with no server).
	driverPod := labels.Set(dep.Spec.Template.Labels)
	own, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil || !own.Matches(driverPod) {
		t.Errorf("the driver Deployment's selector %v does not select its pods %v", dep.Spec.Selector, driverPod)
	}
	target, err := metav1.LabelSelectorAsSelector(server.Spec.Selector)
	if err != nil || target.Matches(driverPod) {
		t.Errorf("the server Deployment's selector %v selects the driver pods %v", server.Spec.Selector, driverPod)
	}
	if labels.SelectorFromSet(svc.Spec.Selector).Matches(driverPod) {
		t.Errorf("the Service's selector %v selects the driver pods %v", svc.Spec.Selector, driverPod)
	}
	mine, _ := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if mine.Matches(labels.Set(server.Spec.Template.Labels)) {
		t.Errorf("the driver Deployment's selector selects the server pods %v", server.Spec.Template.Labels)
	}

	// Without the informer the pods would never read a rollout.
	if _, err := helm(t, append([]string{"template", releaseName, chartDir(), "--namespace", namespace},
		valuesFile(t, "rolloutDriver:\n  enabled: true\n")...)...); err == nil || !strings.Contains(err.Error(), "via=informer") {
		t.Errorf("rolloutDriver without the informer: err = %v, want a refusal naming via=informer", err)
	}
}
